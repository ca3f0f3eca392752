"""Tracking accuracy (MOTA, IDF1) of the person tracker on PETS 2009 S2.L1, frames 1-100.

For each COCO model and input size the clip's first 100 frames are detected once (persons only, at
a low threshold), then :class:`safewatch.track.CameraTracker` runs over them at the clip's 10 fps
(every frame analysed) and py-motmetrics scores the tracks against the MOTChallenge ground truth
(IoU >= 0.5). MOT frame N is decoded frame N-1.

The ground truth leaves a few distant walkers unannotated; motmetrics has no simple ignore-region
support, so tracks on them count as false positives and the MOTA figures here are a little
pessimistic. The same holds for every row, so rows compare fairly.

Besides the site defaults, a small grid over the tracker settings (and the detector threshold
feeding it) is scored, to show whether the defaults are worth changing. 100 frames and 6 people
are little data: only a change that helps every model is worth recommending.

Run: ``python -m bench.tracking [--quick]``; JSON goes to ``bench/results/tracking.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import motmetrics as mm
import numpy as np

from safewatch.config.site import ModelConfig, ModelFormat, TrackerConfig
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.domain import Detections, Frame, Image
from safewatch.track import CameraTracker

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
CLIP = ASSETS / "video" / "pets09_s2l1_480x360.avi"
GT = ASSETS / "video" / "pets09_s2l1_gt" / "gt_480x360_frames1-100.txt"
RESULTS = ROOT / "bench" / "results"
FPS = 10.0
FRAMES = 100
RECOMMENDED = TrackerConfig(high_confidence=0.6)  # what the grid below argued for
DETECT_FLOOR = 0.05  # detections kept for the grid; each run filters to its own threshold


@dataclass(frozen=True)
class ModelRun:
    """One detector setting to score."""

    name: str
    file: str
    format: ModelFormat
    size: int


MODELS = (
    ModelRun("yolox_nano_coco@416", "yolox_nano_coco.onnx", "yolox", 416),
    ModelRun("yolov8n_coco@640", "yolov8n_coco.onnx", "yolov8", 640),
    ModelRun("yolov8n_coco@960", "yolov8n_coco.onnx", "yolov8", 960),
    ModelRun("yolov8n_coco@1280", "yolov8n_coco.onnx", "yolov8", 1280),
)


def _bgr(image: av.VideoFrame) -> Image:
    return np.ascontiguousarray(image.to_ndarray(format="bgr24"), dtype=np.uint8)


def decode_frames(path: Path, count: int) -> list[Frame]:
    """The clip's first ``count`` frames, clocked at the clip's nominal 10 fps."""
    frames: list[Frame] = []
    with av.open(str(path)) as container:
        for image in container.decode(video=0):
            seq = len(frames)
            frames.append(Frame("pets09", seq, seq / FPS, seq / FPS, _bgr(image)))
            if len(frames) == count:
                break
    return frames


def load_gt(path: Path) -> dict[int, tuple[list[int], np.ndarray]]:
    """MOT frame number -> (ids, ``(K, 4)`` x, y, w, h)."""
    rows = np.loadtxt(path, delimiter=",")
    gt: dict[int, tuple[list[int], np.ndarray]] = {}
    for frame in range(1, FRAMES + 1):
        sel = rows[rows[:, 0] == frame]
        gt[frame] = ([int(i) for i in sel[:, 1]], sel[:, 2:6].astype(np.float64))
    return gt


def detect_all(
    run: ModelRun, frames: Sequence[Frame], model_path: Path | None = None
) -> tuple[list[Detections], float]:
    """Person detections of every frame, and the mean seconds per frame.

    ``model_path`` scores another file of the same format and input size as ``run.file`` (an INT8
    copy from ``safewatch models quantize``, for ``bench/peer``).
    """
    path = model_path or ASSETS / "models" / run.file
    config = ModelConfig(
        path=str(path),
        format=run.format,
        input_size=run.size,
        labels={"person": "person"},
        confidence=DETECT_FLOOR,
    )
    detector = OnnxDetector(config, path, run.name)
    start = time.perf_counter()
    detections: list[Detections] = []
    for i in range(0, len(frames), 4):
        detections.extend(detector.detect(frames[i : i + 4]))
    return detections, (time.perf_counter() - start) / len(frames)


def iou_distances(gt: np.ndarray, hyp: np.ndarray, min_iou: float) -> np.ndarray:
    """``1 - IoU`` of xywh boxes, NaN (no match allowed) below ``min_iou``.

    Our own because ``motmetrics.distances.iou_matrix`` still calls ``np.asfarray``, which NumPy 2
    removed.
    """
    a = gt[:, None, :]
    b = hyp[None, :, :]
    iw = np.clip(
        np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]),
        0,
        None,
    )
    ih = np.clip(
        np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]),
        0,
        None,
    )
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    iou = inter / np.maximum(union, 1e-9)
    return np.where(iou >= min_iou, 1.0 - iou, np.nan)


def score(
    frames: Sequence[Frame],
    detections: Sequence[Detections],
    gt: dict[int, tuple[list[int], np.ndarray]],
    config: TrackerConfig,
    detect_threshold: float,
) -> dict[str, float]:
    """Track and score one configuration; returns the motmetrics summary row."""
    # A person model, so no head mode: what build_tracker decides for a camera with one.
    tracker = CameraTracker(config, "pets09", frame_rate=FPS, track_heads=False)
    acc = mm.MOTAccumulator(auto_id=False)
    for frame, det in zip(frames, detections, strict=True):
        out = tracker.update(det[det.confidence >= detect_threshold], frame)
        ids, boxes = gt[frame.seq + 1]
        persons = [t for t in out.tracks if not t.ppe_only]  # PPE subjects are no person tracks
        hyp_ids = [t.track_id for t in persons]
        hyp = np.array(
            [(t.xyxy[0], t.xyxy[1], t.xyxy[2] - t.xyxy[0], t.xyxy[3] - t.xyxy[1]) for t in persons],
            np.float64,
        ).reshape(-1, 4)
        dist = iou_distances(boxes, hyp, min_iou=0.5)
        acc.update(ids, hyp_ids, dist, frameid=frame.seq + 1)
    metrics = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "motp"]
    summary = mm.metrics.create().compute(acc, metrics=metrics, name="run")
    row = {m: float(summary[m].iloc[0]) for m in metrics}
    row["motp_iou"] = 1.0 - row.pop("motp")
    return row


def grid(quick: bool) -> list[tuple[TrackerConfig, float]]:
    """Tracker settings x detector threshold to compare with the defaults."""
    if quick:
        return [(TrackerConfig(), 0.25)]
    out: list[tuple[TrackerConfig, float]] = []
    for lost, high, iou, min_frames, threshold in itertools.product(
        (1.0, 2.0, 3.0), (0.4, 0.5, 0.6), (0.1, 0.2, 0.3), (1, 2, 3), (0.1, 0.25)
    ):
        config = TrackerConfig(
            lost_track_seconds=lost,
            activation_confidence=min(0.3, high),
            high_confidence=high,
            min_iou=iou,
            min_frames=min_frames,
        )
        out.append((config, threshold))
    return out


def _settings(config: TrackerConfig, threshold: float) -> dict[str, Any]:
    return {**config.model_dump(exclude={"ppe_window"}), "detect_threshold": threshold}


def accuracy_section(quick: bool) -> dict[str, Any]:
    """MOTA/IDF1 with the site defaults, for ``bench.accuracy`` (its tracking section).

    Only the two COCO models at their native sizes (the grid is this module's own ``main``).
    """
    frames = decode_frames(CLIP, FRAMES)
    gt = load_gt(GT)
    runs = MODELS[:1] if quick else MODELS[:2]
    section: dict[str, Any] = {"clip": CLIP.name, "frames": FRAMES, "iou_threshold": 0.5}
    for run in runs:
        detections, seconds = detect_all(run, frames)
        row = score(frames, detections, gt, TrackerConfig(), 0.25)
        section[run.name] = {**row, "seconds_per_frame": seconds}
        print(
            f"tracking {run.name:22} MOTA {row['mota']:.3f} IDF1 {row['idf1']:.3f} "
            f"IDsw {int(row['num_switches'])}"
        )
    return section


def main(argv: Sequence[str] | None = None) -> None:
    """Score every model with the defaults, then the grid; print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="defaults only, no grid")
    parser.add_argument("--models", nargs="*", help="subset of model runs by name")
    args = parser.parse_args(argv)
    frames = decode_frames(CLIP, FRAMES)
    gt = load_gt(GT)
    runs = [m for m in MODELS if not args.models or m.name in args.models]
    defaults = TrackerConfig()
    results: dict[str, Any] = {
        "clip": CLIP.name,
        "frames": FRAMES,
        "fps": FPS,
        "iou_threshold": 0.5,
        "note": "unannotated distant walkers count as false positives (no ignore regions)",
        "models": {},
    }
    grid_settings = grid(args.quick)
    totals: dict[int, list[float]] = {i: [] for i in range(len(grid_settings))}
    print(
        f"{'model':22} {'setting':13} {'MOTA':>6} {'IDF1':>6} {'IDsw':>5} {'FP':>5} {'FN':>5} "
        f"{'s/frame':>8}"
    )
    for run in runs:
        detections, seconds = detect_all(run, frames)
        rows = {
            "defaults@0.25": score(frames, detections, gt, defaults, 0.25),
            "defaults@0.10": score(frames, detections, gt, defaults, 0.10),
            "high0.6@0.25": score(frames, detections, gt, RECOMMENDED, 0.25),
        }
        scored = []
        for i, (config, threshold) in enumerate(grid_settings):
            row = score(frames, detections, gt, config, threshold)
            totals[i].append(row["mota"] + row["idf1"])
            scored.append({**_settings(config, threshold), **row})
        best = max(scored, key=lambda r: r["mota"] + r["idf1"])
        results["models"][run.name] = {
            "seconds_per_frame": seconds,
            **rows,
            "best_in_grid": best,
        }
        for label, row in [*rows.items(), ("best", best)]:
            print(
                f"{run.name:22} {label:13} {row['mota']:6.3f} {row['idf1']:6.3f} "
                f"{int(row['num_switches']):5d} {int(row['num_false_positives']):5d} "
                f"{int(row['num_misses']):5d} {seconds:8.3f}"
            )
    if runs and not args.quick:
        ranked = sorted(totals, key=lambda i: -float(np.mean(totals[i])))
        results["grid_best_on_average"] = [
            {**_settings(*grid_settings[i]), "mean_mota_plus_idf1": float(np.mean(totals[i]))}
            for i in ranked[:10]
        ]
        default_index = next(
            (i for i, (c, t) in enumerate(grid_settings) if c == defaults and t == 0.25), None
        )
        if default_index is not None:
            results["defaults_mean_mota_plus_idf1"] = float(np.mean(totals[default_index]))
        print("best settings on average over models (MOTA + IDF1):")
        for entry in results["grid_best_on_average"][:5]:
            print("  ", entry)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "tracking.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
