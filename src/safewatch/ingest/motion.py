"""Motion gating: tell static frames from moving ones for a fraction of a millisecond.

Most CCTV hours show an empty or motionless scene, and inference is by far the dearest stage, so a
frame that looks like the last analysed one need not be detected again: the previous detections
still hold and are re-used (the tracker and the rules still see the frame, so durations go on).
The gate runs in the decode worker, beside the decoder, on a small blurred grey thumbnail: the
share of its pixels whose grey level moved by more than ``pixel_threshold`` since the reference
frame. The reference is the last frame the gate passed, not the previous frame, so a slow walker
whose per-frame change is tiny still adds up and passes once the change is large enough.

The gate never decides alone: the inference worker also runs a static frame when the camera has
had no inference for ``refresh_seconds`` (a worker standing still must not be lost), and a frame
that replaces an unprocessed moving one inherits its "moving" flag, so motion is never lost to a
dropped frame (:mod:`safewatch.runtime.mailbox`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from safewatch.domain.frame import Image

__all__ = ["MotionGate", "MotionResult"]

THUMBNAIL_WIDTH = 160
"""Width of the grey thumbnail compared; 160x90 for 16:9, about 0.1 ms per frame."""


@dataclass(frozen=True, slots=True)
class MotionResult:
    """The gate's verdict on one frame.

    Attributes:
        score: Share of thumbnail pixels that changed since the reference (0-1); 1.0 for the
            first frame.
        moving: Whether ``score`` reached the threshold (or gating is off).
    """

    score: float
    moving: bool


class MotionGate:
    """Compare each frame with the last one that passed.

    Args:
        threshold: Share of changed pixels (0-1) that makes a frame moving; 0 passes every frame.
        pixel_threshold: Grey-level difference (1-255) that counts a pixel as changed.
        enabled: ``False`` passes every frame (and skips the work).
    """

    def __init__(
        self, threshold: float, pixel_threshold: int = 20, *, enabled: bool = True
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0-1, got {threshold}")
        if not 1 <= pixel_threshold <= 255:
            raise ValueError(f"pixel_threshold must be within 1-255, got {pixel_threshold}")
        self.threshold = threshold
        self.pixel_threshold = pixel_threshold
        self.enabled = enabled
        self._reference: NDArray[np.uint8] | None = None

    def reset(self) -> None:
        """Forget the reference: the next frame passes."""
        self._reference = None

    def check(self, image: Image) -> MotionResult:
        """Score ``image`` against the reference; a passing frame becomes the new reference."""
        if not self.enabled:
            return MotionResult(1.0, True)
        thumbnail = _thumbnail(image)
        reference = self._reference
        if reference is None or reference.shape != thumbnail.shape:
            self._reference = thumbnail
            return MotionResult(1.0, True)
        changed = cv2.absdiff(thumbnail, reference) > self.pixel_threshold
        score = float(np.count_nonzero(changed)) / changed.size
        moving = score >= self.threshold
        if moving:
            self._reference = thumbnail
        return MotionResult(score, moving)


def _thumbnail(image: Image) -> NDArray[np.uint8]:
    height, width = image.shape[:2]
    scale = min(1.0, THUMBNAIL_WIDTH / max(1, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return np.asarray(cv2.GaussianBlur(grey, (5, 5), 0), dtype=np.uint8)
