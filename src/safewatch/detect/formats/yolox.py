"""YOLOX exports, raw head (the official ONNX files) or already decoded.

Output ``[B, A, 5+nc]`` with one row per grid cell over strides 8, 16 and 32 (so ``A`` equals the
number of grid cells, unlike YOLOv5's three anchors per cell). The raw head gives ``x, y``
offsets in cells and ``log w, log h``; decoding is ``xy = (p + grid) * stride`` and
``wh = exp(p) * stride``.
Objectness and class scores are already sigmoid probabilities. Input is BGR 0-255 without
normalisation, letterboxed into the top-left corner with grey 114, as YOLOX's ``ValTransform``
does.

Exports made with ``decode_in_inference=True`` have the same shape but pixel boxes. They are told
apart per call: decoded centre ``x`` values average about half the input width, raw offsets stay
near 0.5, so a mean above an eighth of the width means "already decoded".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from safewatch.detect.formats.base import (
    STRIDES,
    BoxFormat,
    RawBatch,
    Shape,
    grid_cells,
    layout_error,
)
from safewatch.detect.formats.yolov5 import objectness_scores
from safewatch.detect.preprocess import Preprocessing
from safewatch.detect.transform import Placement

__all__ = ["STRIDES", "YoloxAdapter", "grid_cells"]


class YoloxAdapter:
    """Decode YOLOX outputs; grids are built once per input size and cached."""

    name = "yolox"
    preprocessing = Preprocessing(Placement.LETTERBOX_TOP_LEFT, rgb=False, scale=1.0)

    def __init__(self) -> None:
        self._grids: dict[tuple[int, int], tuple[NDArray[np.float32], NDArray[np.float32]]] = {}

    def num_classes(self, model: str, shapes: Sequence[Shape]) -> int:
        """Classes encoded by a ``[B, A, 5+nc]`` output."""
        if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][2] < 6:
            raise layout_error(model, shapes, "yolox needs one [B, A, 5+nc] output")
        anchors = shapes[0][1]
        if isinstance(anchors, int) and anchors > 0 and shapes[0][2] - 5 > anchors:
            # More "classes" than anchors: the anchors are on the last axis, [B, 4+nc, A].
            raise layout_error(model, shapes, "this is [B, 4+nc, A], the yolov8 layout")
        return shapes[0][2] - 5

    def decode(
        self, outputs: Sequence[NDArray[np.float32]], network_hw: tuple[int, int]
    ) -> RawBatch:
        """Grid-decode raw outputs (or pass decoded ones through) and fold in objectness."""
        out = np.asarray(outputs[0], np.float32)
        scores = objectness_scores(out)
        if is_decoded(out, network_hw):
            return RawBatch(out[..., :4].transpose(0, 2, 1), scores, BoxFormat.CXCYWH)
        grid, stride = self._grid(network_hw, out.shape[1])
        boxes = np.empty((out.shape[0], out.shape[1], 4), np.float32)
        np.add(out[..., :2], grid, out=boxes[..., :2])
        boxes[..., :2] *= stride
        with np.errstate(over="ignore"):
            np.exp(out[..., 2:4], out=boxes[..., 2:])
        boxes[..., 2:] *= stride
        return RawBatch(boxes.transpose(0, 2, 1), scores, BoxFormat.CXCYWH)

    def _grid(
        self, network_hw: tuple[int, int], anchors: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        cached = self._grids.get(network_hw)
        if cached is None:
            cached = make_grid(network_hw)
            self._grids[network_hw] = cached
        if cached[0].shape[0] != anchors:
            raise ValueError(
                f"yolox output has {anchors} rows but a {network_hw[0]}x{network_hw[1]} input has "
                f"{cached[0].shape[0]} grid cells over strides {STRIDES}"
            )
        return cached


def make_grid(network_hw: tuple[int, int]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``(A, 2)`` cell ``x, y`` indices and ``(A, 1)`` strides, in YOLOX's output order."""
    h, w = network_hw
    grids: list[NDArray[np.float32]] = []
    strides: list[NDArray[np.float32]] = []
    for s in STRIDES:
        ys, xs = np.meshgrid(np.arange(h // s), np.arange(w // s), indexing="ij")
        grids.append(np.stack((xs, ys), axis=-1).reshape(-1, 2).astype(np.float32))
        strides.append(np.full((grids[-1].shape[0], 1), s, np.float32))
    return np.concatenate(grids), np.concatenate(strides)


def is_decoded(out: NDArray[np.float32], network_hw: tuple[int, int]) -> bool:
    """Whether a YOLOX output already holds pixel boxes (see the module docstring)."""
    if out.shape[0] == 0 or out.shape[1] == 0:
        return False
    return float(np.mean(out[0, :, 0])) > network_hw[1] / 8
