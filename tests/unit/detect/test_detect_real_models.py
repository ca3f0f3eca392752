"""The three real models on real pictures, through the full detector path.

Skipped (with the reason) when the team's shared assets are absent. Sessions are built once per
module: each takes a fraction of a second, inference 10-60 ms per frame on two cores.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from assets import asset
from safewatch.config.site import ModelConfig
from safewatch.detect import COCO_CLASSES, MultiModelDetector, OnnxDetector
from safewatch.detect.nms import box_iou
from safewatch.domain import Detections, Frame
from safewatch.errors import ModelError

pytestmark = pytest.mark.slow

PPE_LABELS = {
    "Hardhat": "hardhat",
    "NO-Hardhat": "no_hardhat",
    "Safety Vest": "vest",
    "NO-Safety Vest": "no_vest",
}
COCO_LABELS = {"person": "person", "car": "vehicle", "truck": "vehicle", "bus": "vehicle"}


@cache
def video_frame(index: int) -> Frame:
    """Frame ``index`` of the construction CCTV clip (640x352, 1-5 workers in hard hats)."""
    path = asset("video/construction_cctv_640x352_24s.mp4")
    with av.open(str(path)) as container:
        for i, decoded in enumerate(container.decode(video=0)):
            if i == index:
                image = np.ascontiguousarray(decoded.to_ndarray(format="bgr24"))
                return Frame("yard", i, float(decoded.time or 0.0), 0.0, image)
    raise AssertionError(f"clip has fewer than {index + 1} frames")


def photo(stem: str) -> tuple[Frame, np.ndarray]:
    """A Hard Hat Workers photo and its labelled helmet boxes (xyxy pixels)."""
    root = asset("images/hard_hat_workers")
    image = cv2.imread(str(root / "images" / f"{stem}.png"), cv2.IMREAD_COLOR)
    assert image is not None
    h, w = image.shape[:2]
    rows = np.loadtxt(root / "labels" / f"{stem}.txt", ndmin=2)
    r = rows[rows[:, 0] == 0, 1:]
    boxes = np.stack(
        [
            (r[:, 0] - r[:, 2] / 2) * w,
            (r[:, 1] - r[:, 3] / 2) * h,
            (r[:, 0] + r[:, 2] / 2) * w,
            (r[:, 1] + r[:, 3] / 2) * h,
        ],
        axis=1,
    )
    return Frame("photo", 0, 0.0, 0.0, np.asarray(image, np.uint8)), boxes


@pytest.fixture(scope="module")
def yolox() -> OnnxDetector:
    cfg = ModelConfig(path="yolox_nano", labels=COCO_LABELS, confidence=0.3, threads=2)
    return OnnxDetector(cfg, asset("models/yolox_nano_coco.onnx"), "yolox")


@pytest.fixture(scope="module")
def yolov8() -> OnnxDetector:
    cfg = ModelConfig(path="yolov8n", labels=COCO_LABELS, confidence=0.3, threads=2)
    return OnnxDetector(cfg, asset("models/yolov8n_coco.onnx"), "yolov8")


@pytest.fixture(scope="module")
def ppe() -> OnnxDetector:
    cfg = ModelConfig(path="ppe14", labels=PPE_LABELS, confidence=0.25, threads=2)
    return OnnxDetector(cfg, asset("models/ppe14_yolov8n.onnx"), "ppe")


def assert_people_on_the_yard(det: Detections, frame: Frame) -> NDArray[np.float32]:
    """Workers found, of plausible size, inside the picture; returns their boxes."""
    people = det[det.label == "person"]
    assert len(people) >= 1
    heights = people.xyxy[:, 3] - people.xyxy[:, 1]
    assert np.all((heights > 15) & (heights < 150)), heights  # workers are 30-80 px tall
    assert np.all(people.xyxy[:, [0, 2]] <= frame.width) and np.all(people.xyxy >= 0)
    return people.xyxy


def test_yolox_is_recognised_and_finds_workers(yolox: OnnxDetector) -> None:
    assert yolox.format == "yolox" and yolox.network_hw == (416, 416)
    assert yolox.class_names == COCO_CLASSES  # its metadata 'names' is free text: COCO is assumed
    frame = video_frame(50)
    assert_people_on_the_yard(yolox.detect([frame])[0], frame)


def test_yolov8_is_recognised_and_finds_workers(yolov8: OnnxDetector) -> None:
    assert yolov8.format == "yolov8" and yolov8.network_hw == (640, 640)
    assert yolov8.class_names[:3] == ("person", "bicycle", "car")
    frame = video_frame(50)
    assert_people_on_the_yard(yolov8.detect([frame])[0], frame)


def test_both_coco_models_agree_on_a_worker(yolox: OnnxDetector, yolov8: OnnxDetector) -> None:
    """Different letterboxes (top-left 416 vs centred 640) must land on the same pixels."""
    frame = video_frame(50)
    a = assert_people_on_the_yard(yolox.detect([frame])[0], frame)
    b = assert_people_on_the_yard(yolov8.detect([frame])[0], frame)
    assert box_iou(a, b).max() > 0.6


@pytest.mark.parametrize(
    "stem",
    ["hard_hat_workers103", "hard_hat_workers105", "hard_hat_workers108", "hard_hat_workers116"],
)
def test_ppe_finds_labelled_hardhats(ppe: OnnxDetector, stem: str) -> None:
    frame, helmets = photo(stem)
    det = ppe.detect([frame])[0]
    hats = det[det.label == "hardhat"]
    assert len(hats) >= 1
    matched = box_iou(helmets, hats.xyxy).max(axis=1) > 0.5
    assert matched.mean() >= 0.75, f"{matched.sum()} of {len(helmets)} helmets found"


@pytest.mark.parametrize("model", ["yolox", "yolov8", "ppe"])
def test_batch_of_three_equals_three_singles(model: str, request: pytest.FixtureRequest) -> None:
    detector: OnnxDetector = request.getfixturevalue(model)
    frames = [video_frame(50), photo("hard_hat_workers105")[0], video_frame(300)]
    batched = detector.detect(frames)
    singles = [detector.detect([f])[0] for f in frames]
    assert len(batched) == 3
    assert sum(len(d) for d in batched) > 0
    for b, s in zip(batched, singles, strict=True):
        assert b.label.tolist() == s.label.tolist()
        np.testing.assert_allclose(b.xyxy, s.xyxy, atol=1e-3)
        np.testing.assert_allclose(b.confidence, s.confidence, atol=1e-4)


def test_person_model_plus_ppe_model_merge(yolov8: OnnxDetector, ppe: OnnxDetector) -> None:
    frame, _ = photo("hard_hat_workers105")
    (merged,) = MultiModelDetector([yolov8, ppe]).detect([frame])
    assert {"person", "hardhat"} <= set(merged.label.tolist())
    (people,) = yolov8.detect([frame])
    assert merged.label[: len(people)].tolist() == people.label.tolist()


def test_input_size_is_configurable_for_dynamic_models() -> None:
    cfg = ModelConfig(path="yolov8n", input_size=320, labels={"person": "person"}, threads=2)
    detector = OnnxDetector(cfg, asset("models/yolov8n_coco.onnx"), "small")
    assert detector.network_hw == (320, 320)
    frame, _ = photo("hard_hat_workers105")
    assert len(detector.detect([frame])[0]) >= 1


def test_input_size_off_the_stride_grid_is_refused_plainly() -> None:
    """yolov8n at 500 px used to fail inside ONNX Runtime: "Concat node ... mismatched
    dimensions of 63 and 64" (after a warm-up retried without batching)."""
    cfg = ModelConfig(path="yolov8n", input_size=500, threads=2)
    with pytest.raises(ModelError) as err:
        OnnxDetector(cfg, asset("models/yolov8n_coco.onnx"), "coco")
    assert str(err.value) == (
        "model 'coco': input_size 500 is not a multiple of 32, the model's largest stride, "
        "so its feature maps cannot line up; use 480 or 512"
    )


def test_every_asset_model_warms_up_from_its_path_alone(tmp_path: Path) -> None:
    """No config beyond the path: format, size and names all come from the file."""
    for name in ("yolox_nano_coco", "yolov8n_coco", "ppe14_yolov8n"):
        detector = OnnxDetector(ModelConfig(path=name), asset(f"models/{name}.onnx"), name)
        assert detector.format in ("yolox", "yolov8")


def test_yolox_declared_yolov5_is_refused_naming_yolox() -> None:
    """Same ``[B, A, 5+nc]`` shape, one row per grid cell: read as YOLOv5 (RGB 0-1 centred
    letterbox, grid offsets taken for pixels) it passed ``check-config`` and then found 0 of the
    workers yolox finds on frame 50."""
    path = asset("models/yolox_nano_coco.onnx")
    cfg = ModelConfig(path="yolox_nano", format="yolov5", threads=2)
    with pytest.raises(ModelError, match=r"3549 rows, one per grid cell .* the yolox layout"):
        OnnxDetector(cfg, path, "coco")
