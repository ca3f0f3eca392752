"""Struct-of-arrays detections, the one type passed from detector to tracker.

Arrays instead of a list of objects because every stage after the detector (NMS, filtering by label
or confidence, merging models, geometry) is vectorised; ``det[det.label == "person"]`` is the idiom.
The arrays are made read-only so no stage can change what another stage sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Detections"]


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True, eq=False)
class Detections:
    """N detections in source-image pixel coordinates.

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes ``x1, y1, x2, y2`` with ``x1 <= x2`` and ``y1 <= y2``.
        confidence: ``(N,)`` float32 scores in ``[0, 1]``.
        label: ``(N,)`` array of site-vocabulary labels (``person``, ``hardhat``, ``no_hardhat``,
            ``vest``, ``no_vest``, ``vehicle``, ...), numpy unicode strings.
    """

    xyxy: NDArray[np.float32]
    confidence: NDArray[np.float32]
    label: NDArray[np.str_]

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        label = np.asarray(self.label, dtype=np.str_).reshape(-1)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        if confidence.shape != (n,):
            raise ValueError(f"confidence must have shape ({n},), got {confidence.shape}")
        if label.shape != (n,):
            raise ValueError(f"label must have shape ({n},), got {label.shape}")
        if n and not np.all(np.isfinite(xyxy)):
            raise ValueError("xyxy must be finite")
        if n and bool(np.any((xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1]))):
            raise ValueError("xyxy must satisfy x1 <= x2 and y1 <= y2")
        object.__setattr__(self, "xyxy", _readonly(xyxy.copy() if xyxy is self.xyxy else xyxy))
        object.__setattr__(
            self,
            "confidence",
            _readonly(confidence.copy() if confidence is self.confidence else confidence),
        )
        object.__setattr__(self, "label", _readonly(label.copy() if label is self.label else label))

    @classmethod
    def empty(cls) -> Detections:
        """No detections (a frame where nothing was found)."""
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.str_)
        )

    @classmethod
    def merge(cls, parts: Sequence[Detections]) -> Detections:
        """Concatenate detections of several models for one frame, in order."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.label.astype(np.str_) for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: NDArray[np.bool_] | NDArray[np.intp] | slice) -> Detections:
        """Select by boolean mask, index array or slice: ``det[det.confidence > 0.5]``."""
        return Detections(self.xyxy[index], self.confidence[index], self.label[index])

    @property
    def area(self) -> NDArray[np.float32]:
        """Box areas in square pixels."""
        w = self.xyxy[:, 2] - self.xyxy[:, 0]
        h = self.xyxy[:, 3] - self.xyxy[:, 1]
        return (w * h).astype(np.float32)
