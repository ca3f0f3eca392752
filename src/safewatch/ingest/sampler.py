"""Pick frames at the analysis rate by presentation time, not by counting frames.

Counting ("keep every 5th frame") drifts when the native rate is 24.69 fps or varies; slotting by
PTS keeps frames evenly spread in media time and gives the same choice on every run of a file.
"""

from __future__ import annotations

import math

__all__ = ["FrameSampler"]

# A frame this close (in slots) below a slot boundary counts as on it: containers round PTS to
# their time base, and 0.3 s / 0.1 s is 2.9999999999999996 in floating point.
_SLOT_TOLERANCE = 1e-3


class FrameSampler:
    """Keeps the first frame whose PTS reaches each ``1 / fps`` slot.

    Slots are counted from the first frame seen. A frame is kept when it falls in a later slot than
    the last kept frame, so 24.69 fps sampled to 5 fps keeps about every 5th frame, evenly, and an
    analysis rate at or above the native rate keeps every frame. A PTS that goes backwards (a
    stream restarted) re-anchors the slots.

    Args:
        fps: Analysis frames per second; must be positive.
    """

    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self._origin: float | None = None
        self._last = 0.0
        self._next_slot = 0

    def reset(self) -> None:
        """Forget the slot grid; the next frame is kept and starts a new one."""
        self._origin = None
        self._next_slot = 0

    def keep(self, pts: float) -> bool:
        """Decide whether the frame at ``pts`` (seconds) is analysed.

        Args:
            pts: Presentation time of the frame in seconds, any origin.

        Returns:
            ``True`` when the frame opens a new slot.
        """
        if self._origin is None or pts < self._last:
            self._origin = pts
            self._next_slot = 0
        self._last = pts
        slot = math.floor((pts - self._origin) * self.fps + _SLOT_TOLERANCE)
        if slot < self._next_slot:
            return False
        self._next_slot = slot + 1
        return True
