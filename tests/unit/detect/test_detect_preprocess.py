"""Filling the reusable input batch: placement, channel order, scaling, padding slots."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.detect.preprocess import IMAGENET_MEAN, IMAGENET_STD, BatchBuffer, Preprocessing
from safewatch.detect.transform import Placement

BGR = (10, 20, 30)


def picture(h: int, w: int) -> np.ndarray:
    image = np.empty((h, w, 3), np.uint8)
    image[...] = BGR
    return image


def test_ultralytics_letterbox_is_centred_rgb_scaled() -> None:
    buffer = BatchBuffer(
        Preprocessing(Placement.LETTERBOX_CENTER, rgb=True, scale=1 / 255), (64, 64)
    )
    batch, (t,) = buffer.fill([picture(32, 64)])
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    assert (t.pad_x, t.pad_y) == (0, 16)
    assert batch[0, :, 0, 0] == pytest.approx([114 / 255] * 3)  # grey pad above
    assert batch[0, :, 63, 0] == pytest.approx([114 / 255] * 3)  # and below
    assert batch[0, :, 32, 32] == pytest.approx([30 / 255, 20 / 255, 10 / 255])  # RGB


def test_yolox_letterbox_is_top_left_bgr_unscaled() -> None:
    buffer = BatchBuffer(
        Preprocessing(Placement.LETTERBOX_TOP_LEFT, rgb=False, scale=1.0), (64, 64)
    )
    batch, _ = buffer.fill([picture(32, 64)])
    assert batch[0, :, 0, 0].tolist() == list(BGR)
    assert batch[0, :, 31, 63].tolist() == list(BGR)
    assert batch[0, :, 32, 0].tolist() == [114, 114, 114]


def test_detr_stretch_is_normalised() -> None:
    spec = Preprocessing(
        Placement.STRETCH, rgb=True, scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    batch, (t,) = BatchBuffer(spec, (48, 64)).fill([picture(30, 100)])
    rgb = np.array([30, 20, 10]) / 255
    expected = (rgb - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert batch[0, :, 0, 0] == pytest.approx(expected, rel=1e-5)
    assert batch[0, :, 47, 63] == pytest.approx(expected, rel=1e-5)
    assert (t.scale_x, t.scale_y) == (0.64, 1.6)


def test_mixed_sizes_padding_slots_and_reuse() -> None:
    buffer = BatchBuffer(
        Preprocessing(Placement.LETTERBOX_CENTER, rgb=True, scale=1 / 255), (32, 32)
    )
    batch, transforms = buffer.fill([picture(16, 32), picture(64, 32)], size=3)
    assert batch.shape == (3, 3, 32, 32)
    assert [(t.pad_x, t.pad_y) for t in transforms] == [(0, 8), (8, 0)]
    assert np.allclose(batch[2], 114 / 255)  # padding slot is grey
    again, _ = buffer.fill([picture(32, 32)])
    assert again.shape == (1, 3, 32, 32) and np.shares_memory(again, batch)
    assert again[0, :, 0, 0] == pytest.approx([30 / 255, 20 / 255, 10 / 255])  # no stale padding


def test_rejects_non_bgr_images() -> None:
    buffer = BatchBuffer(Preprocessing(Placement.STRETCH, rgb=True, scale=1.0), (8, 8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        buffer.fill([np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="smaller than"):
        buffer.fill([picture(8, 8)] * 2, size=1)
