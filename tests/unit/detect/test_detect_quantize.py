"""``safewatch models quantize`` on the real yolov8n: an INT8 model that still finds the workers.

Skipped (with the reason) when the team's shared assets are absent. Quantising takes about a
minute of CPU on two cores, so it runs once for the module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from assets import asset
from safewatch.cli.app import app
from safewatch.config.site import ModelConfig
from safewatch.detect import OnnxDetector
from safewatch.detect.nms import box_iou
from safewatch.detect.quantize import calibration_images
from safewatch.domain import Frame

pytestmark = pytest.mark.slow

CLIP = "video/construction_cctv_640x352_24s.mp4"


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quantize") / "yolov8n_int8.onnx"
    result = CliRunner().invoke(
        app,
        [
            "models",
            "quantize",
            str(asset("models/yolov8n_coco.onnx")),
            str(asset(CLIP)),
            "--out",
            str(out),
            "--frames",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "calibrated on 8 frames" in result.output
    return out


def test_calibration_frames_are_spread_over_the_video() -> None:
    images = calibration_images([asset(CLIP)], 5)
    assert len(images) == 5
    assert all(i.shape == (352, 640, 3) and i.dtype == np.uint8 for i in images)
    assert not np.array_equal(images[0], images[-1])


def test_only_convolutions_are_quantised_and_the_output_stays_float(int8_model: Path) -> None:
    graph = onnx.load(str(int8_model)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 50
    producer = {o: n for n in graph.node for o in n.output}
    assert producer["output0"].op_type == "Concat"  # no Q/DQ pair rounding the scores away
    assert not any("dfl" in n.name and n.op_type == "QuantizeLinear" for n in graph.node)


def test_int8_model_finds_the_same_workers(int8_model: Path) -> None:
    image = calibration_images([asset(CLIP)], 12)[1]  # frame 49: workers on the yard
    frame = Frame("yard", 0, 0.0, 0.0, image)
    labels = {"person": "person"}
    fp32 = OnnxDetector(
        ModelConfig(path="fp32", labels=labels), asset("models/yolov8n_coco.onnx"), "fp32"
    )
    int8 = OnnxDetector(ModelConfig(path="int8", labels=labels), int8_model, "int8")
    a, b = fp32.detect([frame])[0], int8.detect([frame])[0]
    confident = a[a.confidence >= 0.4]
    assert len(confident) >= 1 and len(b) >= 1
    assert box_iou(confident.xyxy, b.xyxy).max(axis=1).min() >= 0.7
