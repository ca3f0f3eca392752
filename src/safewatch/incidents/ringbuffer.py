"""A bounded buffer of one camera's recent frames, so a clip can start before its incident.

A rule fires some time after the episode it reports began (``min_duration``), and a clip should
also show the seconds before that; so the frames must already be kept when the incident opens.
The buffer keeps at most ``seconds`` of frame time *and* at most ``max_bytes``, dropping the
oldest first, so a 24/7 camera never grows it.

Frames are held as JPEG by default. Measured by ``python -m bench.evidence`` (tracemalloc, one
camera, 10 s buffer): raw BGR holds 135 MiB at 720p and 303 MiB at 1080p at 5 fps (399 / 896 MiB
at 15 fps); JPEG at quality 85 holds 5.5-7 MiB and 10-14 MiB at 5 fps (16-21 / 30-42 MiB at
15 fps; the upper figures with sensor noise added), 20 to 30 times less, for about 2 ms (720p)
and 4-8 ms (1080p) of encoding per frame. The encoding runs on the evidence thread
(:mod:`safewatch.incidents.recorder`), never on the analysis path; ``raw`` remains for a host with
memory to spare and no CPU to spare.

Not thread-safe: the evidence recorder's single thread owns every buffer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from safewatch.domain import Frame, Image, TrackedFrame

__all__ = ["BufferFormat", "BufferedFrame", "FrameRing"]

BufferFormat = Literal["jpeg", "raw"]

BUFFER_JPEG_QUALITY = 85
"""Buffered frames are re-encoded once more into the clip, so they keep more than a thumbnail."""


@dataclass(frozen=True, slots=True, eq=False)
class BufferedFrame:
    """One frame as the buffer holds it, with the tracker's view of it (for blur and overlays).

    Attributes:
        camera_id: Camera key.
        seq: The frame's sequence number.
        timestamp: Wall-clock seconds of the frame (the clip window is in these).
        tracked: The tracker's output for the frame (boxes in frame pixels).
        payload: The BGR image (``raw``) or its JPEG bytes (``jpeg``).
        width: Frame width in pixels.
        height: Frame height in pixels.
    """

    camera_id: str
    seq: int
    timestamp: float
    tracked: TrackedFrame
    payload: Image | bytes
    width: int
    height: int

    @property
    def nbytes(self) -> int:
        """Bytes held for the picture (the image array or the JPEG)."""
        return self.payload.nbytes if isinstance(self.payload, np.ndarray) else len(self.payload)

    def image(self) -> Image:
        """The frame as a BGR ``uint8`` image (decoded when held as JPEG); treat as read-only."""
        if isinstance(self.payload, np.ndarray):
            return self.payload
        decoded = cv2.imdecode(np.frombuffer(self.payload, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:  # pragma: no cover - only our own encoder's bytes are ever held
            raise ValueError(f"buffered frame {self.seq} of {self.camera_id} does not decode")
        return np.asarray(decoded, np.uint8)


class FrameRing:
    """Recent frames of one camera, bounded in seconds and bytes.

    Args:
        seconds: Frame time kept behind the newest frame.
        max_bytes: Most picture bytes kept; the oldest frames are dropped first.
        fmt: ``jpeg`` (encode on :meth:`push`) or ``raw`` (keep a reference to the frame's image,
            which every stage treats as read-only, so no copy is needed).
        quality: JPEG quality for ``jpeg``.

    Raises:
        ValueError: A bound is not positive.
    """

    def __init__(
        self,
        seconds: float,
        max_bytes: int,
        fmt: BufferFormat = "jpeg",
        *,
        quality: int = BUFFER_JPEG_QUALITY,
    ) -> None:
        if seconds <= 0 or max_bytes <= 0:
            raise ValueError(f"seconds and max_bytes must be > 0, got {seconds}, {max_bytes}")
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.fmt = fmt
        self._quality = quality
        self._frames: deque[BufferedFrame] = deque()
        self._bytes = 0
        self.evicted_for_bytes = 0
        """Frames dropped before their time because the byte cap was reached."""

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        """Picture bytes held now."""
        return self._bytes

    @property
    def span(self) -> float:
        """Seconds between the oldest and newest frame held (0 with fewer than two)."""
        if len(self._frames) < 2:
            return 0.0
        return self._frames[-1].timestamp - self._frames[0].timestamp

    def _payload(self, image: Image) -> Image | bytes:
        if self.fmt == "raw":
            return image
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:  # pragma: no cover - OpenCV encodes any (H, W, 3) uint8 image
            raise ValueError(f"cannot JPEG-encode a frame of shape {image.shape}")
        return encoded.tobytes()

    def push(self, frame: Frame, tracked: TrackedFrame) -> BufferedFrame:
        """Add the newest frame and drop what falls outside the bounds.

        A frame older than the newest one held means the stream restarted (a new file, a camera
        whose clock jumped back): the buffer starts over rather than mixing two timelines.

        Returns:
            The frame as held (clips being written take the same object).
        """
        if self._frames and frame.timestamp < self._frames[-1].timestamp:
            self.clear()
        entry = BufferedFrame(
            camera_id=frame.camera_id,
            seq=frame.seq,
            timestamp=frame.timestamp,
            tracked=tracked,
            payload=self._payload(frame.image),
            width=frame.width,
            height=frame.height,
        )
        self._frames.append(entry)
        self._bytes += entry.nbytes
        horizon = frame.timestamp - self.seconds
        while self._frames and self._frames[0].timestamp < horizon:
            self._bytes -= self._frames.popleft().nbytes
        while self._bytes > self.max_bytes and len(self._frames) > 1:
            self._bytes -= self._frames.popleft().nbytes
            self.evicted_for_bytes += 1
        return entry

    def since(self, start: float) -> list[BufferedFrame]:
        """Frames at or after ``start`` (wall-clock seconds), oldest first."""
        return [f for f in self._frames if f.timestamp >= start]

    def clear(self) -> None:
        """Drop every frame."""
        self._frames.clear()
        self._bytes = 0
