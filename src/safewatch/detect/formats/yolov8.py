"""Ultralytics YOLOv8 / YOLO11 (also YOLOv5u, YOLOv9/10 non-end2end) detection exports.

Output ``[B, 4+nc, A]``: per anchor ``cx, cy, w, h`` in input pixels followed by one sigmoid score
per class, no objectness and no NMS baked in. Input is RGB scaled to 0-1, letterboxed centred with
grey 114, exactly as ``ultralytics`` preprocesses for prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from safewatch.detect.formats.base import BoxFormat, RawBatch, Shape, layout_error
from safewatch.detect.preprocess import Preprocessing
from safewatch.detect.transform import Placement

__all__ = ["Yolov8Adapter"]


class Yolov8Adapter:
    """Decode ``[B, 4+nc, A]`` outputs: boxes and scores are views, nothing is copied."""

    name = "yolov8"
    preprocessing = Preprocessing(Placement.LETTERBOX_CENTER, rgb=True, scale=1 / 255)

    def num_classes(self, model: str, shapes: Sequence[Shape]) -> int:
        """Classes encoded by a ``[B, 4+nc, A]`` output."""
        if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][1] < 5:
            raise layout_error(model, shapes, "yolov8 needs one [B, 4+nc, A] output")
        anchors = shapes[0][2]
        if isinstance(anchors, int) and anchors > 0 and shapes[0][1] - 4 > anchors:
            # More "classes" than anchors: the anchors are on the middle axis, [B, A, 5+nc].
            raise layout_error(model, shapes, "this is [B, A, 5+nc], the yolox or yolov5 layout")
        return shapes[0][1] - 4

    def decode(
        self, outputs: Sequence[NDArray[np.float32]], network_hw: tuple[int, int]
    ) -> RawBatch:
        """Split the channel axis into boxes and scores."""
        out = np.asarray(outputs[0], np.float32)
        return RawBatch(out[:, :4, :], out[:, 4:, :], BoxFormat.CXCYWH)
