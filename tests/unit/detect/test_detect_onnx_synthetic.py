"""OnnxDetector end to end on tiny synthetic models: every family, batching, every error."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx_fakes import constant_model  # beside this file (pytest puts it on sys.path)

from safewatch.config.site import ModelConfig
from safewatch.detect import OnnxDetector
from safewatch.detect.formats.base import EXPECTED_LAYOUTS
from safewatch.detect.formats.yolox import grid_cells
from safewatch.domain import Frame
from safewatch.errors import ModelError

G64 = grid_cells((64, 64))  # 84


def frame(h: int, w: int, seq: int = 0) -> Frame:
    return Frame("cam", seq, seq / 10, 1e9 + seq / 10, np.full((h, w, 3), 90, np.uint8))


def config(**kwargs: Any) -> ModelConfig:
    return ModelConfig(path="unused.onnx", **kwargs)


def yolov5_output() -> np.ndarray:
    out = np.zeros((3 * G64, 5 + 2), np.float32)
    out[7] = [32, 32, 16, 8, 0.9, 0.1, 0.8]  # hard hat, 0.72
    out[8] = [33, 32, 16, 8, 0.9, 0.1, 0.7]  # duplicate, suppressed by NMS
    out[9] = [10, 40, 4, 4, 0.5, 0.9, 0.0]  # person, 0.45
    return out


@pytest.fixture
def yolov5_model(tmp_path: Path) -> Path:
    meta = {"names": "{0: 'person', 1: 'Hard Hat'}", "stride": "32"}
    return constant_model(tmp_path / "v5.onnx", {"output0": yolov5_output()}, metadata=meta)


def test_yolov5_end_to_end_in_source_pixels(yolov5_model: Path) -> None:
    detector = OnnxDetector(config(), yolov5_model, "v5")
    assert detector.format == "yolov5" and detector.network_hw == (64, 64)
    (det,) = detector.detect([frame(32, 64)])  # letterboxed with 16 px above and below
    assert det.label.tolist() == ["hard_hat", "person"]
    assert det.confidence.tolist() == pytest.approx([0.72, 0.45])
    np.testing.assert_allclose(det.xyxy, [[24, 12, 40, 20], [8, 22, 12, 26]], atol=1e-4)


def test_labels_and_label_thresholds_apply(yolov5_model: Path) -> None:
    cfg = config(
        labels={"Hard Hat": "hardhat", "person": "person"}, label_confidence={"person": 0.5}
    )
    (det,) = OnnxDetector(cfg, yolov5_model, "v5").detect([frame(32, 64)])
    assert det.label.tolist() == ["hardhat"]


def test_boxes_are_clipped_to_the_picture(tmp_path: Path) -> None:
    out = np.zeros((3 * G64, 6), np.float32)
    out[0] = [2, 2, 20, 20, 1.0, 1.0]
    path = constant_model(tmp_path / "m.onnx", {"output0": out})
    (det,) = OnnxDetector(config(class_names=["thing"]), path, "m").detect([frame(64, 64)])
    assert det.xyxy.tolist() == [[0, 0, 12, 12]]


def test_detr_end_to_end(tmp_path: Path) -> None:
    boxes = np.tile(np.array([0.5, 0.5, 0.25, 0.5], np.float32), (5, 1))
    logits = np.full((5, 3), -9.0, np.float32)
    logits[2, 1] = 2.0
    path = constant_model(tmp_path / "detr.onnx", {"pred_boxes": boxes, "pred_logits": logits})
    detector = OnnxDetector(config(class_names=["a", "b", "c"]), path, "detr")
    assert detector.format == "detr"
    (det,) = detector.detect([frame(32, 128)])  # stretched, no letterbox
    assert det.label.tolist() == ["b"]
    assert det.confidence[0] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-5)
    np.testing.assert_allclose(det.xyxy, [[48, 8, 80, 24]], atol=1e-4)


def test_yolov8_with_ultralytics_metadata(tmp_path: Path) -> None:
    out = np.zeros((4 + 2, G64), np.float32)
    out[:, 3] = [16, 16, 8, 8, 0.0, 0.6]
    meta = {"names": "{0: 'Hardhat', 1: 'NO-Hardhat'}", "task": "detect", "imgsz": "[64, 64]"}
    path = constant_model(
        tmp_path / "v8.onnx", {"output0": out}, input_hw=("h", "w"), metadata=meta
    )
    detector = OnnxDetector(config(), path, "v8")
    assert (detector.format, detector.network_hw) == ("yolov8", (64, 64))
    (det,) = detector.detect([frame(64, 64)])
    assert det.label.tolist() == ["no_hardhat"]


@pytest.mark.parametrize(
    ("batch", "fixed_reshape"),
    [(1, False), (2, False), ("batch", True)],
    ids=["static batch 1", "static batch 2", "dynamic axis that cannot batch"],
)
def test_models_that_cannot_take_any_batch_are_chunked(
    tmp_path: Path, batch: int | str, fixed_reshape: bool
) -> None:
    path = constant_model(
        tmp_path / "m.onnx", {"output0": yolov5_output()}, batch=batch, fixed_reshape=fixed_reshape
    )
    detector = OnnxDetector(config(class_names=["person", "hat"]), path, "m")
    results = detector.detect([frame(32, 64, i) for i in range(3)])
    assert len(results) == 3
    for det in results:
        assert det.label.tolist() == ["hat", "person"]
    assert detector.detect([]) == []


def test_max_batch_splits_large_requests(yolov5_model: Path) -> None:
    detector = OnnxDetector(config(), yolov5_model, "v5", max_batch=2)
    assert [len(d) for d in detector.detect([frame(32, 64, i) for i in range(5)])] == [2] * 5


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model 'ppe': file not found: .*nope\.onnx"):
        OnnxDetector(config(), tmp_path / "nope.onnx", "ppe")


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"hello, I am not a model\n", "a text file"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)), "a JPEG image"),
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n",
            "a Git LFS pointer",
        ),
        (b"<!DOCTYPE html><html><body>404</body></html>", "an HTML page"),
        (b"", "empty"),
    ],
)
def test_files_that_are_not_onnx(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="is not a loadable ONNX model") as info:
        OnnxDetector(config(), path, "m")
    assert kind in str(info.value)


@pytest.mark.parametrize(
    "outputs",
    [
        pytest.param({"out": np.zeros(10, np.float32)}, id="rank 2"),
        pytest.param({"out": np.zeros((2, 3, 4), np.float32)}, id="rank 4"),
        pytest.param(
            {"a": np.zeros((5, 5), np.float32), "b": np.zeros((6, 3), np.float32)},
            id="two odd outputs",
        ),
    ],
)
def test_unsupported_output_layout(tmp_path: Path, outputs: dict[str, np.ndarray]) -> None:
    path = constant_model(tmp_path / "m.onnx", outputs)
    with pytest.raises(ModelError) as info:
        OnnxDetector(config(), path, "odd")
    assert EXPECTED_LAYOUTS in str(info.value)
    assert "expected output [B, 4+nc, A] (yolov8" in str(info.value)


def test_forcing_the_wrong_format_is_reported(tmp_path: Path) -> None:
    boxes, logits = np.zeros((5, 4), np.float32), np.zeros((5, 3), np.float32)
    path = constant_model(tmp_path / "detr.onnx", {"boxes": boxes, "logits": logits})
    with pytest.raises(ModelError, match="unsupported output layout"):
        OnnxDetector(config(format="yolov8", class_names=["a", "b"]), path, "m")


def test_class_name_count_mismatch(yolov5_model: Path) -> None:
    with pytest.raises(ModelError, match="outputs 2 classes but class_names lists 3"):
        OnnxDetector(config(class_names=["a", "b", "c"]), yolov5_model, "v5")


def test_metadata_names_for_another_model(tmp_path: Path) -> None:
    meta = {"names": "{0: 'a', 1: 'b', 2: 'c'}"}
    path = constant_model(tmp_path / "m.onnx", {"output0": yolov5_output()}, metadata=meta)
    with pytest.raises(ModelError, match="outputs 2 classes but its metadata names 3"):
        OnnxDetector(config(), path, "m")


def test_fixed_input_size_conflicts_with_config(yolov5_model: Path) -> None:
    with pytest.raises(ModelError, match="fixed 64x64 input but the config sets input_size 640"):
        OnnxDetector(config(input_size=640), yolov5_model, "v5")


def test_input_size_must_be_a_multiple_of_the_metadata_stride(tmp_path: Path) -> None:
    out = np.zeros((4 + 2, grid_cells((128, 128))), np.float32)
    meta = {"names": "{0: 'a', 1: 'b'}", "task": "detect", "stride": "64"}
    path = constant_model(
        tmp_path / "v8.onnx", {"output0": out}, input_hw=("h", "w"), metadata=meta
    )
    with pytest.raises(ModelError, match=r"not a multiple of 64, .* use 64 or 128$"):
        OnnxDetector(config(input_size=96), path, "v8")
    with pytest.raises(ModelError, match=r"input_size 40 is not a multiple of 64, .* use 64$"):
        OnnxDetector(config(input_size=40), path, "v8")
    assert OnnxDetector(config(input_size=128), path, "v8").network_hw == (128, 128)


def test_a_detr_model_takes_any_input_size(tmp_path: Path) -> None:
    """DETR has no stride grid: ``format: detr`` is not held to multiples of 32."""
    boxes = np.tile(np.array([0.5, 0.5, 0.25, 0.5], np.float32), (5, 1))
    logits = np.full((5, 3), -9.0, np.float32)
    outputs = {"pred_boxes": boxes, "pred_logits": logits}
    path = constant_model(tmp_path / "detr.onnx", outputs, input_hw=("h", "w"))
    cfg = config(format="detr", input_size=100, class_names=["a", "b", "c"])
    assert OnnxDetector(cfg, path, "detr").network_hw == (100, 100)
    # Nor under format: auto (the default), where two outputs already say it is no YOLO.
    detected = OnnxDetector(config(input_size=560, class_names=["a", "b", "c"]), path, "detr")
    assert (detected.format, detected.network_hw) == ("detr", (560, 560))


def test_unavailable_providers(yolov5_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ModelError, match="none of the providers"):
        OnnxDetector(config(providers=["NoSuchExecutionProvider"]), yolov5_model, "v5")
    with caplog.at_level(logging.WARNING):
        cfg = config(providers=["NoSuchExecutionProvider", "CPUExecutionProvider"])
        OnnxDetector(cfg, yolov5_model, "v5")
    assert "not available here" in caplog.text


def test_unknown_label_key(yolov5_model: Path) -> None:
    with pytest.raises(ModelError, match="labels maps 'helmet'"):
        OnnxDetector(config(labels={"helmet": "hardhat"}), yolov5_model, "v5")
