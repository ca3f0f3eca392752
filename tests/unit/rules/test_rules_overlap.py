"""Box-polygon overlap for ``anchor: box``: inside, outside, touching, crossing."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.rules.overlap import box_overlaps_polygon

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
