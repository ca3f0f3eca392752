"""Class-aware NMS: edge-case table, and the OpenCV path against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safewatch.detect.nms import box_iou, nms, nms_reference

A = [0.0, 0.0, 10.0, 10.0]
A_SHIFTED_HALF = [0.0, 5.0, 10.0, 15.0]  # IoU with A = 50 / 150 = 1/3
FAR = [100.0, 100.0, 110.0, 110.0]
INSIDE = [2.0, 2.0, 8.0, 8.0]  # IoU with A = 36 / 100
POINT = [5.0, 5.0, 5.0, 5.0]  # zero area


@pytest.mark.parametrize("impl", [nms, nms_reference], ids=["opencv", "numpy"])
@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "iou", "expected"),
    [
        pytest.param([], [], [], 0.5, [], id="empty"),
        pytest.param([A], [0.9], [0], 0.5, [0], id="single"),
        pytest.param([A, A], [0.8, 0.9], [0, 0], 0.5, [1], id="duplicate keeps best"),
        pytest.param([A, A], [0.8, 0.9], [0, 1], 0.5, [1, 0], id="duplicate other class kept"),
        pytest.param(
            [A, A_SHIFTED_HALF], [0.9, 0.8], [0, 0], 0.34, [0, 1], id="iou below threshold"
        ),
        pytest.param([A, A_SHIFTED_HALF], [0.9, 0.8], [0, 0], 0.33, [0], id="iou above threshold"),
        pytest.param([A, INSIDE], [0.9, 0.8], [0, 0], 0.36, [0, 1], id="iou equal is kept"),
        pytest.param(
            [A, FAR, INSIDE],
            [0.5, 0.7, 0.9],
            [0, 0, 0],
            0.3,
            [2, 1],
            id="contained suppresses container",
        ),
        pytest.param([A, FAR], [0.9, 0.9], [3, 3], 0.5, [0, 1], id="equal scores disjoint"),
        pytest.param(
            [[-20.0, -20.0, -10.0, -10.0], [-20.0, -20.0, -10.0, -10.0]],
            [0.1, 0.2],
            [7, 7],
            0.5,
            [1],
            id="negative coordinates",
        ),
    ],
)
def test_nms_table(
    impl: object,
    boxes: list[list[float]],
    scores: list[float],
    classes: list[int],
    iou: float,
    expected: list[int],
) -> None:
    assert callable(impl)
    kept = impl(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(classes, np.int64),
        iou,
    )
    assert kept.tolist() == expected


@pytest.mark.parametrize("impl", [nms, nms_reference], ids=["opencv", "numpy"])
def test_max_detections_keeps_the_best(impl: object) -> None:
    assert callable(impl)
    boxes = np.array([[i * 20.0, 0.0, i * 20.0 + 10.0, 10.0] for i in range(10)], np.float32)
    scores = np.linspace(0.1, 0.9, 10).astype(np.float32)
    kept = impl(boxes, scores, np.zeros(10, np.int64), 0.5, max_detections=3)
    assert kept.tolist() == [9, 8, 7]


def test_reference_treats_zero_area_boxes_as_disjoint() -> None:
    """OpenCV instead treats any two zero-area boxes of a class as duplicates, which is why
    selection drops zero-area boxes before NMS (see ``test_detect_selection``)."""
    kept = nms_reference(np.array([POINT, POINT]), np.array([0.9, 0.8]), np.array([0, 0]), 0.5)
    assert kept.tolist() == [0, 1]


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="xyxy must be"):
        nms(np.zeros((3, 4)), np.zeros(2), np.zeros(2, np.int64), 0.5)


@pytest.mark.parametrize("seed", range(5))
def test_opencv_matches_reference_on_clustered_boxes(seed: int) -> None:
    """Realistic input: clusters of jittered boxes around a few objects, several classes."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 600, (12, 2))
    n = 400
    which = rng.integers(0, len(centres), n)
    size = rng.uniform(20, 80, (n, 1))
    jitter = rng.normal(0, 4, (n, 2))
    xy = centres[which] + jitter
    boxes = np.concatenate([xy - size / 2, xy + size / 2], axis=1).astype(np.float32)
    scores = rng.uniform(0.01, 1.0, n).astype(np.float32)
    classes = rng.integers(0, 3, n)
    fast = nms(boxes, scores, classes, 0.45)
    slow = nms_reference(boxes, scores, classes, 0.45)
    assert fast.tolist() == slow.tolist()


def test_box_iou_matrix() -> None:
    iou = box_iou(np.array([A, POINT]), np.array([A, A_SHIFTED_HALF, FAR]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0], [0.0, 0.0, 0.0]])


coords = st.floats(0.0, 200.0, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(coords, coords, st.floats(1.0, 80.0, width=32), st.floats(1.0, 80.0, width=32),
                  st.floats(0.0, 1.0, width=32), st.integers(0, 2)),
        max_size=40,
    ),
    iou=st.floats(0.1, 0.9),
)  # fmt: skip
def test_nms_properties(
    data: list[tuple[float, float, float, float, float, int]], iou: float
) -> None:
    """Kept boxes of a class overlap by at most ``iou``; each dropped box overlaps a better one."""
    arr = np.asarray(data, np.float64).reshape(-1, 6)
    boxes = np.concatenate([arr[:, :2], arr[:, :2] + arr[:, 2:4]], axis=1)
    scores, classes = arr[:, 4], arr[:, 5].astype(np.int64)
    kept = nms(boxes, scores, classes, iou, max_detections=1000)
    assert sorted(kept.tolist()) == sorted(
        nms_reference(boxes, scores, classes, iou, 1000).tolist()
    )
    overlap = box_iou(boxes, boxes)
    for a in kept:
        for b in kept:
            if a != b and classes[a] == classes[b]:
                assert overlap[a, b] <= iou + 1e-6
    for d in set(range(len(scores))) - set(kept.tolist()):
        assert any(
            classes[k] == classes[d] and overlap[k, d] > iou - 1e-6 and scores[k] >= scores[d]
            for k in kept
        )
