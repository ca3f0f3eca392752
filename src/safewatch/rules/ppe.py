"""The ``ppe`` rule kind: a person must wear every required item.

Only ``ABSENT`` violates. ``UNKNOWN`` (head out of frame, too small, occluded, or the voting window
not yet full) means "not proven absent": raising incidents on it would flood operators with
false alarms every time a worker turns away or walks behind a pallet, and an alert system people
learn to ignore protects no one. The tracker's voting makes ``ABSENT`` a considered verdict.

A rule with ``flag: unverifiable`` asks the other question: who stayed ``UNKNOWN`` (for its
``min_duration``, typically tens of seconds)? It opens a review item ("PPE not verifiable"), so a
camera that cannot see heads is noticed instead of reading as a compliant one. An item a person
track carries no state for (the camera's models have not reported it) is unknown to it, and
never absent to a violation rule (:meth:`FrameGeometry.missing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from safewatch.config.rules import PPERule, Rule
from safewatch.domain import PPEState
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import TrackedFrame
from safewatch.rules.episodes import Observation
from safewatch.rules.frame_geometry import FrameGeometry, geometry_of

__all__ = ["observe_ppe", "required_items"]


def observe_ppe(
    rule: PPERule,
    tracked: TrackedFrame,
    zones: Sequence[Zone],
    geometry: FrameGeometry | None = None,
) -> list[Observation]:
    """Subjects violating ``rule`` in this frame.

    Args:
        rule: The rule.
        tracked: The frame's tracks.
        zones: The rule's scope zones on this frame's camera; empty means anywhere. A track is in
            scope when its foot point is in one of them.
        geometry: The frame's shared geometry (see :mod:`~safewatch.rules.frame_geometry`).

    Returns:
        One observation per violating track, in track order. Confidence is the highest
        confidence among the absent items' detections (the track's own when none is recorded).
    """
    g = geometry_of(tracked, geometry)
    unverifiable = rule.flag == "unverifiable"
    state = PPEState.UNKNOWN if unverifiable else PPEState.ABSENT
    candidates = g.missing(rule.require, rule.objects, state)
    if not candidates:
        return []
    zone_ids: list[str | None]
    if zones:  # the first listed zone wins when zones overlap
        first = g.first_zone(zones, "feet", [i for i, _ in candidates])
        zone_ids = [None if z is None else z.id for z in first]
    else:
        zone_ids = [None] * len(candidates)
    observations = []
    for (i, items), zone_id in zip(candidates, zone_ids, strict=True):
        if zones and zone_id is None:
            continue
        track = g.tracks[i]
        tid = track.track_id
        confidences = track.attribute_confidence
        if unverifiable:  # no detection stands behind an unknown state
            confidence = track.confidence
        elif len(items) == 1:
            confidence = confidences.get(items[0], track.confidence)
        else:
            confidence = max(confidences.get(item, track.confidence) for item in items)
        if unverifiable:
            message = f"{track.label} #{tid}: {' and '.join(items)} not verifiable"
        else:
            message = f"{track.label} #{tid} without {' and '.join(items)}"
        if zone_id is not None:
            message += f" in zone {zone_id}"
        observations.append(Observation(tid, (tid,), float(confidence), message, zone_id))
    return observations


def required_items(rules: Iterable[Rule]) -> dict[str, frozenset[str]]:
    """Track label -> the PPE items the ``ppe`` rules among ``rules`` require of it (any flag).

    What a camera must be able to check: the PPE coverage share books a person track that
    carries no state for one of these items as unknown, as :meth:`FrameGeometry.missing` reads it.
    """
    found: dict[str, set[str]] = {}
    for rule in rules:
        if isinstance(rule, PPERule):
            for label in rule.objects:
                found.setdefault(label, set()).update(rule.require)
    return {label: frozenset(items) for label, items in found.items()}
