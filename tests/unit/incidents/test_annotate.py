"""Overlay drawing: pure, within bounds, violators red."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.domain import Detections, PPEState, Track, TrackedFrame, Zone
from safewatch.incidents import draw_overlay
from safewatch.incidents.annotate import RED

W, H = 640, 352


def tracked(*tracks: Track, detections: Detections | None = None) -> TrackedFrame:
    return TrackedFrame(
        "cam",
        0,
        0.0,
        0.0,
        W,
        H,
        tracks,
        detections if detections is not None else Detections.empty(),
    )


def person(track_id: int, xyxy: tuple[float, float, float, float], **ppe: PPEState) -> Track:
    return Track(track_id, "person", xyxy, 0.9, attributes=ppe)


def grey_image() -> np.ndarray:
    return np.full((H, W, 3), 90, np.uint8)


def test_returns_a_copy_and_leaves_the_input_alone() -> None:
    image = grey_image()
    image.flags.writeable = False  # frames are read-only downstream of ingest
    before = image.copy()
    frame = tracked(person(1, (100, 100, 140, 200), hardhat=PPEState.ABSENT))
    zone = Zone("z", "cam", ((0.1, 0.1), (0.5, 0.1), (0.5, 0.5)))
    out = draw_overlay(image, frame, [zone], highlight={1})
    assert out is not image
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)
    assert not np.array_equal(out, before)


def test_highlighted_track_is_red() -> None:
    frame = tracked(person(7, (200, 100, 260, 250)))
    out = draw_overlay(grey_image(), frame, [], highlight={7})
    # the box's left edge at x=200, half-way down
    assert tuple(int(v) for v in out[175, 200]) == RED
    plain = draw_overlay(grey_image(), frame, [])
    assert tuple(int(v) for v in plain[175, 200]) != RED


@pytest.mark.parametrize(
    "box",
    [
        (0.0, 0.0, 30.0, 40.0),  # top-left corner: labels must move inside
        (610.0, 320.0, 640.0, 352.0),  # bottom-right corner
        (-50.0, -20.0, 700.0, 400.0),  # larger than the frame
    ],
)
def test_boxes_at_the_edges_do_not_fail(box: tuple[float, float, float, float]) -> None:
    frame = tracked(person(3, box, hardhat=PPEState.PRESENT, vest=PPEState.UNKNOWN))
    out = draw_overlay(grey_image(), frame, [], highlight={3})
    assert out.shape == (H, W, 3)


def test_drawing_stays_near_the_objects() -> None:
    frame = tracked(
        person(2, (300, 200, 330, 260), hardhat=PPEState.ABSENT),
        detections=Detections(
            np.array([[305, 200, 320, 212]], np.float32),
            np.array([0.8], np.float32),
            np.array(["no_hardhat"]),
        ),
    )
    out = draw_overlay(grey_image(), frame, [], highlight={2})
    changed = np.any(out != 90, axis=2)
    ys, xs = np.nonzero(changed)
    assert ys.max() <= 262 and xs.min() >= 298
    assert ys.min() >= 200 - 40  # two label lines above the box
    assert not changed[:, :290].any()


def test_zones_are_translucent() -> None:
    zone = Zone("z", "cam", ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)))
    out = draw_overlay(grey_image(), tracked(), [zone])
    inside = out[300, 320].astype(int)
    assert not np.array_equal(inside, [90, 90, 90])
    assert np.all(inside < 255)  # blended, not painted over
    np.testing.assert_array_equal(out[50, 320], [90, 90, 90])


def test_rejects_non_bgr_images() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        draw_overlay(np.zeros((H, W), np.uint8), tracked(), [])
