"""The decoded picture and where it sits on the pipeline's clock."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Frame", "Image"]

Image = NDArray[np.uint8]
"""An ``(H, W, 3)`` BGR ``uint8`` picture, OpenCV's native layout."""


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One sampled frame of one camera.

    Attributes:
        camera_id: The site file's camera key.
        seq: Index of this frame among the frames the sampler kept (0, 1, 2, ...).
        pts: Presentation time in seconds since the start of the stream. Media time, not wall time:
            a rule's ``3s`` means three seconds of video, whatever the decode speed.
        timestamp: Wall-clock time in seconds since the Unix epoch (UTC) for this frame; for files
            ``origin + pts``, for live streams the receive time of the stream's first frame + pts.
        image: The picture, ``(H, W, 3)`` BGR ``uint8``. Treated as read-only by every stage.
        published_at: Wall-clock seconds when the server's decode worker published the decoded
            frame (``None`` where no worker did: a file the pipeline reads itself). Unlike
            ``timestamp``, anchored once per stream, it is read off the server's clock for every
            frame, so how long ago the frame was decoded is a duration on one clock (the blurred
            live video judges the age of its head boxes by it).
    """

    camera_id: str
    seq: int
    pts: float
    timestamp: float
    image: Image
    published_at: float | None = None

    @property
    def height(self) -> int:
        """Picture height in pixels."""
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        """Picture width in pixels."""
        return int(self.image.shape[1])
