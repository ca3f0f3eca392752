"""Stride-aligned rectangular inputs: the shapes, and the same boxes as the square on real models.

The real-model tests skip (with the reason) when the team's shared assets are absent.
"""

from __future__ import annotations

from functools import cache

import av
import numpy as np
import pytest

from assets import asset
from safewatch.config.site import ModelConfig
from safewatch.detect import OnnxDetector
from safewatch.detect.nms import box_iou
from safewatch.detect.transform import Placement, fit, stride_aligned
from safewatch.domain import Detections, Frame


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ((352, 640), (352, 640)),  # the construction clip: no padding at all
        ((360, 480), (480, 640)),  # PETS09, 4:3, upscaled to 640 wide
        ((1080, 1920), (384, 640)),  # 1080p: 360 rows, padded to the next multiple of 32
        ((720, 1280), (384, 640)),
        ((1920, 1080), (640, 384)),  # portrait
        ((640, 640), (640, 640)),
        ((100, 1000), (64, 640)),
    ],
)
def test_stride_aligned_shapes(source: tuple[int, int], expected: tuple[int, int]) -> None:
    assert stride_aligned(source, (640, 640), 32) == expected


@pytest.mark.parametrize("source", [(352, 640), (360, 480), (1080, 1920), (1000, 333), (77, 640)])
def test_rectangle_keeps_the_square_gain_and_centres_the_picture(source: tuple[int, int]) -> None:
    """Ultralytics' LetterBox(auto=True): gain of the 640 square, padding up to the stride."""
    shape = stride_aligned(source, (640, 640), 32)
    square = fit(source, (640, 640), Placement.LETTERBOX_CENTER)
    rect = fit(source, shape, Placement.LETTERBOX_CENTER, reference_hw=(640, 640))
    assert (rect.scale_x, rect.resized_width, rect.resized_height) == (
        square.scale_x,
        square.resized_width,
        square.resized_height,
    )
    assert shape[0] % 32 == 0 and shape[1] % 32 == 0
    assert 0 <= shape[0] - rect.resized_height < 32 and 0 <= shape[1] - rect.resized_width < 32
    # centred as Ultralytics splits it: round(d / 2 - 0.1) on the top / left
    assert rect.pad_y == round((shape[0] - rect.resized_height) / 2 - 0.1)
    assert rect.pad_x == round((shape[1] - rect.resized_width) / 2 - 0.1)


def test_stride_aligned_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        stride_aligned((0, 10), (640, 640), 32)


@cache
def _frames() -> tuple[Frame, ...]:
    """Every 60th frame of the 640x352 yard clip and every 100th of the 480x360 PETS09 clip."""
    frames: list[Frame] = []
    for name, step, camera in (
        ("video/construction_cctv_640x352_24s.mp4", 60, "yard"),
        ("video/pets09_s2l1_480x360.avi", 100, "road"),
    ):
        with av.open(str(asset(name))) as container:
            for i, decoded in enumerate(container.decode(video=0)):
                if i % step == 0:
                    image = np.ascontiguousarray(decoded.to_ndarray(format="bgr24"))
                    frames.append(Frame(camera, i, 0.0, 0.0, image))
    return tuple(frames)


def _pair(model: str, rectangular: bool) -> OnnxDetector:
    config = ModelConfig(path=model, confidence=0.25, threads=2, rectangular=rectangular)
    return OnnxDetector(config, asset(f"models/{model}.onnx"), model)


def _assert_same_boxes(a: Detections, b: Detections) -> list[float]:
    """Every confident (>= 0.5) box of one run is found by the other; returns the IoUs."""
    ious: list[float] = []
    for x, y in ((a, b), (b, a)):
        confident = x[x.confidence >= 0.5]
        if not len(confident):
            continue
        assert len(y), "the other input shape found nothing"
        best = box_iou(confident.xyxy, y.xyxy).max(axis=1)
        assert best.min() >= 0.75, best
        ious.extend(best.tolist())
    return ious


@pytest.mark.slow
@pytest.mark.parametrize("model", ["yolov8n_coco", "ppe14_yolov8n"])
def test_rectangular_input_finds_the_square_inputs_boxes(model: str) -> None:
    """Same boxes within rounding: the network sees less grey padding, nothing else changes.

    Measured on these 18 frames: every confident box is matched at IoU >= 0.88; median IoU 0.91
    for ppe14's hard hats (10-20 px, where a pixel moves IoU by several points), higher for people.
    """
    square, rect = _pair(model, False), _pair(model, True)
    assert rect.rectangular and not square.rectangular
    assert rect.input_shape((352, 640)) == (352, 640)
    assert square.input_shape((352, 640)) == (640, 640)
    frames = _frames()
    ious: list[float] = []
    for a, b in zip(square.detect(frames), rect.detect(frames), strict=True):
        ious.extend(_assert_same_boxes(a, b))
    assert len(ious) >= 10
    assert float(np.median(ious)) >= 0.9


@pytest.mark.slow
def test_a_batch_mixing_camera_shapes_equals_separate_calls() -> None:
    """Frames of two aspects in one call are grouped by shape and come back in order."""
    rect = _pair("yolov8n_coco", True)
    frames = _frames()
    yard = [f for f in frames if f.camera_id == "yard"][:3]
    road = [f for f in frames if f.camera_id == "road"][:3]
    mixed = [yard[0], road[0], yard[1], road[1], yard[2], road[2]]
    together = rect.detect(mixed)
    alone = rect.detect(yard) + rect.detect(road)
    order = [0, 3, 1, 4, 2, 5]
    for got, index in zip(together, order, strict=True):
        want = alone[index]
        assert len(got) == len(want)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=0.05)
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-4)


@pytest.mark.slow
def test_fixed_shape_models_keep_their_square() -> None:
    yolox = _pair("yolox_nano_coco", True)
    assert not yolox.rectangular
    assert yolox.input_shape((352, 640)) == (416, 416)
