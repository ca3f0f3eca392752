"""Several models serving one camera, e.g. a COCO person model plus a PPE model."""

from __future__ import annotations

from collections.abc import Sequence

from safewatch.detect.protocol import Detector
from safewatch.domain import Detections, Frame

__all__ = ["MultiModelDetector"]


class MultiModelDetector:
    """Run every detector on the same batch and merge their results frame by frame.

    Detections are concatenated in detector order and not cross-suppressed: two models that both
    say ``person`` for one worker give two boxes, which the tracker's association absorbs; merging
    across models with NMS would need a policy (whose box wins?) that belongs in the label map.
    """

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise ValueError("MultiModelDetector needs at least one detector")
        self.detectors = tuple(detectors)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """Each detector's results for each frame, merged per frame."""
        if not frames:
            return []
        per_model = [d.detect(frames) for d in self.detectors]
        for detector, result in zip(self.detectors, per_model, strict=True):
            if len(result) != len(frames):
                raise RuntimeError(
                    f"{type(detector).__name__} returned {len(result)} results for "
                    f"{len(frames)} frames"
                )
        return [Detections.merge(parts) for parts in zip(*per_model, strict=True)]
