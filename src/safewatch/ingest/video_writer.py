"""H.264 MP4 writer for annotated video, with PyAV.

Frames arrive at the analysis rate, which is rarely the source's rate and may be irregular (a live
camera drops frames), so each frame carries its own presentation time in milliseconds instead of
assuming a constant frame rate. ``yuv420p`` and ``+faststart`` make the file play in every browser.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from safewatch.domain import Image
from safewatch.errors import SourceError

__all__ = ["Mp4Writer"]

_TIME_BASE = Fraction(1, 1000)


class Mp4Writer:
    """Encode BGR frames with their own timestamps into an MP4 file.

    The file is written as ``NAME.part`` and renamed on :meth:`close`, so a crash never leaves a
    truncated MP4 under the final name.
    """

    def __init__(self, path: Path, fps: float, width: int, height: int, *, crf: int = 23) -> None:
        self.path = path
        self._part = path.with_name(path.name + ".part")
        self._width = width - width % 2
        self._height = height - height % 2
        try:
            self._container = av.open(str(self._part), mode="w", format="mp4")
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot write video {path}: {exc}") from exc
        stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width = self._width
        stream.height = self._height
        stream.pix_fmt = "yuv420p"
        stream.time_base = _TIME_BASE
        stream.codec_context.time_base = _TIME_BASE
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        self._stream = stream
        self._last_pts = -1
        self._closed = False

    def write(self, image: Image, pts: float) -> None:
        """Append one frame shown at ``pts`` seconds; out-of-order or repeated times are nudged."""
        if image.shape[0] != self._height or image.shape[1] != self._width:
            image = np.ascontiguousarray(image[: self._height, : self._width])
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        millis = max(round(pts * 1000), self._last_pts + 1)
        frame.pts = millis
        frame.time_base = _TIME_BASE
        self._last_pts = millis
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, finish the file and move it to its final name."""
        if self._closed:
            return
        self._closed = True
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._part.replace(self.path)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True
            self._container.close()
            self._part.unlink(missing_ok=True)
