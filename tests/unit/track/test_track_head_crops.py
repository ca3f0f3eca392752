"""Head location from a person box, and the crops the head classifier reads."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.track.head_crops import (
    CONTEXT,
    HEAD_HEIGHT,
    HEAD_WIDTH,
    MIN_WIDTH,
    crop_heads,
    head_from_person,
    square,
)


@pytest.mark.parametrize(
    "person",
    [
        (100, 50, 160, 350),  # standing, full body: capped by the height
        (100, 50, 200, 150),  # half body: the width decides
        (100, 50, 300, 90),  # a wide, cut-off box: the width floor decides
    ],
)
def test_head_is_a_square_at_the_top_centre_of_the_person(
    person: tuple[float, float, float, float],
) -> None:
    (head,) = head_from_person(np.array([person], np.float32))
    x1, y1, x2, y2 = head
    width, height = person[2] - person[0], person[3] - person[1]
    side = min(HEAD_WIDTH * width, max(HEAD_HEIGHT * height, MIN_WIDTH * width))
    assert x2 - x1 == pytest.approx(side) and y2 - y1 == pytest.approx(side)
    assert y1 == pytest.approx(person[1])
    assert (x1 + x2) / 2 == pytest.approx((person[0] + person[2]) / 2)


def test_square_grows_the_longer_side_around_the_centre() -> None:
    (box,) = square(np.array([[10, 20, 30, 60]], np.float64))
    assert box.tolist() == pytest.approx(
        [20 - 20 * CONTEXT, 40 - 20 * CONTEXT, 20 + 20 * CONTEXT, 40 + 20 * CONTEXT]
    )


def test_crops_hold_the_head_and_repeat_the_edge_outside_the_frame() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[:10, :10] = 200  # a bright corner
    image[40:60, 90:110] = (0, 255, 255)  # a yellow "hat" (BGR)
    crops = crop_heads(image, np.array([[90, 40, 110, 60], [0, 0, 20, 20]], np.float64), 32)
    assert crops.shape == (2, 32, 32, 3) and crops.dtype == np.float32
    centre = crops[0, 12:20, 12:20]
    assert np.allclose(centre, [0.0, 1.0, 1.0], atol=0.02)
    assert crops[0, 0, 0].tolist() == [0.0, 0.0, 0.0]  # context around the hat is the background
    assert crops.min() >= 0.0 and crops.max() <= 1.0
    # A head at the corner: the part outside the frame repeats the bright edge, not black.
    assert np.allclose(crops[1, 0, 0], 200 / 255, atol=0.02)
