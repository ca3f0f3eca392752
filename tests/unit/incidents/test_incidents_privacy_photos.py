"""Privacy on real labelled photos: the hard hat stays visible, the face below it is hidden.

The Hard Hat Workers evaluation photos label each hard hat with a box that covers the hat and the
top of the face. Given those boxes as ``hardhat`` detections, the hidden regions must leave the
hat's dome untouched (a reviewer checks the verdict on it) and change the face below it.
"""

from __future__ import annotations

import cv2
import numpy as np

from assets import asset
from safewatch.config.site import PrivacyConfig
from safewatch.domain import Detections, TrackedFrame
from safewatch.incidents.privacy import HAT_SHOWN, anonymise_heads

PHOTOS = (
    "hard_hat_workers101",
    "hard_hat_workers102",
    "hard_hat_workers103",
    "hard_hat_workers105",
)


def _helmets(stem: str, height: int, width: int) -> np.ndarray:
    rows = np.loadtxt(asset(f"images/hard_hat_workers/labels/{stem}.txt"), ndmin=2)
    r = rows[rows[:, 0] == 0, 1:]
    cx, cy, w, h = r[:, 0] * width, r[:, 1] * height, r[:, 2] * width, r[:, 3] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def test_hat_pixels_unchanged_face_pixels_changed_on_labelled_photos() -> None:
    checked = 0
    for stem in PHOTOS:
        image = cv2.imread(str(asset(f"images/hard_hat_workers/images/{stem}.png")))
        assert image is not None
        height, width = image.shape[:2]
        hats = _helmets(stem, height, width)
        # Heads far apart enough that one's face region cannot cover another's hat.
        detections = Detections(
            xyxy=hats.astype(np.float32),
            confidence=np.full(len(hats), 0.9, np.float32),
            label=np.array(["hardhat"] * len(hats), np.str_),
        )
        frame = TrackedFrame("cam", 0, 0.0, 0.0, width, height, (), detections)
        out = anonymise_heads(image, frame, PrivacyConfig(mode="blur"))
        for x1, y1, x2, y2 in hats:
            hx1, hx2 = int(np.ceil(x1)), int(np.floor(x2))
            dome = (int(np.ceil(y1)), int(np.floor(y1 + 0.9 * HAT_SHOWN * (y2 - y1))))
            face = (int(np.ceil(y2)), min(height, int(np.floor(y2 + 0.8 * (y2 - y1)))))
            if hx2 - hx1 < 6 or dome[1] - dome[0] < 3 or face[1] - face[0] < 3:
                continue
            others = [b for b in hats if b is not None and not np.array_equal(b, (x1, y1, x2, y2))]
            covered = any(
                ox1 < hx2 and ox2 > hx1 and oy2 + 1.5 * (oy2 - oy1) > dome[0] and oy1 < dome[1]
                for ox1, oy1, ox2, oy2 in others
            )
            if covered:
                continue  # a neighbour's face region may overlap this hat
            hat_before = image[dome[0] : dome[1], hx1:hx2]
            hat_after = out[dome[0] : dome[1], hx1:hx2]
            assert np.array_equal(hat_before, hat_after), f"{stem}: hat pixels changed"
            face_changed = np.any(
                out[face[0] : face[1], hx1:hx2] != image[face[0] : face[1], hx1:hx2], axis=2
            )
            assert face_changed.mean() > 0.8, (
                f"{stem}: only {face_changed.mean():.0%} of the face hidden"
            )
            checked += 1
    assert checked >= 5, f"only {checked} hats could be checked"
