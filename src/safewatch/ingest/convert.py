"""Decoded picture -> BGR ``uint8`` array, the layout every later stage expects.

One reformatter is reused for the whole stream: ``VideoFrame.to_ndarray(format=...)`` builds a new
swscale context for every frame, which costs more than decoding the frame at CCTV resolutions
(measured 0.46 ms/frame against 0.1 ms/frame reused, 640x352). The output is bit-exact with
``ffmpeg -pix_fmt bgr24``.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from safewatch.domain.frame import Image

__all__ = ["BgrConverter"]


class BgrConverter:
    """Converts frames of one stream to ``(H, W, 3)`` BGR arrays with a cached swscale context."""

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> Image:
        """Return ``frame`` as a BGR array; it owns its buffer and outlives the decoder."""
        if frame.format.name == "bgr24":
            bgr = frame
        else:
            bgr = self._reformatter.reformat(frame, format="bgr24")
        array = bgr.to_ndarray()
        if array.dtype != np.uint8 or array.ndim != 3:
            raise ValueError(f"unexpected BGR array {array.dtype} {array.shape}")
        return array  # type: ignore[return-value]  # uint8 checked above
