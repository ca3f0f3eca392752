"""What every model-format adapter turns a model's raw outputs into.

Model families disagree on tensor layout (classes first or anchors first, with or without
objectness, raw grid offsets or pixels, normalised or not) but after decoding they all say the same
thing: for each anchor or query, a box in network-input pixels and one score per class. Adapters
produce exactly that, :class:`RawBatch`, and the shared selection code (thresholds, NMS, mapping
back to the source picture) never needs to know which family it is looking at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from safewatch.detect.preprocess import Preprocessing
from safewatch.errors import ModelError

__all__ = [
    "EXPECTED_LAYOUTS",
    "STRIDES",
    "Adapter",
    "BoxFormat",
    "RawBatch",
    "Shape",
    "grid_cells",
    "layout_error",
]

Shape = tuple[int, ...]
"""A concrete tensor shape, as observed on a real run."""

EXPECTED_LAYOUTS = (
    "expected output [B, 4+nc, A] (yolov8/yolo11), or [B, A, 5+nc] (yolov5/yolox), "
    "or DETR boxes [B, Q, 4] + logits [B, Q, nc(+1)] (detr/rf-detr)"
)


STRIDES = (8, 16, 32)
"""Output strides of the YOLOX (and YOLOv8) heads, finest first."""


def grid_cells(network_hw: tuple[int, int], strides: Sequence[int] = STRIDES) -> int:
    """Number of grid cells over all strides: ``sum((H/s) * (W/s))``.

    One row per cell is the anchor-free layout (YOLOX, YOLOv8); YOLOv5 has three per cell. Here
    rather than in ``yolox`` so that ``yolov5`` can tell the two apart without an import cycle.
    """
    h, w = network_hw
    return sum((h // s) * (w // s) for s in strides)


def layout_error(model: str, shapes: Sequence[Shape], detail: str = "") -> ModelError:
    """The one error for an output layout safewatch cannot read, naming what it expected."""
    got = ", ".join(str(list(s)) for s in shapes) or "no outputs"
    extra = f" ({detail})" if detail else ""
    return ModelError(
        f"model {model!r}: unsupported output layout{extra}: {EXPECTED_LAYOUTS}, got {got}; "
        "set `format:` in the model's config if auto-detection picked the wrong family"
    )


class BoxFormat(Enum):
    """How the four box numbers are arranged."""

    CXCYWH = "cxcywh"
    XYXY = "xyxy"


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Dense predictions of a batch, one column per anchor (or DETR query).

    Attributes:
        boxes: ``(B, 4, A)`` boxes in network-input pixels, laid out as ``box_format`` says. Often a
            strided view of the model's output: selection gathers only the columns it keeps.
        scores: ``(B, nc, A)`` per-class confidences in ``[0, 1]`` (objectness already folded in).
        box_format: Centre-size or corner boxes.
        needs_nms: ``False`` for set-prediction models (DETR) that emit one query per object.
    """

    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    box_format: BoxFormat
    needs_nms: bool = True


class Adapter(Protocol):
    """One model family's input convention and output decoding."""

    @property
    def name(self) -> str:
        """The ``format:`` value this adapter implements."""
        ...

    @property
    def preprocessing(self) -> Preprocessing:
        """How frames must be resized, ordered and scaled for this family."""
        ...

    def num_classes(self, model: str, shapes: Sequence[Shape]) -> int:
        """Check the output shapes and return the number of classes they encode.

        Raises:
            ModelError: The shapes are not this family's layout.
        """
        ...

    def decode(
        self, outputs: Sequence[NDArray[np.float32]], network_hw: tuple[int, int]
    ) -> RawBatch:
        """Turn one run's outputs (in session output order) into dense predictions."""
        ...
