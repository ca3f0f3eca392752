"""The ``speed`` rule kind: vehicles over a speed limit, measured on the floor.

Pixels per second mean nothing on a camera looking down a yard (a forklift far away crawls across
the picture at full speed), so the kind needs a calibrated camera and measures each track's
anchor on the floor in metres. The speed is the least-squares velocity over the last ``window``
seconds of the frame clock (see :mod:`safewatch.rules.measure`), so box jitter and a single
mis-sized box do not fake a speeding vehicle; a track needs three samples spanning half the window
before it has a speed at all. Per-track history holds only that window (or the last three samples
where the window holds fewer: a slow camera still measures) and is dropped once the track has
been unseen for longer than the window (or the grace in force, whichever is longer: the
configured ``grace``, but at least 1.5 of the camera's frame intervals, as episodes use it,
:class:`~safewatch.rules.episodes.FrameClock`; a track missed in one frame of a slow camera keeps
its history).
"""

from __future__ import annotations

import math

from safewatch.config.rules import SpeedRule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import TrackedFrame
from safewatch.rules.episodes import FrameClock, Observation
from safewatch.rules.frame_geometry import FrameGeometry, geometry_of
from safewatch.rules.measure import Plane, Samples, SharedTimes

__all__ = ["SpeedMonitor"]


class SpeedMonitor:
    """Measures the floor speed of each matching track.

    Args:
        rule: The rule (objects, anchor, max_speed, window, zones).
        plane: The camera's floor (a calibrated :class:`Plane`).
        zones: The rule's scope zones on this camera; empty: anywhere.
        clock: The camera's frame clock (one of its own by default), for the grace in force.
    """

    instant = False

    def __init__(
        self,
        rule: SpeedRule,
        plane: Plane,
        zones: tuple[Zone, ...] = (),
        clock: FrameClock | None = None,
    ) -> None:
        self.rule = rule
        self.clock = FrameClock() if clock is None else clock
        self.plane = plane
        self.zones = zones
        self._samples: dict[int, Samples] = {}

    def __len__(self) -> int:
        """Tracks with position history."""
        return len(self._samples)

    def speeds(
        self, tracked: TrackedFrame, geometry: FrameGeometry | None = None
    ) -> dict[int, float]:
        """Advance the histories by one frame; the smoothed speed of each track that has one."""
        measured = self._measure(tracked.timestamp, geometry_of(tracked, geometry))
        return {track_id: speed for _, track_id, speed in measured}

    def _measure(self, at: float, g: FrameGeometry) -> list[tuple[int, int, float]]:
        """:meth:`speeds` as ``(track index, track id, speed)``, in track order."""
        indices = g.labelled(self.rule.objects)
        result: list[tuple[int, int, float]] = []
        if indices:
            floor = g.floor(self.plane.calibration, self.rule.anchor)[indices].tolist()
            window, histories, tracks = self.rule.window, self._samples, g.tracks
            shared = SharedTimes()  # tracks seen on the same frames share the time half
            for i, (x, y) in zip(indices, floor, strict=True):
                if not (math.isfinite(x) and math.isfinite(y)):
                    continue
                track_id = tracks[i].track_id
                samples = histories.get(track_id)
                if samples is None:
                    samples = histories[track_id] = Samples(window)
                samples.push(at, (x, y))
                rate = samples.slopes(shared)
                if rate is not None:
                    result.append((i, track_id, math.hypot(rate[0], rate[1])))
        self.clock.tick(at)
        horizon = max(self.rule.window, self.clock.grace(self.rule.grace))
        for track_id in [k for k, s in self._samples.items() if at - s.last_at > horizon]:
            del self._samples[track_id]
        return result

    def observe(
        self, tracked: TrackedFrame, geometry: FrameGeometry | None = None
    ) -> list[Observation]:
        """Tracks in scope faster than ``max_speed`` in this frame, in track order."""
        g = geometry_of(tracked, geometry)
        limit = self.rule.max_speed.value
        # Exactly the limit is allowed; the slack keeps float noise of a fit from crossing it.
        fast = [
            (i, speed)
            for i, _, speed in self._measure(tracked.timestamp, g)
            if speed > limit + 1e-9
        ]
        if not fast:
            return []
        zone_ids: list[str | None] = [None] * len(fast)
        if self.zones:  # the first listed zone wins when zones overlap
            first = g.first_zone(self.zones, self.rule.anchor, [i for i, _ in fast])
            zone_ids = [None if z is None else z.id for z in first]
        limit_text = self.plane.speed_text(limit)
        observations = []
        for (i, speed), zone_id in zip(fast, zone_ids, strict=True):
            if self.zones and zone_id is None:
                continue
            track = g.tracks[i]
            tid = track.track_id
            message = f"{track.label} #{tid} at {self.plane.speed_text(speed)} (limit {limit_text})"
            if zone_id is not None:
                message += f" in zone {zone_id}"
            observations.append(Observation(tid, (tid,), float(track.confidence), message, zone_id))
        return observations
