"""Model-format adapters: one module per output layout users bring."""

from __future__ import annotations

from collections.abc import Sequence

from safewatch.detect.formats.auto import ConcreteFormat, detect_format
from safewatch.detect.formats.base import EXPECTED_LAYOUTS, Adapter, BoxFormat, RawBatch, Shape
from safewatch.detect.formats.detr import DetrAdapter, split_outputs
from safewatch.detect.formats.yolov5 import Yolov5Adapter
from safewatch.detect.formats.yolov8 import Yolov8Adapter
from safewatch.detect.formats.yolox import YoloxAdapter

__all__ = [
    "EXPECTED_LAYOUTS",
    "Adapter",
    "BoxFormat",
    "ConcreteFormat",
    "DetrAdapter",
    "RawBatch",
    "Shape",
    "Yolov5Adapter",
    "Yolov8Adapter",
    "YoloxAdapter",
    "adapter_for",
    "detect_format",
]


def adapter_for(
    fmt: ConcreteFormat,
    model: str,
    shapes: Sequence[Shape],
    output_names: Sequence[str] = (),
    configured_names: Sequence[str] | None = None,
) -> Adapter:
    """Build the adapter for ``fmt``.

    For DETR the class-name count decides between sigmoid scores and a softmax with a trailing
    "no object" column: names one fewer than the logits' width mean the latter (original DETR).
    """
    if fmt == "yolov8":
        return Yolov8Adapter()
    if fmt == "yolov5":
        return Yolov5Adapter()
    if fmt == "yolox":
        return YoloxAdapter()
    _, logits = split_outputs(model, shapes, output_names)
    no_object = configured_names is not None and len(configured_names) == shapes[logits][2] - 1
    return DetrAdapter(output_names, no_object=no_object)
