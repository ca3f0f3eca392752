"""Twins of one ONNX Runtime session: two calling threads, one model load, the same boxes.

``safewatch audit`` runs its side-by-side batches on a detector and its twin
(``pipeline/stages.py``); the real-model test skips with the reason when the team's shared
assets are absent.
"""

from __future__ import annotations

import threading
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from assets import asset
from safewatch.config.loader import load_site
from safewatch.config.site import ModelConfig
from safewatch.detect import CameraDetector, OnnxDetector
from safewatch.domain import Detections, Frame
from safewatch.pipeline.stages import build_file_run_detectors, side_by_side_models

CLIP = "video/construction_cctv_640x352_24s.mp4"


def _frames(count: int, step: int) -> list[Frame]:
    frames: list[Frame] = []
    with av.open(str(asset(CLIP))) as container:
        for i, decoded in enumerate(container.decode(video=0)):
            if i % step == 0:
                image = np.ascontiguousarray(decoded.to_ndarray(format="bgr24"), dtype=np.uint8)
                frames.append(Frame("clip", i, i / 25.0, 0.0, image))
            if len(frames) == count:
                break
    return frames


def _same(a: Detections, b: Detections) -> None:
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)


@pytest.fixture(scope="module")
def detector() -> OnnxDetector:
    config = ModelConfig(path="yolov8n_coco", confidence=0.25, threads=1)
    return OnnxDetector(config, asset("models/yolov8n_coco.onnx"), "coco")


def test_a_twin_shares_the_session_but_not_the_buffers(detector: OnnxDetector) -> None:
    twin = detector.twin()
    assert twin is not detector
    assert twin._session is detector._session  # one load, one set of weights
    assert twin._lock is not detector._lock
    assert twin._buffers is not detector._buffers
    assert (twin.format, twin.class_names, twin.network_hw) == (
        detector.format,
        detector.class_names,
        detector.network_hw,
    )


@pytest.mark.slow
def test_twins_called_at_once_find_what_one_finds_alone(detector: OnnxDetector) -> None:
    """Each twin fills its own batch buffer: if they shared one, a batch would be overwritten
    by the other thread's pictures between filling and running, and boxes would swap frames."""
    frames = _frames(16, 30)
    alone = detector.detect(frames)
    twin = detector.twin()
    halves = {0: frames[0::2], 1: frames[1::2]}
    found: dict[int, list[list[Detections]]] = {0: [], 1: []}
    start = threading.Barrier(2)

    def work(side: int, who: OnnxDetector) -> None:
        start.wait()
        for _ in range(3):
            found[side].append(who.detect(halves[side]))

    threads = [
        threading.Thread(target=work, args=(0, detector)),
        threading.Thread(target=work, args=(1, twin)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(len(runs) for runs in found.values()) == 6
    assert sum(len(d) for d in alone) > 0
    for side, runs in found.items():
        for run in runs:
            for got, expected in zip(run, alone[side::2], strict=True):
                _same(got, expected)


def test_the_file_runs_second_detector_is_a_twin_of_the_first(tmp_path: Path) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "models": {"coco": {"path": str(asset("models/yolox_nano_coco.onnx"))}},
                "cameras": {"clip": {"source": "x.mp4", "fps": 4, "models": ["coco"]}},
                "privacy": {"mode": "off"},
            }
        )
    )
    site = load_site(site_file)
    camera = site.config.cameras["clip"]
    if side_by_side_models({"coco": (site.config.models["coco"], Path())}) is None:
        pytest.skip("one core: a file run has a single detector")
    first, second = build_file_run_detectors(site, camera)
    a, b = (
        d._detector_for("coco") if isinstance(d, CameraDetector) else d for d in (first, second)
    )
    assert isinstance(a, OnnxDetector) and isinstance(b, OnnxDetector)
    assert a is not b and a._session is b._session
