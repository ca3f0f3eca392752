"""The ``ppe`` rule kind: a person must wear every required item.

Only ``ABSENT`` violates. ``UNKNOWN`` (head out of frame, too small, occluded, or the voting window
not yet full) means "not proven absent": raising incidents on it would flood operators with
false alarms every time a worker turns away or walks behind a pallet, and an alert system people
learn to ignore protects no one. The tracker's voting makes ``ABSENT`` a considered verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from safewatch.config.rules import PPERule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import PPEState, Track, TrackedFrame
from safewatch.rules.episodes import Observation

__all__ = ["observe_ppe"]


def _missing(track: Track, require: Sequence[str]) -> list[str]:
    return [item for item in require if track.attributes.get(item) == PPEState.ABSENT]


def observe_ppe(rule: PPERule, tracked: TrackedFrame, zones: Sequence[Zone]) -> list[Observation]:
    """Subjects violating ``rule`` in this frame.

    Args:
        rule: The rule.
        tracked: The frame's tracks.
        zones: The rule's scope zones on this frame's camera; empty means anywhere. A track is in
            scope when its foot point is in one of them.

    Returns:
        One observation per violating track, in track order. Confidence is the highest
        confidence among the absent items' detections (the track's own when none is recorded).
    """
    candidates = [
        t for t in tracked.tracks if t.label in rule.objects and _missing(t, rule.require)
    ]
    if not candidates:
        return []
    zone_of: list[str | None] = [None] * len(candidates)
    if zones:
        feet = np.array([t.foot for t in candidates], dtype=np.float64)
        for zone in reversed(zones):  # the first listed zone wins when zones overlap
            inside = zone.contains(feet, tracked.width, tracked.height)
            for index in np.flatnonzero(inside):
                zone_of[int(index)] = zone.id
    observations = []
    for track, zone_id in zip(candidates, zone_of, strict=True):
        if zones and zone_id is None:
            continue
        missing = _missing(track, rule.require)
        confidence = max(track.attribute_confidence.get(i, track.confidence) for i in missing)
        message = f"{track.label} #{track.track_id} without {' and '.join(missing)}"
        if zone_id is not None:
            message += f" in zone {zone_id}"
        observations.append(
            Observation(
                subject=track.track_id,
                track_ids=(track.track_id,),
                confidence=float(confidence),
                message=message,
                zone_id=zone_id,
            )
        )
    return observations
