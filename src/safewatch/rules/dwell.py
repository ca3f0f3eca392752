"""The ``dwell`` rule kind: nobody stays in a zone longer than ``max_time``.

Each track's stay starts at its first frame in the zone and continues while it stays in; leaving
the zone (or vanishing) for at most ``grace`` does not restart it, so a worker whose feet flicker
over the zone edge, or who is hidden behind a pallet for a moment, keeps the clock running. The
violation starts at the first frame the stay exceeds ``max_time``; from there the shared episode
book applies ``min_duration`` and ends the episode once the track has left for longer than
``grace``. A track's clock is forgotten once it has been out of the zone for longer than
``grace``, so memory is bounded by the tracks recently in the zone.

Grace is measured as :mod:`~safewatch.rules.episodes` measures it, with the same effective grace
(:meth:`~safewatch.rules.episodes.FrameClock.grace`: the rule's ``grace``, but at least 1.5 of
the camera's frame intervals): a stay ends at a frame that shows the track out of the zone (or
unseen) more than that after its last frame in it, never because two frames in the zone are far
apart. At 1 fps with a 1 s grace, one frame out makes a 2 s gap between frames in the zone, yet
the track was out for at most a second: the clock goes on, as it does at 5 fps for the same walk.
At 0.5 fps the grace is 3 s, so one missed frame (2 s after the last frame in) keeps the clock
going too, while two (4 s) end the stay, whatever the camera's frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from safewatch.config.rules import DwellRule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import TrackedFrame
from safewatch.rules.episodes import FrameClock, Observation
from safewatch.rules.frame_geometry import FrameGeometry, geometry_of

__all__ = ["DwellMonitor"]

_EPS = 1e-6


@dataclass(slots=True)
class _Stay:
    entered_at: float
    last_in: float


class DwellMonitor:
    """Times each track's stay in one zone.

    Args:
        rule: The rule (zone, objects, anchor, max_time, grace).
        zone: The rule's zone.
        clock: The camera's frame clock, shared with the rule's episodes (one of its own by
            default), so a stay and its episode end on the same frame.
    """

    instant = False

    def __init__(self, rule: DwellRule, zone: Zone, clock: FrameClock | None = None) -> None:
        self.rule = rule
        self.zone = zone
        self.clock = FrameClock() if clock is None else clock
        self._stays: dict[int, _Stay] = {}

    def __len__(self) -> int:
        """Tracks whose stay is being timed."""
        return len(self._stays)

    def observe(
        self, tracked: TrackedFrame, geometry: FrameGeometry | None = None
    ) -> list[Observation]:
        """Tracks in the zone whose stay exceeds ``max_time`` at this frame, in track order."""
        at = tracked.timestamp
        self.clock.tick(at)
        g = geometry_of(tracked, geometry)
        observations = []
        for i in g.in_zone(self.zone, self.rule.anchor, g.labelled(self.rule.objects)):
            track = g.tracks[i]
            stay = self._stays.get(track.track_id)
            if stay is None:  # a stay that lapsed was dropped below, on a frame without the track
                stay = self._stays[track.track_id] = _Stay(entered_at=at, last_in=at)
            stay.last_in = at
            dwelt = at - stay.entered_at
            if dwelt > self.rule.max_time + _EPS:
                observations.append(
                    Observation(
                        subject=track.track_id,
                        track_ids=(track.track_id,),
                        confidence=float(track.confidence),
                        message=f"{track.label} #{track.track_id} in zone {self.zone.id} for "
                        f"{dwelt:.0f}s (max {self.rule.max_time:g}s)",
                        zone_id=self.zone.id,
                    )
                )
        # Tracks in the zone now have last_in == at: only those out of it (or unseen) on this
        # frame, for longer than the effective grace since they were last in, end their stay.
        limit = self.clock.grace(self.rule.grace) + _EPS
        stale = [k for k, s in self._stays.items() if at - s.last_in > limit]
        for track_id in stale:
            del self._stays[track_id]
        return observations
