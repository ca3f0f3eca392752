"""Letterbox and stretch geometry: table cases and the round-trip property."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from safewatch.detect.transform import ImageTransform, Placement, fit


@pytest.mark.parametrize(
    ("source", "network", "placement", "expected"),
    [
        # 640x352 CCTV into 640: width fills, 144 px of grey split 144/2 above and below
        (
            (352, 640),
            (640, 640),
            Placement.LETTERBOX_CENTER,
            ImageTransform(1.0, 1.0, 0, 144, 640, 352),
        ),
        (
            (352, 640),
            (640, 640),
            Placement.LETTERBOX_TOP_LEFT,
            ImageTransform(1.0, 1.0, 0, 0, 640, 352),
        ),
        # 1920x1080 into 416: gain 416/1920, resized 416x234, 182 px of padding
        (
            (1080, 1920),
            (416, 416),
            Placement.LETTERBOX_CENTER,
            ImageTransform(416 / 1920, 416 / 1920, 0, 91, 416, 234),
        ),
        # portrait picture: padding left and right
        (
            (400, 200),
            (640, 640),
            Placement.LETTERBOX_CENTER,
            ImageTransform(1.6, 1.6, 160, 0, 320, 640),
        ),
        # odd padding: round(d - 0.1) puts the extra pixel at the bottom (as Ultralytics does)
        (
            (100, 201),
            (64, 64),
            Placement.LETTERBOX_CENTER,
            ImageTransform(64 / 201, 64 / 201, 0, 16, 64, 32),
        ),
        (
            (352, 640),
            (560, 560),
            Placement.STRETCH,
            ImageTransform(560 / 640, 560 / 352, 0, 0, 560, 560),
        ),
        (
            (640, 640),
            (640, 640),
            Placement.LETTERBOX_CENTER,
            ImageTransform(1.0, 1.0, 0, 0, 640, 640),
        ),
    ],
)
def test_fit(
    source: tuple[int, int],
    network: tuple[int, int],
    placement: Placement,
    expected: ImageTransform,
) -> None:
    assert fit(source, network, placement) == expected


def test_fit_rejects_empty_pictures() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit((0, 10), (64, 64), Placement.STRETCH)


sizes = st.integers(min_value=16, max_value=4000)
placements = st.sampled_from(list(Placement))


@given(
    src_h=sizes,
    src_w=sizes,
    net=st.sampled_from([(320, 320), (416, 416), (640, 640), (384, 640)]),
    placement=placements,
    corners=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
)
def test_box_round_trip(
    src_h: int,
    src_w: int,
    net: tuple[int, int],
    placement: Placement,
    corners: list[float],
) -> None:
    """A box mapped into network pixels and back is the same box, and lands inside the picture.

    "Inside" allows half a pixel: the resized picture's size is rounded to whole pixels.
    """
    t = fit((src_h, src_w), net, placement)
    x1, x2 = sorted(corners[:2])
    y1, y2 = sorted(corners[2:])
    box = np.array([[x1 * src_w, y1 * src_h, x2 * src_w, y2 * src_h]], np.float32)
    inside = t.to_network(box)
    assert inside[0, 0] >= t.pad_x - 1e-3 and inside[0, 2] <= t.pad_x + t.resized_width + 0.501
    assert inside[0, 1] >= t.pad_y - 1e-3 and inside[0, 3] <= t.pad_y + t.resized_height + 0.501
    np.testing.assert_allclose(t.to_source(inside), box, rtol=1e-5, atol=1e-3 * max(src_h, src_w))
