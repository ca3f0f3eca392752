"""When a stream's pictures arrived, estimated from their media times and the times they were
read: one clock origin per stream, for the live video's privacy judgement.

A picture read at ``read`` with media time ``media`` arrived at the latest at ``read``; a stream
whose pictures are read as they come has ``read - media`` constant (the origin), up to network
jitter. That difference drops when pictures come ahead of real time (a media server's burst of
cached pictures at connect: they were filmed earlier than they arrived), so the origin moves back
at once; it grows when pictures are read late (a decoder behind real time, a backlog), which must
not be taken for fresh pictures, and when the camera's clock runs slow, which must be followed or
every picture ends up "late". So the origin moves forward at most :data:`MAX_CLOCK_DRIFT` of the
time elapsed: a slow clock (50 ppm is usual, 200 ppm a bad crystal) is followed, a backlog of
seconds stays a backlog for hours.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_CLOCK_DRIFT", "ArrivalOrigin"]

MAX_CLOCK_DRIFT = 2e-4
"""How fast a stream's origin may move forward (200 ppm, over ten times a typical crystal's
error): 0.7 s an hour."""


@dataclass
class ArrivalOrigin:
    """The wall time of one stream's media time zero (module docstring); a new stream (a
    reconnect, its media times starting again) needs a new one."""

    origin: float | None = None
    _read: float = 0.0

    def update(self, read: float, media: float) -> float:
        """Take a picture read at wall time ``read`` with media time ``media`` (seconds);
        returns the origin, so ``origin + media`` is when that picture arrived (never after
        ``read``)."""
        if self.origin is None:
            self.origin, self._read = read - media, read
            return self.origin
        allowed = MAX_CLOCK_DRIFT * max(0.0, read - self._read)
        self._read = read
        self.origin = min(self.origin + allowed, read - media)
        return self.origin
