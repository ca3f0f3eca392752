"""Several models (and tiles) serving frames: the one place detections are assembled.

A camera may name several models (a COCO person model plus a PPE model) and tiled inference (the
frame cut into overlapping tiles, each run at the model's full input size). The live inference
worker batches the frames of *many* cameras, each with its own models and tiling, into one run per
model; ``safewatch audit`` and ``safewatch backtest`` batch the frames of one camera. Both call
:func:`detect_requests`, so a frame gets the same detections whichever way it came in:

1. every input a frame needs (the frame, or its tiles plus optionally the whole frame) is listed
   under each of its models;
2. each model runs once over all its inputs, whatever cameras they come from (one ONNX Runtime
   call per model per round: the batching that pays on CPUs and GPUs alike);
3. per frame and model, tile results are merged back into frame pixels
   (:func:`~safewatch.detect.tiling.merge_tiles`); then the models' detections are concatenated
   in the camera's model order, without cross-model suppression: two models that both say
   ``person`` for one worker give two boxes, which the tracker's association absorbs; merging
   across models with NMS would need a policy (whose box wins?) that belongs in the label map.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from safewatch.config.runtime import TilingConfig
from safewatch.detect.protocol import Detector
from safewatch.detect.tiling import crop_tiles, merge_tiles, plan_tiles
from safewatch.domain import Detections, Frame

__all__ = [
    "CameraDetector",
    "DetectionRequest",
    "ModelTimer",
    "MultiModelDetector",
    "detect_requests",
]

ModelTimer = Callable[[str, int, float], None]
"""Told after each model run: ``(model key, inputs in the run, seconds)`` (metrics)."""


@dataclass(frozen=True, slots=True, eq=False)
class DetectionRequest:
    """One frame to detect, with the models (in merge order) and tiling of its camera."""

    frame: Frame
    models: tuple[str, ...]
    tiling: TilingConfig | None = None


def _inputs(request: DetectionRequest) -> list[Frame]:
    tiling = request.tiling
    if tiling is None:
        return [request.frame]
    tiles = plan_tiles(request.frame.width, request.frame.height, tiling)
    return ([request.frame] if tiling.full_frame else []) + crop_tiles(request.frame, tiles)


def _assemble(request: DetectionRequest, found: Sequence[Detections]) -> Detections:
    """One model's results for a request's inputs, back in frame pixels."""
    tiling = request.tiling
    if tiling is None:
        return found[0]
    frame = request.frame
    full = found[0] if tiling.full_frame else None
    tile_results = found[1:] if tiling.full_frame else found
    tiles = plan_tiles(frame.width, frame.height, tiling)
    return merge_tiles(frame.width, frame.height, tiles, tile_results, full)


def detect_requests(
    requests: Sequence[DetectionRequest],
    detector_for: Callable[[str], Detector],
    *,
    on_model: ModelTimer | None = None,
) -> list[Detections]:
    """Each request's detections: every model run once over every input that needs it.

    Args:
        requests: Frames with their cameras' models and tiling (any mix of cameras).
        detector_for: Model key -> its detector (shared sessions, see ``DetectorPool``).
        on_model: Told each model run's size and duration.

    Raises:
        RuntimeError: A detector returned another number of results than inputs it was given.
    """
    inputs = [_inputs(request) for request in requests]
    wanted: dict[str, list[tuple[int, Frame]]] = defaultdict(list)
    for index, request in enumerate(requests):
        for model in request.models:
            wanted[model].extend((index, frame) for frame in inputs[index])
    per_request: list[dict[str, list[Detections]]] = [defaultdict(list) for _ in requests]
    for model, items in wanted.items():
        detector = detector_for(model)
        started = time.perf_counter()
        found = detector.detect([frame for _, frame in items])
        if on_model is not None:
            on_model(model, len(items), time.perf_counter() - started)
        if len(found) != len(items):
            raise RuntimeError(
                f"{type(detector).__name__} ({model}) returned {len(found)} results for "
                f"{len(items)} inputs"
            )
        for (index, _), detections in zip(items, found, strict=True):
            per_request[index][model].append(detections)
    out = []
    for request, results in zip(requests, per_request, strict=True):
        parts = [_assemble(request, results[model]) for model in request.models]
        out.append(parts[0] if len(parts) == 1 else Detections.merge(parts))
    return out


class CameraDetector:
    """One camera's detector over a batch of its frames: its models, merged, and its tiling.

    Args:
        detector_for: Model key -> its (shared) detector.
        models: The camera's model keys, in merge order.
        tiling: The camera's tiled inference, or ``None``.
    """

    def __init__(
        self,
        detector_for: Callable[[str], Detector],
        models: Sequence[str],
        tiling: TilingConfig | None = None,
    ) -> None:
        if not models:
            raise ValueError("a camera detector needs at least one model")
        self._detector_for = detector_for
        self.models = tuple(models)
        self.tiling = tiling

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """Each frame's detections (see :func:`detect_requests`)."""
        requests = [DetectionRequest(frame, self.models, self.tiling) for frame in frames]
        return detect_requests(requests, self._detector_for)


class MultiModelDetector(CameraDetector):
    """Several ready detectors run on the same frames, merged in order (no tiling)."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise ValueError("MultiModelDetector needs at least one detector")
        self.detectors = tuple(detectors)
        super().__init__(
            lambda key: self.detectors[int(key)], [str(i) for i in range(len(detectors))]
        )
