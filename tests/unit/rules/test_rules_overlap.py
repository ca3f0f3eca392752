"""Box-polygon overlap for ``anchor: box``: inside, outside, touching, crossing."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.domain.geometry import points_in_polygon
from safewatch.rules.overlap import _segments_meet, box_overlaps_polygon

SQUARE = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], dtype=np.float64)
L_SHAPE = np.array([[0, 0], [30, 0], [30, 10], [10, 10], [10, 30], [0, 30]], dtype=np.float64)


@pytest.mark.parametrize(
    ("box", "polygon", "expected"),
    [
        ((12, 12, 14, 14), SQUARE, True),  # box inside polygon
        ((0, 0, 30, 30), SQUARE, True),  # polygon inside box
        ((5, 5, 11, 11), SQUARE, True),  # corner overlap
        ((14, 0, 16, 30), SQUARE, True),  # crossing bar, no vertex inside either
        ((20, 12, 25, 14), SQUARE, True),  # touching an edge counts
        ((20, 20, 25, 25), SQUARE, True),  # touching a vertex counts
        ((20.001, 12, 25, 14), SQUARE, False),
        ((0, 0, 9.99, 9.99), SQUARE, False),
        ((12, 12, 28, 28), L_SHAPE, False),  # in the notch of the L
        ((12, 5, 28, 28), L_SHAPE, True),  # reaches into the L's arm
        ((-5, -5, -1, -1), L_SHAPE, False),
    ],
)
def test_box_overlaps_polygon(
    box: tuple[float, float, float, float], polygon: np.ndarray, expected: bool
) -> None:
    assert box_overlaps_polygon(box, polygon) is expected


def _reference(box: tuple[float, float, float, float], polygon: np.ndarray) -> bool:
    """The same test with NumPy's point-in-polygon for the corners (the engine's other zone
    test), and brute force for the rest: no bounding-box shortcut."""
    x1, y1, x2, y2 = box
    xs, ys = polygon[:, 0], polygon[:, 1]
    if np.any((xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)):
        return True
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    if np.any(points_in_polygon(corners, polygon)):
        return True
    sides = [(corners[k], corners[(k + 1) % 4]) for k in range(4)]
    edges = [(polygon[k], polygon[(k + 1) % len(polygon)]) for k in range(len(polygon))]
    return any(
        _segments_meet(tuple(a), tuple(b), tuple(c), tuple(d)) for a, b in edges for c, d in sides
    )


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_numpy_point_in_polygon_on_random_boxes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    overlapping = 0
    for trial in range(400):
        vertices = int(rng.integers(3, 8))
        if trial % 2:  # a coarse grid: touching edges, shared vertices, collinear sides
            polygon = np.round(rng.uniform(0, 20, (vertices, 2)))
            x1, y1, w, h = np.round(rng.uniform([-2, -2, 0, 0], [20, 20, 8, 8]))
        else:
            polygon = rng.uniform(0, 100, (vertices, 2))
            x1, y1, w, h = rng.uniform([-20, -20, 0, 0], [100, 100, 40, 40])
        box = (float(x1), float(y1), float(x1 + w), float(y1 + h))
        expected = _reference(box, polygon)
        assert box_overlaps_polygon(box, polygon) is expected, (box, polygon.tolist())
        assert box_overlaps_polygon(box, [tuple(p) for p in polygon.tolist()]) is expected
        overlapping += expected
    assert 50 < overlapping < 350, "both answers are exercised"
