"""Small builders for rule tests: tracks, frames and rule sets without YAML."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter

from safewatch.config.rules import Rule
from safewatch.config.ruleset import RuleSet
from safewatch.domain.geometry import Zone
from safewatch.domain.lines import Line
from safewatch.domain.tracks import PPEState, Track, TrackedFrame

W, H = 1000, 500
_RULE = TypeAdapter[Rule](Rule)


def person(
    track_id: int,
    foot: tuple[float, float] = (500.0, 400.0),
    *,
    size: tuple[float, float] = (40.0, 100.0),
    label: str = "person",
    confidence: float = 0.9,
    ppe_only: bool = False,
    **ppe: PPEState,
) -> Track:
    """A track whose foot point (bottom-centre) is at ``foot`` pixels."""
    x, y = foot
    w, h = size
    return Track(
        track_id=track_id,
        label=label,
        xyxy=(x - w / 2, y - h, x + w / 2, y),
        confidence=confidence,
        attributes=dict(ppe),
        attribute_confidence={item: 0.8 for item in ppe},
        ppe_only=ppe_only,
    )


def frame(
    t: float, tracks: Iterable[Track] = (), *, camera: str = "cam", seq: int | None = None
) -> TrackedFrame:
    """A tracked frame at ``t`` seconds (seq defaults to round(t * 10))."""
    return TrackedFrame(
        camera_id=camera,
        seq=round(t * 10) if seq is None else seq,
        pts=t,
        timestamp=t,
        width=W,
        height=H,
        tracks=tuple(tracks),
    )


def rule(**fields: Any) -> Rule:
    """Validate one rule from keyword fields (``kind`` and ``id`` required)."""
    return _RULE.validate_python(fields)


def rule_set(
    rules: Iterable[Rule],
    zones: Mapping[str, Iterable[tuple[float, float]]] | None = None,
    lines: Mapping[str, tuple[tuple[float, float], tuple[float, float]]] | None = None,
) -> RuleSet:
    """A rule set; zones and lines are on camera ``cam`` unless the id says ``camera:id``."""
    built = []
    for key, polygon in (zones or {}).items():
        camera, _, zone_id = key.rpartition(":")
        built.append(Zone(id=zone_id, camera_id=camera or "cam", polygon=tuple(polygon)))
    built_lines = []
    for key, (a, b) in (lines or {}).items():
        camera, _, line_id = key.rpartition(":")
        built_lines.append(Line(id=line_id, camera_id=camera or "cam", a=a, b=b))
    return RuleSet(rules=tuple(rules), zones=tuple(built), lines=tuple(built_lines))


RIGHT_HALF = ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))
"""A zone covering the right half of the frame (x >= 500 px)."""
