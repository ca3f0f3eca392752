"""The ``zone_clear`` rule kind: an exit or walkway must not be blocked.

People walking along a walkway are using it, not blocking it; a pallet left on it, or someone
standing in a fire exit, is. So what counts is standing still: each track in the zone has a
reference point where it settled, and is stationary as long as its anchor stays within
``max_movement`` of it (half its box width by default: scale-free, and larger than box jitter).
Moving further re-settles it there; a change of frame size rescales the reference points
(:class:`~safewatch.rules.measure.PixelSize`), so a stream that changes resolution keeps its
timers. The zone is blocked while any matching track has stood still
in it for longer than ``max_time``.

The subject is the zone (subject -1, ``track_ids`` start with
:data:`~safewatch.rules.episodes.NO_SUBJECT` and list the blocking tracks). Per-track state is kept
while the track is in the zone and forgotten once it has been out of it (or unseen) for longer than
the effective grace: at a frame without it more than that after it was last in, as
:mod:`~safewatch.rules.episodes` ends a presence (same clock, same
:meth:`~safewatch.rules.episodes.FrameClock.grace`: ``grace``, but at least 1.5 frame
intervals), never because two frames with it are far apart (at 1 fps one missed detection is a
2 s gap, yet the pallet was missing for at most a second; at 0.5 fps one missed frame is within
the 3 s effective grace, two are not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from safewatch.config.rules import ZoneClearRule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import Track, TrackedFrame
from safewatch.rules.episodes import NO_SUBJECT, FrameClock, Observation
from safewatch.rules.frame_geometry import FrameGeometry, geometry_of
from safewatch.rules.measure import PixelSize, Plane

__all__ = ["ZoneClearMonitor"]

_EPS = 1e-6


@dataclass(slots=True)
class _Rest:
    point: NDArray[np.float64]
    since: float
    last_in: float


class ZoneClearMonitor:
    """Watches one zone for objects standing still in it.

    Args:
        rule: The rule (zone, objects, anchor, max_time, max_movement, grace).
        zone: The rule's zone.
        plane: Where ``max_movement`` is measured (the floor when it is in metres).
        clock: The camera's frame clock, shared with the rule's episodes (one of its own by
            default).
    """

    instant = False

    def __init__(
        self,
        rule: ZoneClearRule,
        zone: Zone,
        plane: Plane | None = None,
        clock: FrameClock | None = None,
    ) -> None:
        self.rule = rule
        self.zone = zone
        self.plane = plane or Plane()
        self.clock = FrameClock() if clock is None else clock
        self._rests: dict[int, _Rest] = {}
        self._pixels = PixelSize()  # frame size of the pixel rest points

    def __len__(self) -> int:
        """Tracks in (or recently in) the zone."""
        return len(self._rests)

    def _limit(self, track: Track) -> float:
        if self.rule.max_movement is not None:
            return self.rule.max_movement.value
        return (track.xyxy[2] - track.xyxy[0]) / 2.0

    def observe(
        self, tracked: TrackedFrame, geometry: FrameGeometry | None = None
    ) -> list[Observation]:
        """The zone as one observation while something has stood still in it too long."""
        at = tracked.timestamp
        self.clock.tick(at)
        g = geometry_of(tracked, geometry)
        scale = self._pixels.rescale(self.plane, g.width, g.height)
        if scale is not None:
            # A stream falling back to a lower resolution keeps its track ids: rest points kept
            # in the old size's pixels would be far from the same pallet in the new one, so
            # every stillness timer would restart and a blocked exit never be reported.
            for settled in self._rests.values():
                settled.point = settled.point * scale
        objects = self.rule.objects
        present = g.in_zone(self.zone, self.rule.anchor, g.labelled(objects or None))
        blocking: list[tuple[Track, float]] = []
        if present:
            anchor = "centre" if self.rule.anchor == "centre" else "feet"
            projected = g.floor(self.plane.calibration, anchor)[present]
            for i, point in zip(present, projected, strict=True):
                if not np.all(np.isfinite(point)):
                    continue  # above the horizon of the calibration: cannot tell
                track = g.tracks[i]
                rest = self._rests.get(track.track_id)
                if rest is None or float(np.linalg.norm(point - rest.point)) > self._limit(track):
                    rest = self._rests[track.track_id] = _Rest(point=point, since=at, last_in=at)
                rest.last_in = at
                if at - rest.since > self.rule.max_time + _EPS:
                    blocking.append((track, at - rest.since))
        limit = self.clock.grace(self.rule.grace) + _EPS
        stale = [k for k, r in self._rests.items() if at - r.last_in > limit]
        for track_id in stale:
            del self._rests[track_id]
        if not blocking:
            return []
        names = ", ".join(f"{t.label} #{t.track_id}" for t, _ in blocking)
        longest = max(still for _, still in blocking)
        return [
            Observation(
                subject=NO_SUBJECT,
                track_ids=(NO_SUBJECT, *(t.track_id for t, _ in blocking)),
                confidence=max(float(t.confidence) for t, _ in blocking),
                message=f"zone {self.zone.id} blocked by {names} (still for {longest:.0f}s, "
                f"max {self.rule.max_time:g}s)",
                zone_id=self.zone.id,
            )
        ]
