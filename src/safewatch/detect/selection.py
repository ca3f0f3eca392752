"""From dense per-anchor predictions of one image to its final boxes in network pixels.

Thresholds come first because they are cheap and discard almost everything: the best score of each
anchor over the kept classes is a fast row-wise maximum, and only anchors above the lowest
per-label threshold are looked at class by class. Then per-label thresholds, a cap on candidates,
removal of boxes that are not finite or have no area (garbage a model can emit, which would also
confuse NMS), and NMS per site label (not per model class: see ``LabelPlan.label_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from safewatch.detect.formats.base import BoxFormat, RawBatch
from safewatch.detect.labels import LabelPlan
from safewatch.detect.nms import nms

__all__ = ["Candidates", "select"]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Final boxes of one image, still in network-input pixels.

    Attributes:
        xyxy: ``(N, 4)`` float32 corner boxes.
        score: ``(N,)`` float32 confidences.
        kept: ``(N,)`` positions in the :class:`LabelPlan` (not model class ids).
    """

    xyxy: NDArray[np.float32]
    score: NDArray[np.float32]
    kept: NDArray[np.intp]


def select(
    raw: RawBatch,
    index: int,
    plan: LabelPlan,
    iou_threshold: float,
    *,
    max_candidates: int = 30_000,
    max_detections: int = 300,
) -> Candidates:
    """Threshold, pick each anchor's best kept class, and suppress overlaps for image ``index``."""
    if len(plan.class_ids) == 0:
        return Candidates(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.intp)
        )
    scores = raw.scores[index]
    if len(plan.class_ids) != scores.shape[0]:
        scores = scores[plan.class_ids]
    best_any = scores.max(axis=0)
    cols = np.flatnonzero(best_any >= plan.min_threshold)
    sub = scores[:, cols]
    kept = sub.argmax(axis=0)
    conf = sub[kept, np.arange(cols.size)]
    ok = conf >= plan.thresholds[kept]
    cols, kept, conf = cols[ok], kept[ok], conf[ok]
    if cols.size > max_candidates:
        top = np.argsort(-conf, kind="stable")[:max_candidates]
        cols, kept, conf = cols[top], kept[top], conf[top]
    boxes = raw.boxes[index][:, cols].T.astype(np.float32)
    if raw.box_format is BoxFormat.CXCYWH:
        half = boxes[:, 2:] / 2
        boxes = np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)
    valid = (
        np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    )
    if not valid.all():
        boxes, kept, conf = boxes[valid], kept[valid], conf[valid]
    if raw.needs_nms:
        order = nms(boxes, conf, plan.label_ids[kept], iou_threshold, max_detections)
    else:
        order = np.argsort(-conf, kind="stable")[:max_detections]
    return Candidates(boxes[order], conf[order].astype(np.float32), kept[order].astype(np.intp))
