"""Head mode: tracking hard-hat / bare-head boxes as people when no person model runs.

A camera served only by a PPE head model (``hardhat`` / ``no_hardhat`` boxes) has no person boxes to
hang PPE states on. In head mode each head box is tracked as a ``person`` whose box is the head and
whose ``hardhat`` attribute comes from its own label (voted like any other observation). Rules on
the foot point of such a track see the head's bottom edge, which is approximate: prefer a person
model where zones matter.

The mode is a constructor choice (``track_heads=True/False``, which the pipeline derives from the
labels of the camera's models: :func:`~safewatch.pipeline.stages.track_heads`) or automatic
(``None``, where a model's classes are known only from its file). Automatic mode looks at recent
frames that had person or head boxes (head boxes at the head tracker's start score or above: weak
bare-head boxes are no sign of a missing person model) and switches with hysteresis, so a person
class that fires once in a while (the PPE model's own ``Person``) or a person detector missing a
few small people does not flip the camera back and forth, which would end every track each time.
It cannot tell a camera without a person model from an empty scene with a false hat box, which is
why a camera with a person model is never left to it.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import NDArray

__all__ = ["HeadModeSwitch", "suppress_overlaps"]


class HeadModeSwitch:
    """Decide per frame whether a camera tracks heads (no person model) or persons.

    Args:
        forced: ``True`` / ``False`` fixes the mode; ``None`` decides from the detections.
        window: Recent informative frames (frames with person or head boxes) considered.
        min_samples: Informative frames needed before automatic mode may switch to heads.
        enter_below: Head mode starts when fewer than this share of those frames had persons.
        leave_above: Head mode ends when more than this share of them had persons.
    """

    def __init__(
        self,
        forced: bool | None = None,
        window: int = 50,
        min_samples: int = 3,
        enter_below: float = 0.05,
        leave_above: float = 0.3,
    ) -> None:
        self._forced = forced
        self._samples: deque[bool] = deque(maxlen=window)
        self._min_samples = min_samples
        self._enter_below = enter_below
        self._leave_above = leave_above
        self._heads = bool(forced)

    @property
    def active(self) -> bool:
        """Whether the camera is in head mode now."""
        return self._heads

    def update(self, has_persons: bool, has_heads: bool) -> bool:
        """Feed one frame's facts; returns whether this frame is tracked in head mode."""
        if self._forced is not None:
            return self._forced
        if has_persons or has_heads:
            self._samples.append(has_persons)
        if len(self._samples) >= self._min_samples:
            share = sum(self._samples) / len(self._samples)
            if self._heads and share > self._leave_above:
                self._heads = False
            elif not self._heads and share < self._enter_below:
                self._heads = True
        return self._heads


def suppress_overlaps(
    xyxy: NDArray[np.floating], confidence: NDArray[np.floating], iou: float = 0.5
) -> NDArray[np.intp]:
    """Class-agnostic NMS: indices of boxes kept, best first.

    A head model may put a ``hardhat`` and a ``no_hardhat`` box on the same head; in head mode they
    are one person, so the weaker box is dropped before tracking (its label still votes nothing).
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    order = np.lexsort((boxes[:, 0], boxes[:, 1], -np.asarray(confidence, dtype=np.float64)))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            iw = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            ih = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            if iw <= 0 or ih <= 0:
                continue
            inter = iw * ih
            if inter / max(area[i] + area[j] - inter, 1e-9) > iou:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return np.asarray(keep, dtype=np.intp)
