"""Small media and recording fakes for the runtime tests (synthetic; nothing stored)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

from safewatch.domain import Detections, Frame


def moving_square_video(
    path: Path, *, seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (96, 64)
) -> Path:
    """An MPEG-4 file of a white square crossing a black picture, ``fps`` frames per second."""
    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        frames = round(seconds * fps)
        for index in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            x = int(index * (width - 16) / max(1, frames - 1))
            image[20:36, x : x + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def image(value: int = 0, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A uniform BGR picture."""
    return np.full((*shape, 3), value, np.uint8)


def person_at(
    x: float, y: float, w: float = 10.0, h: float = 20.0, score: float = 0.9
) -> Detections:
    """One person box."""
    return Detections(
        np.array([[x, y, x + w, y + h]], np.float32), np.array([score]), np.array(["person"])
    )


class RecordingDetector:
    """Returns ``result(frame)`` for each frame and records every call's batch."""

    def __init__(self, label: str = "person") -> None:
        self.label = label
        self.calls: list[list[Frame]] = []
        self._lock = threading.Lock()

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        with self._lock:
            self.calls.append(list(frames))
        return [
            Detections(
                np.array([[1.0, 1.0, 5.0, 9.0]], np.float32),
                np.array([0.9], np.float32),
                np.array([self.label]),
            )
            for _ in frames
        ]
