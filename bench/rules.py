"""Rule engine cost against detector cost: is rule evaluation negligible beside inference?

* **engine**: :class:`safewatch.rules.RuleEngine` with 20 rules of every kind (ppe, zone_intrusion,
  dwell, line_crossing, proximity in metres and pixels, occupancy, zone_clear, speed) on one
  calibrated 1280x720 camera, fed 50 synthetic tracks (40 people with changing hard hat / vest
  states, 6 vehicles, 4 forklifts) that move smoothly, bounce off the frame edges, and are
  replaced by new ids now and then, at 10 fps. Rules fire (people without hard hats, in zones,
  near forklifts, speeding vehicles), so episodes open, go on and end.
* **detector**: ``yolox_nano_coco`` through safewatch's :class:`OnnxDetector`, one frame per call,
  on frames of the construction CCTV clip.

Both are timed in the same process, alternating, for several rounds; medians of the per-frame
times are taken so machine noise hits both alike. The ratio engine/detector is the share of a
frame's inference time the rules add (target <= 0.05). On a loaded machine it still moves a lot
from run to run (the multi-threaded detector suffers from other work more than the one-threaded
engine), so the engine's CPU time per frame is reported too: its cost without the waits.

Run: ``python -m bench.rules [--rounds N]``; JSON goes to ``bench/results/rules.json``.
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import yaml

from bench._common import require_asset, write_results
from safewatch.config.site import ModelConfig
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.domain import Frame, PPEState, Track, TrackedFrame
from safewatch.rules import RuleEngine, RuleSet, load_rules
from safewatch.rules.calibration import Calibration

CAMERA = "yard"
WIDTH, HEIGHT = 1280, 720
FPS = 10.0
TRACKS = 50
ORIGIN = 1_767_600_000.0  # a Monday, 09:00 UTC: schedules are open

CALIBRATION = Calibration.from_points(
    [[0.05, 0.95], [0.95, 0.95], [0.8, 0.3], [0.2, 0.3], [0.5, 0.6]],
    [[0.0, 0.0], [40.0, 0.0], [40.0, 25.0], [0.0, 25.0], [20.0, 8.02]],
)
"""A 40 m x 25 m yard seen from one side (five points, so the fit is checked)."""


def _box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


RULES: dict[str, Any] = {
    "version": 1,
    "zones": {
        "loading_bay": {"camera": CAMERA, "polygon": _box(0.0, 0.5, 0.35, 1.0)},
        "press": {"camera": CAMERA,
                  "polygon": [[0.4, 0.4], [0.6, 0.35], [0.65, 0.6], [0.42, 0.65]]},
        "walkway": {"camera": CAMERA, "polygon": _box(0.7, 0.3, 0.8, 1.0)},
        "exit": {"camera": CAMERA, "polygon": _box(0.9, 0.6, 1.0, 0.9)},
        "mezzanine": {"camera": CAMERA, "polygon": _box(0.1, 0.1, 0.5, 0.4)},
        "traffic_lane": {"camera": CAMERA, "polygon": _box(0.3, 0.7, 0.9, 0.95)},
    },
    "lines": {
        "gate": {"camera": CAMERA, "points": [[0.5, 0.3], [0.5, 1.0]]},
        "dock_door": {"camera": CAMERA, "points": [[0.0, 0.6], [0.35, 0.6]]},
    },
    "rules": [
        {"id": "hardhat", "kind": "ppe", "require": ["hardhat"], "min_duration": "1s"},
        {"id": "vest-bay", "kind": "ppe", "require": ["vest"], "zones": ["loading_bay"]},
        {"id": "full-ppe-press", "kind": "ppe", "require": ["hardhat", "vest"], "zones": ["press"],
         "schedule": {"days": ["mon", "tue", "wed", "thu", "fri"], "between": ["06:00", "22:00"]}},
        {"id": "hardhat-walkway", "kind": "ppe", "require": ["hardhat"], "zones": ["walkway"],
         "severity": "high"},
        {"id": "no-entry-press", "kind": "zone_intrusion", "zone": "press", "min_duration": "1s"},
        {"id": "no-vehicle-walkway", "kind": "zone_intrusion", "zone": "walkway",
         "objects": ["vehicle", "forklift"], "anchor": "box", "severity": "critical"},
        {"id": "no-people-lane", "kind": "zone_intrusion", "zone": "traffic_lane",
         "anchor": "centre", "cooldown": "10s"},
        {"id": "mezzanine-closed", "kind": "zone_intrusion", "zone": "mezzanine"},
        {"id": "loiter-exit", "kind": "dwell", "zone": "exit", "max_time": "5s"},
        {"id": "loiter-bay", "kind": "dwell", "zone": "loading_bay", "max_time": "20s"},
        {"id": "gate-count", "kind": "line_crossing", "line": "gate"},
        {"id": "dock-in", "kind": "line_crossing", "line": "dock_door",
         "direction": "left_to_right", "objects": ["person", "forklift"]},
        {"id": "forklift-2m", "kind": "proximity", "objects": ["forklift"], "max_distance": "2m",
         "severity": "critical"},
        {"id": "vehicle-150px", "kind": "proximity", "objects": ["vehicle"],
         "max_distance": "150px"},
        {"id": "press-approach", "kind": "proximity", "machine_zone": "press",
         "max_distance": "1.5m", "approaching": "0.5m/s"},
        {"id": "crowd-mezzanine", "kind": "occupancy", "zone": "mezzanine", "max_count": 3},
        {"id": "lone-bay", "kind": "occupancy", "zone": "loading_bay", "min_count": 2},
        {"id": "exit-clear", "kind": "zone_clear", "zone": "exit", "max_time": "10s"},
        {"id": "speed-yard", "kind": "speed", "max_speed": "10km/h"},
        {"id": "speed-lane", "kind": "speed", "max_speed": "6km/h", "objects": ["forklift"],
         "zones": ["traffic_lane"]},
    ],
}  # fmt: skip


@dataclass
class _Mover:
    track_id: int
    label: str
    x: float
    y: float
    vx: float
    vy: float
    w: float
    h: float
    hardhat: PPEState
    vest: PPEState


_STATES = (PPEState.PRESENT, PPEState.PRESENT, PPEState.ABSENT, PPEState.UNKNOWN)


def _spawn(rng: random.Random, track_id: int, label: str) -> _Mover:
    size = {"person": (40.0, 100.0), "vehicle": (160.0, 110.0), "forklift": (110.0, 100.0)}
    # People walk (~1-2 m/s on this floor); vehicles drive faster, some above the limits.
    speed = {"person": 12.0, "vehicle": 45.0, "forklift": 30.0}[label] * rng.uniform(0.2, 1.0)
    angle = rng.uniform(0, 2 * math.pi)
    w, h = size[label]
    return _Mover(
        track_id, label, rng.uniform(w, WIDTH - w), rng.uniform(h + 100, HEIGHT - 5),
        speed * math.cos(angle), speed * math.sin(angle), w, h,
        rng.choice(_STATES), rng.choice(_STATES),
    )  # fmt: skip


def synthetic_frames(count: int, seed: int = 7) -> list[TrackedFrame]:
    """``count`` tracked frames of 50 moving tracks (see the module docstring)."""
    rng = random.Random(seed)
    labels = ["person"] * 40 + ["vehicle"] * 6 + ["forklift"] * 4
    movers = [_spawn(rng, i + 1, label) for i, label in enumerate(labels)]
    next_id = len(movers) + 1
    frames = []
    for seq in range(count):
        if seq and seq % 20 == 0:  # someone leaves, someone new arrives
            index = rng.randrange(len(movers))
            movers[index] = _spawn(rng, next_id, movers[index].label)
            next_id += 1
        tracks = []
        for m in movers:
            m.x += m.vx + rng.gauss(0, 1.0)
            m.y += m.vy + rng.gauss(0, 1.0)
            if not m.w / 2 <= m.x <= WIDTH - m.w / 2:
                m.vx = -m.vx
                m.x = min(max(m.x, m.w / 2), WIDTH - m.w / 2)
            if not m.h + 60 <= m.y <= HEIGHT - 1:
                m.vy = -m.vy
                m.y = min(max(m.y, m.h + 60), HEIGHT - 1)
            if m.label == "person" and rng.random() < 0.01:
                m.hardhat, m.vest = rng.choice(_STATES), rng.choice(_STATES)
            attributes = {"hardhat": m.hardhat, "vest": m.vest} if m.label == "person" else {}
            tracks.append(
                Track(
                    m.track_id,
                    m.label,
                    (m.x - m.w / 2, m.y - m.h, m.x + m.w / 2, m.y),
                    0.8,
                    attributes,
                    {item: 0.7 for item in attributes},
                )
            )
        frames.append(
            TrackedFrame(CAMERA, seq, seq / FPS, ORIGIN + seq / FPS, WIDTH, HEIGHT, tuple(tracks))
        )
    return frames


def rule_set(folder: Path) -> RuleSet:
    """The 20 rules, written as a rule file and loaded as a user's would be."""
    path = folder / "bench_rules.yaml"
    path.write_text(yaml.safe_dump(RULES, sort_keys=False))
    return load_rules(path)


def time_engine(rules: RuleSet, frames: Sequence[TrackedFrame]) -> tuple[float, float, int]:
    """Seconds per frame for a fresh engine over ``frames`` (wall clock, and CPU time of this
    thread: the engine runs on one, so CPU time is its cost without the waits a loaded machine
    adds), and the events it emitted."""
    engine = RuleEngine(rules, "UTC", {CAMERA: CALIBRATION})
    events = 0
    start, cpu = time.perf_counter(), time.thread_time()
    for tracked in frames:
        events += len(engine.evaluate(tracked))
    wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
    return wall / len(frames), cpu / len(frames), events


def clip_frames(count: int) -> list[Frame]:
    """The first ``count`` frames of the construction clip."""
    frames: list[Frame] = []
    with av.open(str(require_asset("video/construction_cctv_640x352_24s.mp4"))) as container:
        for image in container.decode(video=0):
            bgr = np.ascontiguousarray(image.to_ndarray(format="bgr24"), dtype=np.uint8)
            frames.append(Frame("clip", len(frames), len(frames) / 25, len(frames) / 25, bgr))
            if len(frames) == count:
                break
    return frames


def time_detector(detector: OnnxDetector, frames: Sequence[Frame]) -> float:
    """Seconds per frame, one frame per ``detect`` call (as a live camera sends them)."""
    start = time.perf_counter()
    for frame in frames:
        detector.detect([frame])
    return (time.perf_counter() - start) / len(frames)


def main() -> None:
    """Alternate engine and detector timings; print and write the medians and their ratio."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--frames", type=int, default=300, help="Synthetic frames per round.")
    parser.add_argument("--detect-frames", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        rules = rule_set(Path(folder))
    kinds: dict[str, int] = {}
    for rule in rules.rules:
        kinds[rule.kind] = kinds.get(rule.kind, 0) + 1
    tracked = synthetic_frames(args.frames)
    model = require_asset("models/yolox_nano_coco.onnx")
    detector = OnnxDetector(
        ModelConfig(path=str(model), format="yolox", labels={"person": "person"}), model, "yolox"
    )
    images = clip_frames(args.detect_frames)
    time_engine(rules, tracked[:50])  # warm-up: imports, first monitors
    time_detector(detector, images[:3])

    engine_times, engine_cpu, detector_times, events = [], [], [], 0
    for _ in range(args.rounds):
        seconds, cpu, events = time_engine(rules, tracked)
        engine_times.append(seconds)
        engine_cpu.append(cpu)
        detector_times.append(time_detector(detector, images))
    engine_s = statistics.median(engine_times)
    detector_s = statistics.median(detector_times)
    ratio = engine_s / detector_s
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "rules": len(rules.rules),
        "kinds": kinds,
        "tracks": TRACKS,
        "frames_per_round": args.frames,
        "events_per_round": events,
        "rounds": args.rounds,
        "engine_ms_per_frame": engine_s * 1e3,
        "engine_ms_rounds": [t * 1e3 for t in engine_times],
        "engine_cpu_ms_per_frame": statistics.median(engine_cpu) * 1e3,
        "detector": "yolox_nano_coco@416 via OnnxDetector, batch 1, construction clip 640x352",
        "detector_ms_per_frame": detector_s * 1e3,
        "detector_ms_rounds": [t * 1e3 for t in detector_times],
        "ratio_engine_over_detector": ratio,
        "target": 0.05,
        "meets_target": ratio <= 0.05,
    }
    out = write_results("rules", result)
    print(f"{len(rules.rules)} rules ({kinds}), {TRACKS} tracks, {events} events per round")
    print(
        f"engine:   {engine_s * 1e3:.3f} ms/frame (median of {args.rounds}; "
        f"CPU {statistics.median(engine_cpu) * 1e3:.3f} ms)"
    )
    print(f"detector: {detector_s * 1e3:.3f} ms/frame (median of {args.rounds})")
    print(f"ratio engine/detector: {ratio:.4f} (target <= 0.05); written {out}")


if __name__ == "__main__":
    main()
