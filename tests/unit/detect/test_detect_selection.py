"""Thresholds, best-class choice, invalid boxes and NMS on dense predictions."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.detect.formats.base import BoxFormat, RawBatch
from safewatch.detect.labels import plan_labels
from safewatch.detect.selection import select


def raw_batch(boxes: list[list[float]], scores: list[list[float]], *, nms: bool = True) -> RawBatch:
    """One image; ``boxes`` are xyxy per anchor, ``scores`` per anchor per class."""
    return RawBatch(
        np.asarray(boxes, np.float32).T[None],
        np.asarray(scores, np.float32).T[None],
        BoxFormat.XYXY,
        needs_nms=nms,
    )


BOXES = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 0, 5], [5, 5, np.inf, 9]]
SCORES = [
    [0.9, 0.1, 0.0],
    [0.8, 0.7, 0.0],
    [0.2, 0.3, 0.6],
    [0.99, 0.0, 0.0],  # zero width
    [0.99, 0.0, 0.0],  # not finite
]


def test_best_class_thresholds_and_nms() -> None:
    plan = plan_labels("m", ["a", "b", "c"], None, 0.25, {})
    found = select(raw_batch(BOXES, SCORES), 0, plan, 0.45)
    assert found.kept.tolist() == [0, 2]  # anchor 1 suppressed by anchor 0 (same class a)
    assert found.score.tolist() == pytest.approx([0.9, 0.6])
    assert found.xyxy.tolist() == [[0, 0, 10, 10], [50, 50, 60, 60]]


def test_dropped_classes_do_not_compete_for_best_class() -> None:
    """With only class b kept, anchor 1 is a 'b' at 0.7 even though its best class is a."""
    plan = plan_labels("m", ["a", "b", "c"], {"b": "bee"}, 0.25, {})
    found = select(raw_batch(BOXES, SCORES), 0, plan, 0.45)
    assert plan.labels[found.kept].tolist() == ["bee", "bee"]
    assert found.score.tolist() == pytest.approx([0.7, 0.3])


def test_per_label_threshold() -> None:
    plan = plan_labels("m", ["a", "b", "c"], None, 0.25, {"c": 0.7})
    found = select(raw_batch(BOXES, SCORES), 0, plan, 0.45)
    assert found.kept.tolist() == [0]  # class c at 0.6 is below its 0.7


def test_no_nms_for_set_prediction_models() -> None:
    plan = plan_labels("m", ["a", "b", "c"], None, 0.25, {})
    found = select(raw_batch(BOXES, SCORES, nms=False), 0, plan, 0.45)
    assert found.score.tolist() == pytest.approx([0.9, 0.8, 0.6])


def test_centre_size_boxes_are_converted() -> None:
    plan = plan_labels("m", ["a"], None, 0.25, {})
    raw = RawBatch(
        np.array([[[20.0], [30.0], [10.0], [4.0]]], np.float32),
        np.array([[[0.5]]], np.float32),
        BoxFormat.CXCYWH,
    )
    assert select(raw, 0, plan, 0.45).xyxy.tolist() == [[15, 28, 25, 32]]


def test_nothing_above_threshold_and_nothing_kept() -> None:
    plan = plan_labels("m", ["a", "b", "c"], None, 0.995, {})
    assert len(select(raw_batch(BOXES, SCORES), 0, plan, 0.45).score) == 0
    empty = plan_labels("m", ["a", "b", "c"], {}, 0.25, {})
    assert select(raw_batch(BOXES, SCORES), 0, empty, 0.45).xyxy.shape == (0, 4)


def test_classes_merged_into_one_label_suppress_each_other() -> None:
    """NMS grouped by model class, so a car box and a truck box on one vehicle both survived as
    two 'vehicle' detections (two tracks); labels kept apart still do not suppress each other."""
    labels = {"person": "person", "car": "vehicle", "truck": "vehicle"}
    plan = plan_labels("m", ["person", "car", "truck"], labels, 0.25, {})
    boxes = [[60, 70, 140, 130], [62, 70, 142, 131], [61, 70, 141, 130]]
    scores = [[0.0, 0.6, 0.3], [0.0, 0.3, 0.55], [0.5, 0.0, 0.0]]  # car, truck, person
    found = select(raw_batch(boxes, scores), 0, plan, 0.45)
    assert plan.labels[found.kept].tolist() == ["vehicle", "person"]
    assert found.score.tolist() == pytest.approx([0.6, 0.5])
