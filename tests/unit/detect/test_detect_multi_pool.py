"""Merging several models per camera, and sharing one detector per model across cameras."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from safewatch.config.runtime import TilingConfig
from safewatch.config.site import ModelConfig
from safewatch.detect import (
    CameraDetector,
    Detector,
    DetectorPool,
    MultiModelDetector,
    build_detector,
)
from safewatch.domain import Detections, Frame
from safewatch.errors import ModelError


class RecordingDetector:
    """Returns one box labelled ``label`` per frame and records the batches it was given."""

    def __init__(self, label: str, *, broken: bool = False) -> None:
        self.label = label
        self.broken = broken
        self.batches: list[list[int]] = []

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        self.batches.append([f.seq for f in frames])
        out = [
            Detections(
                np.array([[f.seq, 0, f.seq + 1, 1]], np.float32),
                np.array([0.5], np.float32),
                np.array([self.label]),
            )
            for f in frames
        ]
        return out[:-1] if self.broken else out


def frames(n: int) -> list[Frame]:
    return [Frame("cam", i, 0.0, 0.0, np.zeros((4, 4, 3), np.uint8)) for i in range(n)]


def test_multi_model_merges_per_frame_in_detector_order() -> None:
    people, ppe = RecordingDetector("person"), RecordingDetector("hardhat")
    multi = MultiModelDetector([people, ppe])
    assert isinstance(multi, Detector)
    results = multi.detect(frames(3))
    assert [r.label.tolist() for r in results] == [["person", "hardhat"]] * 3
    assert [r.xyxy[0, 0] for r in results] == [0, 1, 2]
    assert people.batches == ppe.batches == [[0, 1, 2]]  # one batch each, not frame by frame
    assert multi.detect([]) == []


def test_multi_model_rejects_a_detector_that_loses_frames() -> None:
    multi = MultiModelDetector([RecordingDetector("a"), RecordingDetector("b", broken=True)])
    with pytest.raises(RuntimeError, match=r"\(1\) returned 1 results for 2 inputs"):
        multi.detect(frames(2))
    with pytest.raises(ValueError, match="at least one"):
        MultiModelDetector([])


MODELS = {
    "people": (ModelConfig(path="people.onnx"), Path("people.onnx")),
    "ppe": (ModelConfig(path="ppe.onnx"), Path("ppe.onnx")),
}


def test_pool_builds_each_model_once_and_shares_it() -> None:
    built: list[str] = []

    def factory(config: ModelConfig, path: Path, name: str) -> Detector:
        built.append(name)
        assert path == Path(f"{config.path}")
        return RecordingDetector(name)

    pool = DetectorPool(MODELS, factory)
    gate = pool.for_models(["people", "ppe"])
    yard = pool.for_models(["people"])
    assert built == ["people", "ppe"]  # built when the camera's detector is, not at first frame
    assert isinstance(gate, CameraDetector) and gate.models == ("people", "ppe")
    assert yard is pool.get("people")
    assert [r.label.tolist() for r in gate.detect(frames(2))] == [["people", "ppe"]] * 2
    shared = pool.get("people")
    assert isinstance(shared, RecordingDetector) and shared.batches == [[0, 1]]
    assert built == ["people", "ppe"]


def test_a_tiled_camera_gets_a_camera_detector_even_with_one_model() -> None:
    pool = DetectorPool(MODELS, lambda c, p, n: RecordingDetector(n))
    tiled = pool.for_models(["people"], TilingConfig(columns=2, rows=2))
    assert isinstance(tiled, CameraDetector) and tiled.tiling is not None
    tiled.detect([Frame("cam", 0, 0.0, 0.0, np.zeros((64, 96, 3), np.uint8))])
    shared = pool.get("people")
    assert isinstance(shared, RecordingDetector)
    assert len(shared.batches) == 1 and len(shared.batches[0]) == 5  # whole frame + 4 tiles


def test_pool_errors() -> None:
    pool = DetectorPool(MODELS, lambda c, p, n: RecordingDetector(n))
    with pytest.raises(ModelError, match=r"unknown model 'nope' \(defined: people, ppe\)"):
        pool.get("nope")
    with pytest.raises(ModelError, match="at least one model"):
        pool.for_models([])


def test_build_detector_reports_a_missing_model_file(tmp_path: Path) -> None:
    models = {"ppe": (ModelConfig(path="ppe.onnx"), tmp_path / "ppe.onnx")}
    with pytest.raises(ModelError, match="model 'ppe': file not found"):
        build_detector(models, ["ppe"])
