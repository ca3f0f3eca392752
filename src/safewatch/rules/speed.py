"""The ``speed`` rule kind: vehicles over a speed limit, measured on the floor.

Pixels per second mean nothing on a camera looking down a yard (a forklift far away crawls across
the picture at full speed), so the kind needs a calibrated camera and measures each track's
anchor on the floor in metres. The speed is the least-squares velocity over the last ``window``
seconds of the frame clock (see :mod:`safewatch.rules.measure`), so box jitter and a single
mis-sized box do not fake a speeding vehicle; a track needs three samples spanning half the window
before it has a speed at all. Per-track history holds only that window and is dropped once the
track has been unseen for longer than it (or ``grace``, whichever is longer).
"""

from __future__ import annotations

import math

import numpy as np

from safewatch.config.rules import SpeedRule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import TrackedFrame
from safewatch.rules.episodes import Observation
from safewatch.rules.measure import Plane, Samples
from safewatch.rules.zone_intrusion import tracks_in_zone

__all__ = ["SpeedMonitor"]


class SpeedMonitor:
    """Measures the floor speed of each matching track.

    Args:
        rule: The rule (objects, anchor, max_speed, window, zones).
        plane: The camera's floor (a calibrated :class:`Plane`).
        zones: The rule's scope zones on this camera; empty: anywhere.
    """

    instant = False

    def __init__(self, rule: SpeedRule, plane: Plane, zones: tuple[Zone, ...] = ()) -> None:
        self.rule = rule
        self.plane = plane
        self.zones = zones
        self._samples: dict[int, Samples] = {}

    def __len__(self) -> int:
        """Tracks with position history."""
        return len(self._samples)

    def speeds(self, tracked: TrackedFrame) -> dict[int, float]:
        """Advance the histories by one frame; the smoothed speed of each track that has one."""
        at = tracked.timestamp
        tracks = [t for t in tracked.tracks if t.label in self.rule.objects]
        result: dict[int, float] = {}
        if tracks:
            points = np.array(
                [t.foot if self.rule.anchor == "feet" else t.centre for t in tracks],
                dtype=np.float64,
            )
            floor = self.plane.project(points, tracked.width, tracked.height).tolist()
            for track, (x, y) in zip(tracks, floor, strict=True):
                if not (math.isfinite(x) and math.isfinite(y)):
                    continue
                samples = self._samples.get(track.track_id)
                if samples is None:
                    samples = self._samples[track.track_id] = Samples(self.rule.window)
                samples.add(at, (x, y))
                rate = samples.rate()
                if rate is not None:
                    result[track.track_id] = math.hypot(float(rate[0]), float(rate[1]))
        horizon = max(self.rule.window, self.rule.grace)
        for track_id in [k for k, s in self._samples.items() if at - s.last_at > horizon]:
            del self._samples[track_id]
        return result

    def observe(self, tracked: TrackedFrame) -> list[Observation]:
        """Tracks in scope faster than ``max_speed`` in this frame, in track order."""
        speeds = self.speeds(tracked)
        limit = self.rule.max_speed.value
        # Exactly the limit is allowed; the slack keeps float noise of a fit from crossing it.
        fast = [t for t in tracked.tracks if speeds.get(t.track_id, 0.0) > limit + 1e-9]
        if not fast:
            return []
        zone_of: list[str | None] = [None] * len(fast)
        for zone in reversed(self.zones):  # the first listed zone wins when zones overlap
            inside = tracks_in_zone(fast, zone, self.rule.anchor, tracked.width, tracked.height)
            for index, is_inside in enumerate(inside):
                if is_inside:
                    zone_of[index] = zone.id
        observations = []
        for track, zone_id in zip(fast, zone_of, strict=True):
            if self.zones and zone_id is None:
                continue
            speed = self.plane.speed_text(speeds[track.track_id])
            message = (
                f"{track.label} #{track.track_id} at {speed} (limit {self.plane.speed_text(limit)})"
            )
            if zone_id is not None:
                message += f" in zone {zone_id}"
            observations.append(
                Observation(
                    subject=track.track_id,
                    track_ids=(track.track_id,),
                    confidence=float(track.confidence),
                    message=message,
                    zone_id=zone_id,
                )
            )
        return observations
