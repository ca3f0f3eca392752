"""safewatch against the Ultralytics loop most users write: frames per CPU-second, and tracking.

Speed: on the construction CCTV clip (598 frames, 640x352), the peer runs
``YOLO("yolov8n_coco.onnx").track(source=clip, tracker="bytetrack.yaml", imgsz=640, classes=[0])``
(``bench/peer_loop.py``, in its own virtual environment) and safewatch runs ``safewatch audit``
with the same ONNX file (camera ``fps: 30``, so every frame; one zone rule; privacy off; no
clips). Each side is a fresh process; its CPU time is the whole process's (user + system, all
threads, imports and model loading included: what a user pays), read from ``getrusage`` of the
finished child. The sides alternate within one run, ``--rounds`` times, medians taken, and the
load average is recorded, since the machine is shared.

A third side, **safewatch INT8**, is a *derived* model, not the same ONNX file: the bench makes
an INT8 copy of yolov8n with ``safewatch models quantize`` (its defaults: convolutions only, 32
calibration frames), calibrated on 32 of the Hard Hat Workers *training* photos
(``assets/training/hard_hat_workers_extra``, every 15th by name), so that neither the speed clip
nor PETS09, on which it is scored, is seen in calibration. It runs in the same alternation, and
its ratio to the peer is printed on its own line, labelled as a derived model.

Accuracy: person-track MOTA / IDF1 on PETS09 S2.L1 frames 1-100 for both, scored the same way
(``bench/tracking.py``: py-motmetrics, IoU >= 0.5): the peer's tracks from the same loop over the
PETS09 clip, safewatch's from its detector and tracker with the site defaults.

Ultralytics is AGPL and pulls in torch, so it is never a safewatch dependency: point ``--venv``
(or ``SAFEWATCH_PEER_VENV``) at a separate virtual environment made with
``python -m venv V && V/bin/pip install torch torchvision ultralytics onnxruntime lap``. Without
it the bench says why and skips. Run: ``python -m bench.peer [--venv V] [--rounds N]``; JSON
goes to ``bench/results/peer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench._common import ASSETS, ROOT, write_results

MODEL = ASSETS / "models" / "yolov8n_coco.onnx"
CLIP = ASSETS / "video" / "construction_cctv_640x352_24s.mp4"
PETS = ASSETS / "video" / "pets09_s2l1_480x360.avi"
CALIBRATION = ASSETS / "training" / "hard_hat_workers_extra" / "images"
CALIBRATION_FRAMES = 32
PEER_LOOP = ROOT / "bench" / "peer_loop.py"
ENV_VAR = "SAFEWATCH_PEER_VENV"


def peer_python(venv: str | None) -> tuple[Path | None, str]:
    """The peer venv's interpreter, or ``None`` and the reason the bench must skip."""
    if not venv:
        return None, (
            f"no peer virtual environment: pass --venv or set {ENV_VAR} (make one with "
            "`python -m venv V && V/bin/pip install torch torchvision ultralytics onnxruntime "
            "lap`; Ultralytics is never a safewatch dependency)"
        )
    python = Path(venv) / "bin" / "python"
    if not python.exists():
        return None, f"{python} does not exist: {venv} is not a virtual environment"
    probe = subprocess.run(
        [str(python), "-c", "import ultralytics, onnxruntime, lap"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"{venv} lacks ultralytics, onnxruntime or lap ({last})"
    return python, ""


def timed_child(argv: Sequence[str], cwd: Path) -> tuple[float, float, str]:
    """Run ``argv`` to completion; its (wall seconds, CPU seconds of the whole process, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object on the last line of ``peer_loop.py``'s output."""
    value: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return value


def calibration_photos() -> list[Path]:
    """The INT8 copy's calibration photos: every 15th training photo by name, 32 of them.

    Training photos, so that neither clip the bench scores (the speed clip, PETS09) is seen in
    calibration; the only other footage among the shared assets.
    """

    def number(path: Path) -> tuple[int, str]:
        digits = "".join(c for c in path.stem if c.isdigit())
        return (int(digits) if digits else -1, path.name)

    photos = sorted(CALIBRATION.glob("*.jpg"), key=number)
    chosen = photos[::15][:CALIBRATION_FRAMES]
    if len(chosen) < CALIBRATION_FRAMES:
        raise SystemExit(f"bench.peer: {CALIBRATION} holds too few photos ({len(photos)})")
    return chosen


def quantized_model(workdir: Path) -> tuple[Path, dict[str, Any]]:
    """An INT8 copy of yolov8n made by ``safewatch models quantize``, and how it was made."""
    photos = calibration_photos()
    dest = workdir / "yolov8n_coco_int8.onnx"
    argv = [sys.executable, "-m", "safewatch", "models", "quantize", str(MODEL)]
    argv += [str(p) for p in photos]
    argv += ["-o", str(dest), "--frames", str(len(photos))]
    wall, cpu, _ = timed_child(argv, workdir)
    about = {
        "derived_from": MODEL.name,
        "command": "safewatch models quantize (defaults: convolutions only, QDQ, MinMax)",
        "calibration": f"{len(photos)} photos of {CALIBRATION.relative_to(ASSETS)}",
        "calibration_photos": [p.name for p in photos],
        "quantize_wall_seconds": round(wall, 1),
        "quantize_cpu_seconds": round(cpu, 1),
    }
    return dest, about


def write_site(workdir: Path, model: Path = MODEL, name: str = "site") -> tuple[Path, Path]:
    """The audit's site file (``model``, every frame, privacy off) and its one zone rule."""
    site = {
        "version": 1,
        "models": {"coco": {"path": str(model), "labels": {"person": "person"}}},
        "cameras": {"clip": {"source": str(CLIP), "fps": 30, "models": ["coco"]}},
        "privacy": {"mode": "off"},
    }
    rules = {
        "version": 1,
        "zones": {
            "yard": {"camera": "clip", "polygon": [[0.3, 0.4], [0.9, 0.4], [0.9, 1.0], [0.3, 1.0]]}
        },
        "rules": [{"id": "yard", "kind": "zone_intrusion", "zone": "yard", "objects": ["person"]}],
    }
    site_file, rules_file = workdir / f"{name}.yaml", workdir / f"{name}-rules.yaml"
    site_file.write_text(yaml.safe_dump(site))
    rules_file.write_text(yaml.safe_dump(rules))
    return site_file, rules_file


def safewatch_run(
    workdir: Path, site: Path, rules: Path, round_no: int, side: str = "safewatch"
) -> dict[str, float]:
    """``safewatch audit`` over the clip in a fresh process."""
    out = workdir / f"audit-{side}-{round_no}"
    argv = [
        sys.executable,
        "-m",
        "safewatch",
        "audit",
        str(CLIP),
        "--config",
        str(site),
        "--rules",
        str(rules),
        "--out",
        str(out),
        "--no-clips",
    ]
    wall, cpu, _ = timed_child(argv, workdir)
    document = json.loads((out / "incidents.json").read_text())
    frames = int(document["videos"][0]["frames_analysed"])
    return {"frames": frames, "wall_seconds": wall, "cpu_seconds": cpu}


def peer_run(python: Path, workdir: Path) -> dict[str, float]:
    """The Ultralytics loop over the clip in a fresh process."""
    wall, cpu, stdout = timed_child(
        [str(python), str(PEER_LOOP), "speed", str(MODEL), str(CLIP)], workdir
    )
    inner = last_json(stdout)
    return {
        "frames": int(inner["frames"]),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "loop_cpu_seconds": float(inner["cpu_seconds"]),
    }


def peer_tracking(python: Path, workdir: Path) -> dict[str, float]:
    """MOTA / IDF1 of the peer's person tracks on PETS09 frames 1-100."""
    import motmetrics as mm

    from bench.tracking import FRAMES, GT, iou_distances, load_gt

    _, _, stdout = timed_child(
        [str(python), str(PEER_LOOP), "tracks", str(MODEL), str(PETS), str(FRAMES)], workdir
    )
    per_frame: list[list[list[float]]] = last_json(stdout)["tracks"]
    gt = load_gt(GT)
    acc = mm.MOTAccumulator(auto_id=False)
    for index, rows in enumerate(per_frame):
        ids, boxes = gt[index + 1]
        hyp = np.array(
            [(x1, y1, x2 - x1, y2 - y1) for _, x1, y1, x2, y2 in rows], np.float64
        ).reshape(-1, 4)
        acc.update(
            ids, [int(r[0]) for r in rows], iou_distances(boxes, hyp, 0.5), frameid=index + 1
        )
    metrics = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses"]
    summary = mm.metrics.create().compute(acc, metrics=metrics, name="peer")
    return {m: float(summary[m].iloc[0]) for m in metrics}


def safewatch_tracking(model: Path = MODEL) -> dict[str, float]:
    """MOTA / IDF1 of safewatch's person tracks on the same frames, site defaults, ``model``."""
    from bench.tracking import CLIP as PETS_CLIP
    from bench.tracking import FRAMES, GT, MODELS, decode_frames, detect_all, load_gt, score
    from safewatch.config.site import TrackerConfig

    run = next(m for m in MODELS if m.name == "yolov8n_coco@640")
    frames = decode_frames(PETS_CLIP, FRAMES)
    detections, _ = detect_all(run, frames, model)
    row = score(frames, detections, load_gt(GT), TrackerConfig(), 0.25)
    return {k: row[k] for k in ("mota", "idf1", "num_switches", "num_false_positives")}


SIDES = ("peer", "safewatch", "safewatch_int8")
LABELS = {
    "peer": "peer (Ultralytics, yolov8n fp32)",
    "safewatch": "safewatch (same yolov8n fp32 file)",
    "safewatch_int8": "safewatch INT8 (derived model)",
}


def main(argv: Sequence[str] | None = None) -> None:
    """Alternate the sides, print frames per CPU-second and the ratios, then tracking."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=os.environ.get(ENV_VAR), help=f"peer venv ({ENV_VAR})")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--no-tracking", action="store_true", help="skip the PETS09 scores")
    parser.add_argument("--no-int8", action="store_true", help="skip the INT8 side")
    args = parser.parse_args(argv)
    python, reason = peer_python(args.venv)
    if python is None:
        print(f"bench.peer skipped: {reason}")
        write_results("peer", {"skipped": reason})
        return
    for needed in (MODEL, CLIP, PETS) + (() if args.no_int8 else (CALIBRATION,)):
        if not needed.exists():
            print(f"bench.peer skipped: needs {needed} (the team's shared assets)")
            return
    sides = SIDES[:2] if args.no_int8 else SIDES
    results: dict[str, Any] = {
        "clip": CLIP.name,
        "model": MODEL.name,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **{side: [] for side in sides},
    }
    print(f"load average at start: {results['load_average_at_start']}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sites = {"safewatch": write_site(workdir)}
        int8 = MODEL
        if not args.no_int8:
            int8, results["int8_model"] = quantized_model(workdir)
            sites["safewatch_int8"] = write_site(workdir, int8, "int8")
            print(
                f"INT8 copy (derived model): {results['int8_model']['calibration']}, "
                f"quantised in {results['int8_model']['quantize_cpu_seconds']} CPU-s",
                flush=True,
            )
        for round_no in range(args.rounds):
            # Each round reverses the order, so no side always runs first or last.
            for side in sides if round_no % 2 == 0 else tuple(reversed(sides)):
                run = (
                    peer_run(python, workdir)
                    if side == "peer"
                    else safewatch_run(workdir, *sites[side], round_no, side)
                )
                run["load_average_1min"] = round(os.getloadavg()[0], 2)
                results[side].append(run)
                print(
                    f"round {round_no + 1} {side:14}: {run['frames']} frames, "
                    f"{run['wall_seconds']:.1f} s wall, {run['cpu_seconds']:.1f} CPU-s, "
                    f"{run['frames'] / run['cpu_seconds']:.2f} frames/CPU-s "
                    f"(load {run['load_average_1min']})",
                    flush=True,
                )
        summary: dict[str, float] = {}
        for side in sides:
            runs = results[side]
            summary[f"{side}_frames_per_cpu_second"] = statistics.median(
                r["frames"] / r["cpu_seconds"] for r in runs
            )
            summary[f"{side}_frames_per_wall_second"] = statistics.median(
                r["frames"] / r["wall_seconds"] for r in runs
            )
        for side, prefix in (("safewatch", ""), ("safewatch_int8", "int8_")):
            if side not in sides:
                continue
            for unit in ("cpu", "wall"):
                summary[f"{prefix}{unit}_ratio"] = (
                    summary[f"{side}_frames_per_{unit}_second"]
                    / summary[f"peer_frames_per_{unit}_second"]
                )
        results["summary"] = {k: round(v, 3) for k, v in summary.items()}
        peer_rate = summary["peer_frames_per_cpu_second"]
        for side, prefix in (("safewatch", ""), ("safewatch_int8", "int8_")):
            if side in sides:
                print(
                    f"frames per CPU-second: {LABELS[side]} "
                    f"{summary[f'{side}_frames_per_cpu_second']:.2f}, peer {peer_rate:.2f}, "
                    f"ratio {summary[f'{prefix}cpu_ratio']:.2f} "
                    f"(wall ratio {summary[f'{prefix}wall_ratio']:.2f}; target >= 1.5)"
                )
        if not args.no_tracking:
            results["tracking"] = {
                "peer": peer_tracking(python, workdir),
                "safewatch": safewatch_tracking(),
            }
            if "safewatch_int8" in sides:
                results["tracking"]["safewatch_int8"] = safewatch_tracking(int8)
            for side, row in results["tracking"].items():
                print(
                    f"PETS09 1-100 {LABELS[side]:35}: MOTA {row['mota']:.3f} IDF1 {row['idf1']:.3f}"
                )
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at end: {results['load_average_at_end']}")
    print(f"wrote {write_results('peer', results)}")


if __name__ == "__main__":
    main()
