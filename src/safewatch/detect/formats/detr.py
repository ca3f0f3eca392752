"""DETR-family exports (RF-DETR, RT-DETR style, Deformable DETR, original DETR).

Two outputs: boxes ``[B, Q, 4]`` as normalised ``cx, cy, w, h`` and class logits ``[B, Q, C]``,
one row per query. Models trained with focal loss (RF-DETR, Deformable DETR) score each class with
a sigmoid; the original DETR adds a last "no object" column and uses a softmax, which is what
``no_object=True`` selects (chosen when the class names are one fewer than ``C``). Each query is one
object, so no NMS. Input is the picture stretched to the input size (no letterbox), RGB, scaled to
0-1 and normalised with ImageNet mean and standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from safewatch.detect.formats.base import BoxFormat, RawBatch, Shape, layout_error
from safewatch.detect.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from safewatch.detect.transform import Placement

__all__ = ["DetrAdapter", "split_outputs"]

_BOX_NAMES = ("boxes", "pred_boxes", "dets", "bboxes")


class DetrAdapter:
    """Decode ``boxes [B, Q, 4]`` + ``logits [B, Q, C]`` outputs."""

    name = "detr"
    preprocessing = Preprocessing(
        Placement.STRETCH, rgb=True, scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )

    def __init__(self, output_names: Sequence[str] = (), *, no_object: bool = False) -> None:
        self.output_names = tuple(output_names)
        self.no_object = no_object

    def num_classes(self, model: str, shapes: Sequence[Shape]) -> int:
        """Classes encoded by the logits output (minus the no-object column, if any)."""
        _, logits = split_outputs(model, shapes, self.output_names)
        classes = shapes[logits][2] - (1 if self.no_object else 0)
        if classes < 1:
            raise layout_error(model, shapes, "detr logits have no class columns")
        return classes

    def decode(
        self, outputs: Sequence[NDArray[np.float32]], network_hw: tuple[int, int]
    ) -> RawBatch:
        """Scale normalised boxes to input pixels and turn logits into probabilities."""
        shapes = [tuple(o.shape) for o in outputs]
        b, lg = split_outputs("detr", shapes, self.output_names)
        h, w = network_hw
        boxes = np.asarray(outputs[b], np.float32) * np.array([w, h, w, h], np.float32)
        logits = np.asarray(outputs[lg], np.float32)
        if self.no_object:
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probs = (shifted / shifted.sum(axis=-1, keepdims=True))[..., :-1]
        else:
            probs = 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
        return RawBatch(
            boxes.transpose(0, 2, 1),
            probs.astype(np.float32).transpose(0, 2, 1),
            BoxFormat.CXCYWH,
            needs_nms=False,
        )


def split_outputs(
    model: str, shapes: Sequence[Shape], names: Sequence[str] = ()
) -> tuple[int, int]:
    """Indices of the boxes and logits outputs.

    The boxes output is the one whose last axis is 4; when both are (a 4-class model) the output
    names decide (``boxes``, ``pred_boxes``, ``dets``), else the first output is taken as boxes,
    which is the order every known exporter uses.
    """
    if len(shapes) < 2 or any(len(s) != 3 for s in shapes[:2]):
        raise layout_error(model, shapes, "detr needs two outputs, boxes and logits")
    first, second = shapes[0], shapes[1]
    if first[:2] != second[:2]:
        raise layout_error(model, shapes, "detr boxes and logits must agree on [B, Q]")
    four = [i for i in (0, 1) if shapes[i][2] == 4]
    if not four:
        raise layout_error(model, shapes, "detr boxes output must end in 4")
    if len(four) == 2 and len(names) >= 2 and names[1].lower() in _BOX_NAMES:
        return 1, 0
    return four[0], 1 - four[0]
