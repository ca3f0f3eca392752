"""The tracker's clock: strictly increasing seconds taken from the frames themselves.

Tracking works in time, not frame counts (a 5 fps sampled stream loses a track after
``lost_track_seconds``, whatever the sampling), and the pipeline's rule is that time comes from the
frame, never from ``time.time()``. Media time (``pts``) is deterministic for files, but a live
source that reconnects may restart it at zero; then the wall-clock ``timestamp`` difference bridges
the gap, so tracks that outlived a short outage are still matched and a long outage expires them.
"""

from __future__ import annotations

from safewatch.domain import Frame

__all__ = ["FrameClock"]

_MIN_STEP = 1e-3  # seconds; keeps the clock strictly increasing on duplicate frame times


class FrameClock:
    """Map each frame of one camera to a strictly increasing number of seconds."""

    def __init__(self) -> None:
        self._last: tuple[float, float, float] | None = None  # pts, timestamp, clock

    def __call__(self, frame: Frame) -> float:
        """Seconds on the camera's tracking clock for ``frame`` (call once per frame, in order)."""
        if self._last is None:
            clock = float(frame.pts)
        else:
            last_pts, last_timestamp, last_clock = self._last
            step = frame.pts - last_pts
            if step <= 0:  # restarted stream (or a duplicate): fall back to wall time
                step = frame.timestamp - last_timestamp
            clock = last_clock + max(float(step), _MIN_STEP)
        self._last = (float(frame.pts), float(frame.timestamp), clock)
        return clock
