"""Small media and recording fakes for the runtime tests (synthetic; nothing stored)."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import av
import numpy as np

from safewatch.config.loader import load_site
from safewatch.domain import Detections, Frame
from safewatch.runtime.camera_worker import WorkerSpec
from safewatch.runtime.options import ServeOptions
from safewatch.runtime.service import RuntimeService
from safewatch.runtime.supervisor import ReloadPlan


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


class RecordingSupervisor:
    """Records the worker specs the service asks to run; nothing starts."""

    def __init__(self) -> None:
        self.applied: list[dict[str, WorkerSpec]] = []

    def apply(self, specs: Mapping[str, WorkerSpec], restart: Collection[str] = ()) -> ReloadPlan:
        self.applied.append(dict(specs))
        return ReloadPlan(unchanged=tuple(sorted(specs)))


def service_without_workers(
    path: Path, *, cluster: bool = False
) -> tuple[RuntimeService, RecordingSupervisor]:
    """A service for the site file at ``path`` whose reloads are judged for real but start no
    worker (its supervisor records what it is asked to run); the models a reload resolves exist
    as empty files (a fake detects)."""
    for model in ("model.onnx", "ppe.onnx"):
        (path.parent / model).write_bytes(b"")
    service = RuntimeService(
        load_site(path),
        ServeOptions(rules=path.parent / "rules", http=False, cluster=cluster),
        detector_factory=lambda *_: RecordingDetector(),
    )
    supervisor = RecordingSupervisor()
    service._supervisor = supervisor  # type: ignore[assignment]
    return service, supervisor
