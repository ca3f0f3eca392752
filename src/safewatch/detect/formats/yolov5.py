"""YOLOv5-style exports (also YOLOv7 and other anchor-based heads with objectness).

Output ``[B, A, 5+nc]``: per anchor ``cx, cy, w, h`` in input pixels, an objectness probability and
one probability per class; the confidence of a class is ``objectness * class``. Input preprocessing
is the same as Ultralytics YOLOv8 (RGB, 0-1, centred letterbox with grey 114).

YOLOX outputs have the same shape, but one row per grid cell (``A == G``) where YOLOv5 has three
anchors per cell (``A == 3 * G``). Read as YOLOv5 they would get the wrong preprocessing and raw
grid offsets as pixel boxes, and detect nothing without any error, so decoding refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from safewatch.detect.formats.base import BoxFormat, RawBatch, Shape, grid_cells, layout_error
from safewatch.detect.preprocess import Preprocessing
from safewatch.detect.transform import Placement

__all__ = ["Yolov5Adapter"]


class Yolov5Adapter:
    """Decode ``[B, A, 5+nc]`` outputs with objectness."""

    name = "yolov5"
    preprocessing = Preprocessing(Placement.LETTERBOX_CENTER, rgb=True, scale=1 / 255)

    def num_classes(self, model: str, shapes: Sequence[Shape]) -> int:
        """Classes encoded by a ``[B, A, 5+nc]`` output."""
        if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][2] < 6:
            raise layout_error(model, shapes, "yolov5 needs one [B, A, 5+nc] output")
        anchors = shapes[0][1]
        if isinstance(anchors, int) and anchors > 0 and shapes[0][2] - 5 > anchors:
            # More "classes" than anchors: the anchors are on the last axis, [B, 4+nc, A].
            raise layout_error(model, shapes, "this is [B, 4+nc, A], the yolov8 layout")
        return shapes[0][2] - 5

    def decode(
        self, outputs: Sequence[NDArray[np.float32]], network_hw: tuple[int, int]
    ) -> RawBatch:
        """Fold objectness into the class scores and lay both out class-first.

        Raises:
            ValueError: One row per grid cell of ``network_hw``: the yolox layout (the detector
                turns this into its layout error when it checks the warm-up outputs).
        """
        out = np.asarray(outputs[0], np.float32)
        cells = grid_cells(network_hw)
        if out.shape[1] == cells:
            raise ValueError(
                f"yolov5 output has {cells} rows, one per grid cell of a "
                f"{network_hw[0]}x{network_hw[1]} input where YOLOv5 has three: "
                "this is the yolox layout, set `format: yolox`"
            )
        return RawBatch(out[..., :4].transpose(0, 2, 1), objectness_scores(out), BoxFormat.CXCYWH)


def objectness_scores(out: NDArray[np.float32]) -> NDArray[np.float32]:
    """``(B, nc, A)`` scores ``objectness * class`` from a ``[B, A, 5+nc]`` output."""
    return np.multiply(out[..., 5:].transpose(0, 2, 1), out[:, None, :, 4])
