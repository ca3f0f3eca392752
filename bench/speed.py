"""Audit throughput against bare ONNX Runtime on the same decoded frames.

For each shared model, on the construction CCTV clip (all 598 frames, so both sides see exactly the
same frames):

* **bare**: what a user would otherwise write: the frames already decoded in memory, a letterbox
  resize into the model's input, ``session.run`` one frame at a time. No decoding, no NMS, no
  tracking: the ceiling for this model on this machine. The input shape is the one audit uses:
  the stride-aligned rectangle (640x352 for this clip) for models with a dynamic height and width,
  as Ultralytics' predictor does, the square for fixed-shape ones (yolox_nano 416x416).
* **audit**: ``safewatch audit``'s whole pipeline (decode, preprocess, inference, NMS, label map,
  tracking, rules, incidents) through :func:`safewatch.footage.audit.run_audit`.

The ratio audit/bare is the share of raw inference speed the product keeps (target >= 0.9). Both
runs alternate in one process, several rounds, median taken, so machine noise hits both alike.
Two ratios are printed: wall-clock frames/s (what the user sees, sensitive to other load on a shared
machine) and frames per CPU-second of this process, all threads counted (``time.process_time``):
the work each side does per frame, which other processes' load barely moves.
``--with-square`` adds a third side, audit with ``rectangular: false`` (every frame letterboxed
into the 640 square, as before issue 17), and prints rect/square: what the rectangle saves.
The load average is printed and recorded, since the machine is shared.
Run: ``python -m bench.speed [--rounds N] [--with-square]``; JSON goes to
``bench/results/speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import onnxruntime as ort
import yaml

from safewatch.config.loader import load_site
from safewatch.detect.transform import stride_aligned
from safewatch.footage.audit import AuditOptions, run_audit
from safewatch.rules import load_rules

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
CLIP = ASSETS / "video" / "construction_cctv_640x352_24s.mp4"
RESULTS = ROOT / "bench" / "results"

MODELS: dict[str, dict[str, Any]] = {
    "yolox_nano_coco": {
        "file": "yolox_nano_coco.onnx",
        "format": "yolox",
        "size": 416,
        "labels": {"person": "person", "car": "vehicle", "truck": "vehicle"},
    },
    "yolov8n_coco": {
        "file": "yolov8n_coco.onnx",
        "format": "yolov8",
        "size": 640,
        "labels": {"person": "person", "car": "vehicle", "truck": "vehicle"},
    },
    "ppe14_yolov8n": {
        "file": "ppe14_yolov8n.onnx",
        "format": "yolov8",
        "size": 640,
        "labels": {"Hardhat": "hardhat", "NO-Hardhat": "no_hardhat", "Person": "person"},
    },
}

RULES = {
    "version": 1,
    "zones": {
        "yard": {"camera": "clip", "polygon": [[0.3, 0.4], [0.9, 0.4], [0.9, 1.0], [0.3, 1.0]]}
    },
    # One zone rule every model can serve: rule files are now checked against the labels a
    # camera's models produce, and the COCO models produce no hard hats.
    "rules": [{"id": "yard", "kind": "zone_intrusion", "zone": "yard", "objects": ["person"]}],
}


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of the clip as BGR arrays (the 'same decoded frames' for the bare loop)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return [f.to_ndarray(format="bgr24") for f in container.decode(stream)]


def bare_fps(model: dict[str, Any], frames: list[np.ndarray]) -> tuple[float, float]:
    """Letterbox + session.run per frame, like a hand-written loop."""
    session = ort.InferenceSession(
        str(ASSETS / "models" / model["file"]), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    size = int(model["size"])
    yolox = model["format"] == "yolox"
    dynamic = not all(isinstance(d, int) for d in session.get_inputs()[0].shape[2:])
    height, width = frames[0].shape[:2]
    net_h, net_w = stride_aligned((height, width), (size, size), 32) if dynamic else (size, size)

    def prepare(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        scale = min(size / h, size / w)
        nh, nw = round(h * scale), round(w * scale)
        canvas = np.full((net_h, net_w, 3), 114, np.uint8)
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if yolox:
            canvas[:nh, :nw] = resized
            return canvas.transpose(2, 0, 1)[None].astype(np.float32)
        top, left = (net_h - nh) // 2, (net_w - nw) // 2
        canvas[top : top + nh, left : left + nw] = resized
        return (canvas[:, :, ::-1].transpose(2, 0, 1)[None] / np.float32(255.0)).astype(np.float32)

    session.run(None, {name: prepare(frames[0])})
    start, cpu = time.perf_counter(), time.process_time()
    for image in frames:
        session.run(None, {name: prepare(image)})
    return (
        len(frames) / (time.perf_counter() - start),
        len(frames) / (time.process_time() - cpu),
    )


def audit_fps(
    key: str, model: dict[str, Any], workdir: Path, batch: int, rectangular: bool = True
) -> tuple[float, float, int]:
    """The whole audit pipeline over every frame of the clip; returns (fps, cpu fps, frames)."""
    site_file = workdir / f"{key}.yaml"
    site = {
        "version": 1,
        "models": {
            key: {
                "path": str(ASSETS / "models" / model["file"]),
                "format": model["format"],
                "input_size": model["size"],
                "labels": model["labels"],
                "rectangular": rectangular,
            }
        },
        "cameras": {"clip": {"source": str(CLIP), "fps": 60, "models": [key]}},
    }
    site_file.write_text(yaml.safe_dump(site))
    rules_file = workdir / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(RULES))
    loaded = load_site(site_file)
    rule_set = load_rules(rules_file, loaded.config)
    out = workdir / f"out-{key}"
    start, cpu = time.perf_counter(), time.process_time()
    report = run_audit(
        loaded, rule_set, AuditOptions(videos=(CLIP,), out_dir=out, batch_size=batch)
    )
    elapsed, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    frames = report.results[0].stats.frames
    return frames / elapsed, frames / cpu_seconds, frames


def main() -> None:
    """Measure each model, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per model")
    parser.add_argument("--batch", type=int, default=4, help="audit detector batch size")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--with-square", action="store_true", help="also run audit with square inputs"
    )
    args = parser.parse_args()
    if not CLIP.exists():
        raise SystemExit(f"needs the shared assets at {ASSETS}")
    frames = decode_all(CLIP)
    results: dict[str, Any] = {
        "clip": CLIP.name,
        "frames": len(frames),
        "onnxruntime": ort.__version__,
        "batch": args.batch,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "models": {},
    }
    print(f"load average at start: {results['load_average_at_start']}")
    print(
        f"{'model':18} {'bare fps':>9} {'audit fps':>9} {'ratio':>6}   "
        f"{'bare cpu-fps':>12} {'audit cpu-fps':>13} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            model = MODELS[key]
            bare: list[float] = []
            audit: list[float] = []
            bare_cpu: list[float] = []
            audit_cpu: list[float] = []
            square_cpu: list[float] = []
            square: list[float] = []
            analysed = 0
            for _ in range(args.rounds):
                fps, cpu_fps = bare_fps(model, frames)
                bare.append(fps)
                bare_cpu.append(cpu_fps)
                fps, cpu_fps, analysed = audit_fps(key, model, Path(tmp), args.batch)
                audit.append(fps)
                audit_cpu.append(cpu_fps)
                if args.with_square:
                    fps, cpu_fps, _ = audit_fps(key, model, Path(tmp), args.batch, False)
                    square.append(fps)
                    square_cpu.append(cpu_fps)
            b, a = statistics.median(bare), statistics.median(audit)
            bc, ac = statistics.median(bare_cpu), statistics.median(audit_cpu)
            results["models"][key] = {
                "bare_fps": round(b, 2),
                "audit_fps": round(a, 2),
                "ratio": round(a / b, 3),
                "bare_cpu_fps": round(bc, 2),
                "audit_cpu_fps": round(ac, 2),
                "cpu_ratio": round(ac / bc, 3),
                "audit_frames": analysed,
                "bare_runs": [round(x, 2) for x in bare],
                "audit_runs": [round(x, 2) for x in audit],
                "bare_cpu_runs": [round(x, 2) for x in bare_cpu],
                "audit_cpu_runs": [round(x, 2) for x in audit_cpu],
            }
            line = f"{key:18} {b:9.1f} {a:9.1f} {a / b:6.3f}   {bc:12.1f} {ac:13.1f} {ac / bc:6.3f}"
            if square:
                sq, sqc = statistics.median(square), statistics.median(square_cpu)
                results["models"][key].update(
                    square_fps=round(sq, 2),
                    square_cpu_fps=round(sqc, 2),
                    rect_over_square=round(a / sq, 3),
                    rect_over_square_cpu=round(ac / sqc, 3),
                )
                line += f"   square audit cpu-fps {sqc:.1f}, rect/square cpu {ac / sqc:.3f}"
            print(line, flush=True)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at end: {results['load_average_at_end']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
