"""The ``zone_intrusion`` rule kind: no listed object may be inside a zone.

The zone is stored normalised (0-1) and converted to this frame's pixels on every call, so a
camera that changes resolution keeps its zones. Which part of an object counts is the rule's
``anchor``: the foot point (where a person stands: the right test for floor areas seen from an
elevated camera, where a head can overlap a zone its owner is not in), the box centre, or any
overlap of the box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from safewatch.config.rules import ZoneIntrusionRule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import Track, TrackedFrame
from safewatch.rules.episodes import Observation
from safewatch.rules.frame_geometry import FrameGeometry, geometry_of
from safewatch.rules.overlap import box_overlaps_polygon

__all__ = ["observe_zone_intrusion", "tracks_in_zone"]


def tracks_in_zone(
    tracks: Sequence[Track], zone: Zone, anchor: str, width: int, height: int
) -> list[bool]:
    """Which tracks are in ``zone`` by ``anchor`` (``feet``, ``centre`` or ``box``).

    The test every zone-based kind applies, for a list of tracks outside the engine; inside it
    :meth:`FrameGeometry.in_zone <safewatch.rules.frame_geometry.FrameGeometry.in_zone>` gives the
    same answers, computed once per frame.
    """
    if not tracks:
        return []
    if anchor == "box":
        polygon = zone.to_pixels(width, height)
        return [box_overlaps_polygon(t.xyxy, polygon) for t in tracks]
    points = np.array([t.foot if anchor == "feet" else t.centre for t in tracks], dtype=np.float64)
    return [bool(v) for v in zone.contains(points, width, height)]


def observe_zone_intrusion(
    rule: ZoneIntrusionRule,
    tracked: TrackedFrame,
    zone: Zone,
    geometry: FrameGeometry | None = None,
) -> list[Observation]:
    """Subjects inside ``zone`` in this frame, in track order; confidence is the box's.

    ``geometry`` is the frame's shared geometry (see :mod:`~safewatch.rules.frame_geometry`).
    """
    g = geometry_of(tracked, geometry)
    inside = g.in_zone(zone, rule.anchor, g.labelled(rule.objects))
    if not inside:
        return []
    tracks, zone_id = g.tracks, zone.id
    observations = []
    for i in inside:
        track = tracks[i]
        tid = track.track_id
        message = f"{track.label} #{tid} in zone {zone_id}"
        observations.append(Observation(tid, (tid,), float(track.confidence), message, zone_id))
    return observations
