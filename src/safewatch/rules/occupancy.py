"""The ``occupancy`` rule kind: how many are in a zone (crowding, lone worker).

Too many people on a mezzanine, or one person alone in a confined space: the subject is the zone,
not a track. Each frame counts the matching tracks in the zone; above ``max_count`` is crowding,
and between one and ``min_count - 1`` is a lone worker (an empty zone is fine: nobody is at risk
in it). The two are separate episodes (subjects -1 and -2) so a crowd that thins to one person
closes the crowding incident and opens a lone-worker one. ``track_ids`` start with
:data:`~safewatch.rules.episodes.NO_SUBJECT` and list the tracks counted.

The count flickers with the detector, so the kind relies on the shared episode timing: the default
``min_duration`` of 2 s ignores a one-frame double detection, and ``grace`` keeps an episode open
across a frame where someone is missed.
"""

from __future__ import annotations

from safewatch.config.rules import OccupancyRule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import TrackedFrame
from safewatch.rules.episodes import NO_SUBJECT, Observation
from safewatch.rules.frame_geometry import FrameGeometry, geometry_of

__all__ = ["CROWDED", "LONE", "observe_occupancy"]

CROWDED = -1
"""Episode subject of "more than max_count"."""
LONE = -2
"""Episode subject of "fewer than min_count, but someone"."""


def _plural(count: int, label: str) -> str:
    return f"{count} {label}" if count == 1 else f"{count} {label}s"


def observe_occupancy(
    rule: OccupancyRule,
    tracked: TrackedFrame,
    zone: Zone,
    geometry: FrameGeometry | None = None,
) -> list[Observation]:
    """At most one observation: the zone crowded, or occupied below the minimum.

    Confidence is that of the count being out of bounds: for crowding the ``max_count + 1``-th
    most confident detection (all of them must be right for the zone to be crowded), for a lone
    worker the most confident one. ``geometry`` is the frame's shared geometry.
    """
    g = geometry_of(tracked, geometry)
    present = [g.tracks[i] for i in g.in_zone(zone, rule.anchor, g.labelled(rule.objects))]
    count = len(present)
    too_many = rule.max_count is not None and count > rule.max_count
    if not too_many and (rule.min_count is None or not 0 < count < rule.min_count):
        return []
    noun = rule.objects[0] if len(rule.objects) == 1 else "object"
    ids = (NO_SUBJECT, *(t.track_id for t in present))
    confidences = sorted((float(t.confidence) for t in present), reverse=True)
    if rule.max_count is not None and count > rule.max_count:
        return [
            Observation(
                subject=CROWDED,
                track_ids=ids,
                confidence=confidences[rule.max_count],
                message=f"{_plural(count, noun)} in zone {zone.id} (max {rule.max_count})",
                zone_id=zone.id,
            )
        ]
    if rule.min_count is not None and 0 < count < rule.min_count:
        alone = " alone" if count == 1 else ""
        return [
            Observation(
                subject=LONE,
                track_ids=ids,
                confidence=confidences[0],
                message=f"{_plural(count, noun)}{alone} in zone {zone.id} (min {rule.min_count})",
                zone_id=zone.id,
            )
        ]
    return []
