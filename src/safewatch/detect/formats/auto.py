"""``format: auto``: tell the model family from ONNX metadata and observed output shapes.

The heuristic, in order (``format:`` in the config overrides it whenever it guesses wrong):

1. Two or more outputs, one ending in 4 and sharing ``[B, Q]`` with the other: **detr**.
2. One rank-3 output ``[B, X, Y]``; ``G = sum((H/s) * (W/s))`` grid cells over strides 8/16/32 of
   the input:

   - ``Y == G`` (classes first, one column per cell): **yolov8**. Ultralytics exports also say
     so in their metadata (``task: detect``), which settles the case ``Y`` is not ``G``.
   - ``X == G`` (one row per cell, anchor-free): **yolox**. YOLOv5 has three anchors per cell, so
     its rows never equal ``G``.
   - ``X == 3 * G``: **yolov5**.
   - otherwise, the longer axis is the anchor axis: anchors last means yolov8, anchors first
     means yolov5.
3. Anything else is an unsupported layout, reported with the layouts that are supported. So are
   Ultralytics end-to-end exports (metadata ``end2end: True``, output ``[B, N, 6]`` with NMS baked
   in), which would otherwise pass for a one-class YOLOv5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from safewatch.detect.formats.base import Shape, layout_error
from safewatch.detect.formats.yolox import grid_cells

__all__ = ["ConcreteFormat", "detect_format", "is_ultralytics"]

ConcreteFormat = Literal["yolov8", "yolov5", "yolox", "detr"]


def is_ultralytics(metadata: Mapping[str, str]) -> bool:
    """Whether the ONNX metadata was written by an Ultralytics YOLOv8+/YOLO11 exporter."""
    return metadata.get("task") == "detect" or "ultralytics" in metadata.get("author", "").lower()


def detect_format(
    model: str,
    shapes: Sequence[Shape],
    metadata: Mapping[str, str],
    network_hw: tuple[int, int],
) -> ConcreteFormat:
    """Pick the adapter for a model (see the module docstring for the rules).

    Raises:
        ModelError: No supported layout matches ``shapes``.
    """
    if len(shapes) >= 2 and all(len(s) == 3 for s in shapes[:2]):
        if shapes[0][:2] == shapes[1][:2] and 4 in (shapes[0][2], shapes[1][2]):
            return "detr"
        raise layout_error(model, shapes)
    if len(shapes) != 1 or len(shapes[0]) != 3:
        raise layout_error(model, shapes)
    if metadata.get("end2end", "").lower() == "true":
        raise layout_error(
            model, shapes, "end-to-end exports with NMS inside; re-export with end2end=False"
        )
    _, x, y = shapes[0]
    cells = grid_cells(network_hw)
    if y == cells and x >= 5:
        return "yolov8"
    if x == cells and y >= 6:
        return "yolox"
    if x == 3 * cells and y >= 6:
        return "yolov5"
    if is_ultralytics(metadata) and x >= 5:
        return "yolov8"
    if y > x >= 5:
        return "yolov8"
    if x > y >= 6:
        return "yolov5"
    raise layout_error(model, shapes)
