"""A file run's detectors side by side: the same incidents and tracks as one detector, frames
still taken in order, each detector on one batch at a time, and a detector's error surfaces."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from assets import asset
from safewatch.config.loader import load_site
from safewatch.config.site import TrackerConfig
from safewatch.domain import Detections, Frame
from safewatch.footage.audit import AuditOptions, run_audit
from safewatch.incidents import EvidenceStore, IncidentManager
from safewatch.pipeline.run import Pipeline
from safewatch.pipeline.stages import build_detector_for, build_file_run_detectors
from safewatch.rules import RuleEngine, RuleSet, load_rules
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.track import CameraTracker

CLIP = "video/construction_cctv_640x352_24s.mp4"
RULES = """
version: 1
zones:
  yard: {camera: clip, polygon: [[0.3, 0.4], [0.9, 0.4], [0.9, 1.0], [0.3, 1.0]]}
rules:
  - {id: yard, kind: zone_intrusion, zone: yard, objects: [person], min_duration: 0s}
"""


def site_and_rules(folder: Path, fps: float) -> tuple[Path, RuleSet]:
    site = {
        "version": 1,
        "models": {"coco": {"path": str(asset("models/yolox_nano_coco.onnx")), "format": "yolox"}},
        "cameras": {"clip": {"source": "x.mp4", "fps": fps, "models": ["coco"]}},
        "privacy": {"mode": "off"},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    (folder / "rules.yaml").write_text(RULES)
    return path, load_rules(folder / "rules.yaml")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: a single detector")
def test_side_by_side_detectors_give_the_incidents_of_one(tmp_path: Path) -> None:
    path, rules = site_and_rules(tmp_path, fps=4.0)
    site = load_site(path)
    camera = site.config.cameras["clip"]
    detectors = build_file_run_detectors(site, camera)
    assert len(detectors) == 2
    found = {}
    for name, detector in (("one", build_detector_for(site, camera)), ("two", None)):
        options = AuditOptions((asset(CLIP),), tmp_path / name, clips=False, start=1.7e9)
        report = run_audit(site, rules, options, detector=detector)
        (result,) = report.results
        found[name] = (
            result.stats.frames,
            {label: sorted(ids) for label, ids in result.stats.tracks.items()},
            [(i.started_at, i.ended_at, i.peak_confidence, i.track_ids) for i in result.incidents],
        )
    assert found["one"][0] > 80 and found["one"][2], "the clip should raise incidents"
    assert found["two"] == found["one"]


class Frames:
    def __init__(self, count: int) -> None:
        self.count = count

    def frames(self) -> Iterator[Frame]:
        for i in range(self.count):
            yield Frame("clip", i, i / 10, 1.7e9 + i / 10, np.zeros((36, 64, 3), np.uint8))


class SlowDetector:
    """Takes a while per batch and notes how many batches run at once, here and in total."""

    running = 0
    most = 0
    lock = threading.Lock()

    def __init__(self, fail_at: int | None = None) -> None:
        self.busy = False
        self.fail_at = fail_at

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        assert not self.busy, "a detector got a second batch before the first was taken"
        self.busy = True
        with SlowDetector.lock:
            SlowDetector.running += 1
            SlowDetector.most = max(SlowDetector.most, SlowDetector.running)
        try:
            if self.fail_at is not None and frames[0].seq >= self.fail_at:
                raise RuntimeError("model failed")
            time.sleep(0.05)
            return [Detections.empty() for _ in frames]
        finally:
            with SlowDetector.lock:
                SlowDetector.running -= 1
            self.busy = False


def pipeline(tmp_path: Path, detectors: list[SlowDetector], seen: list[int]) -> Pipeline:
    _, rules = site_and_rules(tmp_path, fps=10.0)
    engine = create_engine_for("sqlite:///db.sqlite", tmp_path)
    manager = IncidentManager(IncidentRepository(engine), EvidenceStore(tmp_path / "evidence"))
    return Pipeline(
        "clip",
        Frames(30),
        detectors,
        CameraTracker(TrackerConfig(), "clip", frame_rate=10.0),
        RuleEngine(rules),
        manager,
        batch_size=4,
        observers=[lambda frame, *_: seen.append(frame.seq)],
    )


def test_batches_run_side_by_side_and_frames_are_taken_in_order(tmp_path: Path) -> None:
    SlowDetector.most = 0
    seen: list[int] = []
    stats = pipeline(tmp_path, [SlowDetector(), SlowDetector()], seen).run()
    assert seen == list(range(30)) and stats.frames == 30
    assert SlowDetector.most == 2


def test_a_failing_detector_stops_the_run_with_its_error(tmp_path: Path) -> None:
    seen: list[int] = []
    run = pipeline(tmp_path, [SlowDetector(), SlowDetector(fail_at=12)], seen)
    with pytest.raises(RuntimeError, match="model failed"):
        run.run()
    assert seen == list(range(len(seen))) and len(seen) <= 12
