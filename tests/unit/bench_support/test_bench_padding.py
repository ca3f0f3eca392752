"""The mirror-padding detector of bench/padding.py on synthetic and real pictures."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from bench.padding import Padding, detect_padding
from numpy.typing import NDArray

from assets import asset

SIDES = ("top", "bottom", "left", "right")


def texture(h: int, w: int, seed: int = 0) -> NDArray[np.uint8]:
    """A smooth random colour picture: texture at every scale, no symmetry."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(128, 60, (h, w, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 2.0)
    blurred += np.linspace(0, 40, w, dtype=np.float32)[None, :, None]  # a slow gradient too
    return np.asarray(np.clip(blurred, 0, 255), np.uint8)


def pad(image: NDArray[np.uint8], border: int, **widths: int) -> NDArray[np.uint8]:
    top, bottom, left, right = (widths.get(s, 0) for s in SIDES)
    return np.asarray(cv2.copyMakeBorder(image, top, bottom, left, right, border), np.uint8)


def clip_frame(index: int) -> NDArray[np.uint8]:
    capture = cv2.VideoCapture(str(asset("video/construction_cctv_640x352_24s.mp4")))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    assert ok, f"could not decode frame {index} of the construction clip"
    return np.asarray(frame, np.uint8)


@pytest.mark.parametrize("border", [cv2.BORDER_REFLECT, cv2.BORDER_REFLECT_101])
@pytest.mark.parametrize("side", SIDES)
def test_one_reflected_side_is_found_with_its_width(side: str, border: int) -> None:
    image = pad(texture(160, 200), border, **{side: 37})
    found = detect_padding(image)
    assert getattr(found, side) == 37
    assert [getattr(found, s) for s in SIDES if s != side] == [0, 0, 0]
    assert (found.height, found.width) == image.shape[:2]


def test_every_side_at_once_with_different_widths() -> None:
    widths = {"top": 25, "bottom": 31, "left": 12, "right": 48}
    found = detect_padding(pad(texture(150, 180, seed=1), cv2.BORDER_REFLECT, **widths))
    assert found == Padding(150 + 25 + 31, 180 + 12 + 48, **widths)
    assert found.content == (12, 25, 180 + 12, 150 + 25)


@pytest.mark.parametrize("height", [230, 319])
def test_padding_that_was_resized_afterwards_is_found_at_the_scaled_width(height: int) -> None:
    """The dataset's pictures were padded, then scaled: the mirror is no longer pixel-exact."""
    padded = pad(texture(300, 300, seed=2), cv2.BORDER_REFLECT, top=80, bottom=80)
    small = np.asarray(cv2.resize(padded, (208, height), interpolation=cv2.INTER_AREA), np.uint8)
    found = detect_padding(small)
    expected = 80 * height / 460
    assert abs(found.top - expected) <= 1 and abs(found.bottom - expected) <= 1
    assert (found.left, found.right) == (0, 0)


def test_a_flat_band_opposite_a_found_one_is_accepted_at_the_same_width() -> None:
    """A centred fit pads both sides alike; a flat sky has no texture to prove its mirror."""
    content = texture(160, 200, seed=4)
    content[:40] = 200  # sky at the top
    found = detect_padding(pad(content, cv2.BORDER_REFLECT, top=30, bottom=30))
    assert (found.top, found.bottom, found.left, found.right) == (30, 30, 0, 0)


def test_unpadded_texture_and_flat_pictures_have_no_padding() -> None:
    assert not detect_padding(texture(200, 240, seed=3)).any
    flat = np.full((120, 120, 3), 90, np.uint8)  # mirrors itself, but proves nothing
    assert not detect_padding(flat).any


@pytest.mark.parametrize("index", [0, 250, 500])
def test_frames_of_the_construction_clip_have_no_padding(index: int) -> None:
    frame = clip_frame(index)
    assert detect_padding(frame) == Padding(frame.shape[0], frame.shape[1])


def test_a_clip_frame_reflected_at_top_and_left_is_found() -> None:
    frame = clip_frame(100)
    found = detect_padding(pad(frame, cv2.BORDER_REFLECT, top=44, left=60))
    assert (found.top, found.bottom, found.left, found.right) == (44, 0, 60, 0)


def test_hard_hat_workers_images_padded_and_not() -> None:
    """Dataset images checked by eye: one mirrored 33 rows top and bottom, two mirrored about
    69 rows where one side's mirror is weak, and the one picture of the set that is not padded."""
    images = asset("images/hard_hat_workers/images")
    padded = np.asarray(cv2.imread(str(images / "hard_hat_workers190.png")), np.uint8)
    found = detect_padding(padded)
    assert abs(found.top - 33) <= 1 and abs(found.bottom - 33) <= 1
    assert (found.left, found.right) == (0, 0)
    for stem in ("hard_hat_workers196", "hard_hat_workers465"):  # a flat sky, fine gravel
        found = detect_padding(np.asarray(cv2.imread(str(images / f"{stem}.png")), np.uint8))
        assert min(found.top, found.bottom) >= 69 and max(found.top, found.bottom) <= 70, stem
    plain = np.asarray(cv2.imread(str(images / "hard_hat_workers654.png")), np.uint8)
    assert not detect_padding(plain).any


def test_covers_uses_box_centres() -> None:
    p = Padding(100, 200, top=20, bottom=10, left=5, right=0)
    boxes = np.array(
        [
            [50, 0, 60, 30],  # centre y 15: top band
            [50, 10, 60, 40],  # centre y 25: content, though the box reaches into the band
            [0, 50, 8, 60],  # centre x 4: left band
            [190, 85, 200, 100],  # centre y 92.5: bottom band
            [190, 80, 200, 89],  # centre y 84.5: content
        ],
        np.float32,
    )
    assert p.covers(boxes).tolist() == [True, False, True, True, False]
    assert p.covers(np.zeros((0, 4), np.float32)).shape == (0,)
    assert p.padded_fraction == pytest.approx(1 - 195 * 70 / (200 * 100))
