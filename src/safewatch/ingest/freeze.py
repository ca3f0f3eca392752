"""Tell a frozen picture from a still scene: the same decoded image, bit for bit, for too long.

A camera whose image pipeline hangs often keeps its stream up: the encoder (or the recorder or
media server in between) repeats the last picture, so frames keep arriving, the stall clock is
satisfied and the camera shows ``streaming`` while it watches nothing. Worse, the analysis goes
on over the repeated picture: a person caught in a zone dwells for ever, a bare head is one
incident lasting hours, and nobody learns that the camera is blind.

A live sensor never delivers the same picture twice across a keyframe, even over an empty,
motionless scene: between keyframes an encoder may repeat the picture exactly (all-skip
predicted frames of a still scene, for a minute or more with a "smart codec"'s long GOP), but a
keyframe encodes the sensor afresh, noise and all. So the test here is exact equality of a
sparse grid of pixels (every 8th row and column, about 100 KB of a 1080p frame, a fraction of a
millisecond with its copy), and "frozen" is no change at all for ``timeout`` seconds of the
stream's own timeline *and* across at least one keyframe decoded after the picture last
changed (a re-review encoded a noisy still scene with libx264 at a 1000-frame GOP: its grid
stayed bit-identical for 33 s between keyframes). Exactness is what keeps a quiet night scene
from ever counting as frozen, and no tolerance could do better: measured on one
picture of the shared PETS09 clip re-encoded for 16 s with libx264 (keyframe every second),
up to 3,171 of the grid's 8,100 values differed from the first frame by more than 3 grey
levels at 200 kbit/s CBR, 175 at 1 Mbit/s, as much as a live sensor's noise. So what is
caught is a stream that repeats the same picture: a camera or server resending its last
frame, a "no signal" still, and any JPEG camera (MJPEG over HTTP) whose sensor hung, as a
JPEG encoder turns the same picture into the same bytes (measured: 10 s of one picture at
10 fps decoded identical). An H.264 encoder re-encoding its last input at a varying quality
is not caught. A picture entirely clipped to one value (a lens cover, black with the
infra-red off) is, which is right, as nothing can be seen on it either.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from safewatch.domain.frame import Image

__all__ = ["FreezeWatch"]

_STRIDE = 8
"""Every 8th row and column is compared: a change anywhere larger than a few pixels hits it."""


class FreezeWatch:
    """Remember the last picture and since when it has not changed.

    Args:
        timeout: Seconds of an unchanged picture before it counts as frozen; must be positive.
    """

    def __init__(self, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"freeze timeout must be positive, got {timeout}")
        self._timeout = timeout
        self._grid: NDArray[np.uint8] | None = None
        self._since = 0.0
        self._keyframe_at: float | None = None
        self.is_frozen = False
        """The last verdict of :meth:`frozen` (kept across a reconnect: the picture may still be
        the same one)."""

    @property
    def timeout(self) -> float:
        """Seconds of an unchanged picture before it counts as frozen."""
        return self._timeout

    def keyframe(self, timestamp: float) -> None:
        """Note a keyframe decoded at ``timestamp``, sampled or not."""
        self._keyframe_at = timestamp

    def frozen(self, image: Image, timestamp: float) -> bool:
        """Whether ``image``, shown at ``timestamp`` (seconds), is part of a frozen stretch.

        A picture that differs from the previous one (or another size: the camera was
        reconfigured) starts the clock again.
        """
        grid = image[::_STRIDE, ::_STRIDE]
        if (
            self._grid is None
            or self._grid.shape != grid.shape
            or not np.array_equal(self._grid, grid)
        ):
            self._grid = np.array(grid, copy=True)
            self._since = timestamp
            self.is_frozen = False
            return False
        keyframe = self._keyframe_at
        self.is_frozen = (
            timestamp - self._since >= self._timeout
            and keyframe is not None
            and keyframe > self._since
        )
        return self.is_frozen

    def unchanged_for(self, timestamp: float) -> float:
        """Seconds the current picture has been shown by ``timestamp``."""
        return timestamp - self._since
