"""Privacy with the face detector: faces of people no detector found are hidden, hats are not.

The evaluation photos label every head; played with *no* detections at all, every person is one
the person detector missed, so only the face detector (``privacy.faces``) can hide them. Their
labelled bare heads are the ground truth of where a face is (evaluation only: nothing is tuned
here).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from assets import asset
from safewatch.config.site import PrivacyConfig
from safewatch.domain import Detections, TrackedFrame
from safewatch.errors import ModelError
from safewatch.incidents.faces import FaceDetector, face_detector
from safewatch.incidents.privacy import HAT_SHOWN, anonymise_heads, face_regions

FACES = "models/face_detection_yunet_2023mar.onnx"
PHOTOS = (
    "hard_hat_workers101",
    "hard_hat_workers126",
    "hard_hat_workers149",
    "hard_hat_workers157",
    "hard_hat_workers205",
    "hard_hat_workers240",
    "hard_hat_workers244",
)


def _labelled(stem: str, height: int, width: int, cls: int) -> np.ndarray:
    rows = np.loadtxt(asset(f"images/hard_hat_workers/labels/{stem}.txt"), ndmin=2)
    r = rows[rows[:, 0] == cls, 1:]
    cx, cy, w, h = r[:, 0] * width, r[:, 1] * height, r[:, 2] * width, r[:, 3] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _nobody(width: int, height: int) -> TrackedFrame:
    return TrackedFrame("cam", 0, 0.0, 0.0, width, height, (), Detections.empty())


def test_faces_of_undetected_people_are_hidden_on_labelled_photos() -> None:
    config = PrivacyConfig(mode="blur", faces=str(asset(FACES)))
    hidden = faces = 0
    for stem in PHOTOS:
        image = cv2.imread(str(asset(f"images/hard_hat_workers/images/{stem}.png")))
        assert image is not None
        height, width = image.shape[:2]
        frame = _nobody(width, height)
        # Without the face detector nobody detected means nothing hidden at all.
        assert anonymise_heads(image, frame, PrivacyConfig(mode="blur")) is image
        out = anonymise_heads(image, frame, config)
        for x1, y1, x2, y2 in _labelled(stem, height, width, cls=2):
            w, h = x2 - x1, y2 - y1
            # The face: the middle of the head's width, below the hair, above the neck.
            fx1, fx2 = int(np.ceil(x1 + 0.2 * w)), int(np.floor(x2 - 0.2 * w))
            fy1, fy2 = int(np.ceil(y1 + 0.4 * h)), int(np.floor(y2 - 0.05 * h))
            if fx2 - fx1 < 6 or fy2 - fy1 < 6:
                continue
            changed = np.any(out[fy1:fy2, fx1:fx2] != image[fy1:fy2, fx1:fx2], axis=2)
            faces += 1
            hidden += int(changed.mean() >= 0.8)
    assert faces >= 30, f"only {faces} bare faces to check"
    # Measured 23 of 37; some heads are turned away or too small for YuNet at 640 px.
    assert hidden / faces >= 0.5, f"only {hidden} of {faces} faces of missed people hidden"


def test_face_detector_finds_faces_inside_the_frame() -> None:
    detector = FaceDetector(asset(FACES))
    image = cv2.imread(str(asset("images/hard_hat_workers/images/hard_hat_workers101.png")))
    assert image is not None
    found = detector.detect(image)
    height, width = image.shape[:2]
    assert found.shape[1] == 5 and len(found) >= 3
    assert np.all(found[:, 0] >= 0) and np.all(found[:, 2] <= width)
    assert np.all(found[:, 1] >= 0) and np.all(found[:, 3] <= height)
    assert np.all(found[:, 2] > found[:, 0]) and np.all(found[:, 4] >= detector.score)
    # Every confident face lies on a labelled head of this photo: none on the background. (Weaker
    # ones are real faces of small people in the distance whom the labels leave out.)
    heads = np.concatenate([_labelled("hard_hat_workers101", height, width, c) for c in (0, 2)])
    for x1, y1, x2, y2, _ in found[found[:, 4] >= 0.8]:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        near = (
            (cx > heads[:, 0] - 0.5 * (heads[:, 2] - heads[:, 0]))
            & (cx < heads[:, 2] + 0.5 * (heads[:, 2] - heads[:, 0]))
            & (cy > heads[:, 1])
            & (cy < heads[:, 3] + 1.5 * (heads[:, 3] - heads[:, 1]))
        )
        assert near.any(), f"face at {cx:.0f},{cy:.0f} is on no labelled head"


def test_face_region_never_rises_into_a_detected_hat() -> None:
    hat = (100.0, 50.0, 140.0, 70.0)
    detections = Detections(
        np.array([hat], np.float32), np.array([0.9], np.float32), np.array(["hardhat"], np.str_)
    )
    frame = TrackedFrame("cam", 0, 0.0, 0.0, 320, 240, (), detections)
    config = PrivacyConfig(mode="blur", margin=0.15)
    # A face box starting inside the hat (the detector's box reaches the brim).
    face_under_hat = np.array([[105.0, 55.0, 135.0, 100.0, 0.9]])
    ((x1, y1, x2, y2),) = face_regions(face_under_hat, frame, config)
    assert y1 == int(np.ceil(hat[1] + HAT_SHOWN * (hat[3] - hat[1])))
    assert y2 > 100 and x1 < 105 and x2 > 135
    # A face elsewhere grows by the margin on every side, top included.
    ((_, free_top, _, _),) = face_regions(
        np.array([[200.0, 55.0, 230.0, 100.0, 0.9]]), frame, config
    )
    assert free_top < 55


def test_live_view_skips_the_face_detector_and_a_missing_model_is_named() -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    config = PrivacyConfig(mode="blur", faces="/nonexistent/yunet.onnx")
    # faces=False never loads the model (the live view hides every pushed frame).
    assert anonymise_heads(image, _nobody(64, 48), config, faces=False) is image
    with pytest.raises(ModelError, match="yunet"):
        anonymise_heads(image, _nobody(64, 48), config)
    face_detector.cache_clear()


def test_hat_pixels_unchanged_with_faces_on(tmp_path: Path) -> None:
    config = PrivacyConfig(mode="blur", faces=str(asset(FACES)))
    checked = 0
    # 103 and 106 too: on the others, most hats have a face found inside their dome
    for stem in (
        "hard_hat_workers101",
        "hard_hat_workers102",
        "hard_hat_workers103",
        "hard_hat_workers105",
        "hard_hat_workers106",
    ):
        image = cv2.imread(str(asset(f"images/hard_hat_workers/images/{stem}.png")))
        assert image is not None
        height, width = image.shape[:2]
        hats = _labelled(stem, height, width, cls=0)
        detections = Detections(
            hats.astype(np.float32),
            np.full(len(hats), 0.9, np.float32),
            np.array(["hardhat"] * len(hats), np.str_),
        )
        frame = TrackedFrame("cam", 0, 0.0, 0.0, width, height, (), detections)
        plain = anonymise_heads(image, frame, PrivacyConfig(mode="blur"))
        out = anonymise_heads(image, frame, config)
        found = face_detector(str(asset(FACES))).detect(image)
        for x1, y1, x2, y2 in hats:
            hx1, hx2 = int(np.ceil(x1)), int(np.floor(x2))
            dome = (int(np.ceil(y1)), int(np.floor(y1 + 0.9 * HAT_SHOWN * (y2 - y1))))
            if hx2 - hx1 < 6 or dome[1] - dome[0] < 3:
                continue
            if any(f[0] < hx2 and f[2] > hx1 and dome[0] <= f[1] < dome[1] for f in found):
                continue  # a face found inside the dome is hidden from its top: privacy wins
            if not np.array_equal(
                plain[dome[0] : dome[1], hx1:hx2], image[dome[0] : dome[1], hx1:hx2]
            ):
                continue  # a neighbour's head region already covers this hat
            assert np.array_equal(
                out[dome[0] : dome[1], hx1:hx2], image[dome[0] : dome[1], hx1:hx2]
            ), f"{stem}: the face detector hid a hat"
            checked += 1
    assert checked >= 5, f"only {checked} hats could be checked"


def test_a_neighbours_hat_does_not_uncover_a_face() -> None:
    """A neighbour's hat beside a face, starting below its top, used to set the top of the face's
    region at its dome line, near the chin, leaving the eyes and nose in view: such a hat now
    stops the region at the face's top at most. A hat sitting on the face lifts it to its dome,
    but never from lower than the face's upper third (a tall hat box emptied the region)."""
    config = PrivacyConfig(mode="blur", margin=0.15)

    def frame(*hats: tuple[float, float, float, float]) -> TrackedFrame:
        detections = Detections(
            np.array(hats, np.float32).reshape(-1, 4),
            np.full(len(hats), 0.9, np.float32),
            np.array(["hardhat"] * len(hats), np.str_),
        )
        return TrackedFrame("cam", 0, 0.0, 0.0, 320, 240, (), detections)

    face = np.array([[100.0, 100.0, 130.0, 135.0, 0.9]])
    ((x1, y1, x2, y2),) = face_regions(face, frame((120.0, 110.0, 150.0, 130.0)), config)
    assert y1 <= 100 and x1 <= 100 and x2 >= 130 and y2 >= 135, "the face is fully covered"
    # a hat centred over the face but tall enough to put its dome at the mouth
    ((_, tall_top, _, _),) = face_regions(face, frame((100.0, 90.0, 130.0, 160.0)), config)
    assert tall_top <= int(np.ceil(100 + 35 / 3))
    # the face's own hat still keeps its dome in view
    ((_, own_top, _, _),) = face_regions(face, frame((98.0, 80.0, 132.0, 105.0)), config)
    assert own_top == int(np.ceil(80 + HAT_SHOWN * 25))
