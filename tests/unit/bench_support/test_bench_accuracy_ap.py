"""VOC AP with ignore regions (bench/accuracy.py), on hand-computed cases."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from bench.accuracy import average_precision, box_ratio, evaluate_class, match_class
from bench.padding import Padding
from numpy.typing import NDArray

from safewatch.domain import Detections


def dets(*rows: tuple[float, float, float, float, float], label: str = "hardhat") -> Detections:
    """Detections from ``(x1, y1, x2, y2, confidence)`` rows."""
    arr = np.asarray(rows, np.float32).reshape(-1, 5)
    return Detections(arr[:, :4], arr[:, 4], np.full(len(arr), label))


def boxes(*rows: Sequence[float]) -> NDArray[np.float64]:
    return np.asarray(rows, np.float64).reshape(-1, 4)


def test_average_precision_is_the_area_under_the_precision_envelope() -> None:
    recall = np.array([0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3])
    assert average_precision(recall, precision) == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))


def test_raw_ap_hand_computed_with_a_duplicate_and_another_label() -> None:
    truths = [boxes([0, 0, 10, 10], [20, 20, 30, 30])]
    found = Detections.merge(
        [
            dets(
                (0, 0, 10, 10, 0.9),  # TP
                (0, 0, 10, 10, 0.85),  # duplicate of the same helmet: FP
                (50, 50, 60, 60, 0.8),  # FP
                (20, 20, 30, 30, 0.7),  # TP
            ),
            dets((20, 20, 30, 30, 0.99), label="no_hardhat"),  # another class: not scored
        ]
    )
    r = evaluate_class("hardhat", [found], truths)
    # precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1: envelope 1 then 1/2
    assert r.ap50 == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    assert (r.ground_truth, r.detections, r.ignored_truths, r.ignored_detections) == (2, 4, 0, 0)
    assert r.recall_at_max == 1.0
    assert (r.precision_at_025, r.recall_at_025) == (0.5, 1.0)


def test_ground_truth_is_matched_at_the_iou_threshold_given() -> None:
    truths = [boxes([0, 0, 10, 10])]
    shifted = [dets((0, 0, 10, 15, 0.9))]  # IoU 100 / 150 = 0.667
    assert evaluate_class("hardhat", shifted, truths, 0.5).ap50 == 1.0
    assert evaluate_class("hardhat", shifted, truths, 0.7).ap50 == 0.0


PADDED = Padding(100, 100, top=20)
"""A 100x100 image with 20 mirrored rows at the top."""
CONTENT_GT = [40, 40, 60, 60]
MIRROR_GT = [40, 0, 60, 38]  # centre y 19: in the band


def padded_case() -> tuple[list[Detections], list[NDArray[np.float64]]]:
    detections = dets(
        (40, 0, 60, 38, 0.95),  # on the mirrored helmet, centre in the band
        (40, 2, 60, 40, 0.9),  # centre y 21 (content), IoU 0.9 with the mirrored helmet only
        (40, 40, 60, 60, 0.8),  # the real helmet
        (70, 70, 90, 90, 0.7),  # nothing there
    )
    return [detections], [boxes(CONTENT_GT, MIRROR_GT)]


def test_padding_aware_ap_ignores_labels_and_detections_in_the_band() -> None:
    found, truths = padded_case()
    raw = evaluate_class("hardhat", found, truths)
    # raw: TP, FP (its helmet is taken), TP, FP -> precision 1, 1/2, 2/3, 1/2; recall 1/2 .. 1
    assert raw.ap50 == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))
    aware = evaluate_class("hardhat", found, truths, padding=[PADDED])
    # aware: the first is centred in the band, the second only matches the ignored label:
    # TP, FP over one counted label -> AP 1
    assert aware.ap50 == pytest.approx(1.0)
    assert (aware.ground_truth, aware.ignored_truths) == (1, 1)
    assert (aware.detections, aware.ignored_detections) == (2, 2)
    assert (aware.precision_at_025, aware.recall_at_025) == (0.5, 1.0)


def test_a_detection_below_the_threshold_with_the_ignored_label_is_a_false_positive() -> None:
    truths = [boxes(CONTENT_GT, MIRROR_GT)]
    found = [dets((40, 14, 60, 52, 0.9), (40, 40, 60, 60, 0.8))]  # IoU 24/52 with the mirror
    m = match_class("hardhat", found, truths, padding=[PADDED])
    assert m.tp.tolist() == [False, True]
    assert m.ignored_detections == 0


def test_ignored_labels_are_never_hits_even_when_a_detection_fits_them() -> None:
    """A content detection overlapping a counted and an ignored label takes the counted one."""
    truths = [boxes(MIRROR_GT, [40, 4, 60, 42])]  # second: centre y 23, counted
    found = [dets((40, 2, 60, 40, 0.9))]  # IoU 0.9 with both
    m = match_class("hardhat", found, truths, padding=[PADDED])
    assert m.tp.tolist() == [True]
    np.testing.assert_array_equal(m.gt_xyxy[0], [40, 4, 60, 42])


def test_no_padding_gives_the_raw_figures() -> None:
    found, truths = padded_case()
    raw = evaluate_class("hardhat", found, truths)
    empty = evaluate_class("hardhat", found, truths, padding=[Padding(100, 100)])
    assert raw == empty


def test_a_class_with_no_counted_ground_truth_has_nan_ap() -> None:
    found = [dets((40, 0, 60, 38, 0.9))]
    r = evaluate_class("hardhat", found, [boxes(MIRROR_GT)], padding=[PADDED])
    assert np.isnan(r.ap50)
    assert (r.ground_truth, r.detections) == (0, 0)


def test_box_ratio_pairs_confident_content_detections_loosely() -> None:
    truths = [boxes([0, 30, 10, 50], [50, 30, 70, 70], MIRROR_GT)]
    found = [
        dets(
            (0, 35, 10, 45, 0.9),  # label twice as tall, IoU 0.5
            (50, 40, 70, 60, 0.8),  # label twice as tall, IoU 0.5
            (80, 80, 90, 90, 0.2),  # below the confidence used for the ratio
            (40, 0, 60, 19, 0.9),  # in the band: ignored
        )
    ]
    r = box_ratio("hardhat", found, truths, [PADDED])
    assert (r.pairs, r.height, r.width) == (2, 2.0, 1.0)
    assert box_ratio("no_hardhat", found, truths, [PADDED]).pairs == 0
