"""Detection accuracy: AP50 of hard hat / no hard hat on the Hard Hat Workers images.

Every image of ``images/hard_hat_workers`` (221 photos, YOLO labels: 0 ``helmet``, 2 ``head`` = a
bare head) goes through safewatch's own :class:`~safewatch.detect.OnnxDetector` with
``ppe14_yolov8n.onnx`` at 640, mapped with a site ``labels:`` map (``Hardhat -> hardhat``,
``NO-Hardhat -> no_hardhat``) at a low confidence threshold, so the figure checks the whole
detector path (letterbox, decoding, NMS, mapping back to pixels, label map), not just the model.

AP50 is computed here with NumPy, VOC style: detections of a class sorted by confidence over all
images, each matched to the unmatched ground-truth box it overlaps most if IoU >= 0.5 (else a false
positive), and the precision-recall curve integrated with all-point interpolation (the area under
the monotone precision envelope). The model card quotes Hardhat AP50 of about 0.87.

More accuracy sections plug in without editing this file: a module listed in ``SECTION_MODULES``
that defines ``accuracy_section(quick: bool) -> dict`` (for instance ``bench/tracking.py`` for
MOTA/IDF1) is run after the detection section and its result is stored under its short name.

Run: ``python -m bench.accuracy [--conf 0.01] [--nms-iou 0.45] [--only detection]``; JSON goes
to ``bench/results/accuracy.json``.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bench._common import require_asset, write_results
from safewatch.config.site import ModelConfig
from safewatch.detect import OnnxDetector
from safewatch.detect.nms import box_iou
from safewatch.domain import Detections, Frame

__all__ = [
    "SECTION_MODULES",
    "ClassResult",
    "average_precision",
    "evaluate_class",
    "main",
]

DATASET = "images/hard_hat_workers"
MODEL = "models/ppe14_yolov8n.onnx"
CLASSES = {0: "hardhat", 2: "no_hardhat"}
"""Dataset class id -> site label it is scored as."""
LABEL_MAP = {"Hardhat": "hardhat", "NO-Hardhat": "no_hardhat"}
SECTION_MODULES: tuple[str, ...] = ("bench.tracking",)
"""Modules whose ``accuracy_section(quick)`` adds a section to this bench (when defined)."""

Section = Callable[[bool], Mapping[str, Any]]


@dataclass(frozen=True)
class ClassResult:
    """Scores of one class over the whole image set."""

    label: str
    ground_truth: int
    detections: int
    ap50: float
    recall_at_max: float
    precision_at_025: float
    recall_at_025: float


def average_precision(recall: NDArray[np.float64], precision: NDArray[np.float64]) -> float:
    """Area under the precision-recall curve with VOC all-point interpolation.

    Precision is replaced by its running maximum from the right (the envelope), then summed over
    every step where recall increases.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def evaluate_class(
    label: str,
    detections: Sequence[Detections],
    truths: Sequence[NDArray[np.float64]],
    iou_threshold: float = 0.5,
) -> ClassResult:
    """AP of ``label``: ``detections[i]`` and ``truths[i]`` (``(G, 4)`` xyxy) are image ``i``."""
    images: list[NDArray[np.intp]] = []
    scores: list[NDArray[np.float32]] = []
    boxes: list[NDArray[np.float32]] = []
    for i, det in enumerate(detections):
        mine = det[det.label == label]
        images.append(np.full(len(mine), i, np.intp))
        scores.append(mine.confidence)
        boxes.append(mine.xyxy)
    image_of = np.concatenate(images) if images else np.zeros(0, np.intp)
    score = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    box = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    order = np.argsort(-score, kind="stable")
    matched = [np.zeros(len(t), bool) for t in truths]
    tp = np.zeros(len(order), bool)
    for rank, d in enumerate(order):
        gt = truths[image_of[d]]
        if not len(gt):
            continue
        iou = box_iou(box[d : d + 1], gt)[0]
        iou[matched[image_of[d]]] = -1.0
        best = int(np.argmax(iou))
        if iou[best] >= iou_threshold:
            tp[rank] = True
            matched[image_of[d]][best] = True
    n_gt = sum(len(t) for t in truths)
    ctp = np.cumsum(tp)
    recall = ctp / max(n_gt, 1)
    precision = ctp / np.arange(1, len(tp) + 1)
    at = int(np.searchsorted(-score[order], -0.25, side="right"))  # detections >= 0.25
    return ClassResult(
        label=label,
        ground_truth=n_gt,
        detections=len(order),
        ap50=average_precision(recall, precision) if n_gt else float("nan"),
        recall_at_max=float(recall[-1]) if len(recall) else 0.0,
        precision_at_025=float(precision[at - 1]) if at else 0.0,
        recall_at_025=float(recall[at - 1]) if at else 0.0,
    )


def load_truths(
    labels_dir: Path, stem: str, height: int, width: int
) -> dict[str, NDArray[np.float64]]:
    """Ground-truth boxes of one image in pixels, by site label."""
    path = labels_dir / f"{stem}.txt"
    rows = np.loadtxt(path, ndmin=2) if path.exists() and path.stat().st_size else np.zeros((0, 5))
    out: dict[str, NDArray[np.float64]] = {}
    for cls, label in CLASSES.items():
        r = rows[rows[:, 0] == cls, 1:]
        cx, cy, w, h = r[:, 0] * width, r[:, 1] * height, r[:, 2] * width, r[:, 3] * height
        out[label] = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return out


def detection_section(conf: float, nms_iou: float, size: int, batch: int) -> dict[str, Any]:
    """Run the PPE model over the whole set and score each class."""
    dataset = require_asset(DATASET)
    config = ModelConfig(
        path=MODEL, labels=LABEL_MAP, confidence=conf, nms_iou=nms_iou, input_size=size
    )
    detector = OnnxDetector(config, require_asset(MODEL), "ppe14")
    paths = sorted((dataset / "images").glob("*.png"))
    frames = []
    for i, p in enumerate(paths):
        image = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {p}")
        frames.append(Frame("bench", i, 0.0, 0.0, np.asarray(image, np.uint8)))
    truths = [
        load_truths(dataset / "labels", p.stem, f.height, f.width)
        for p, f in zip(paths, frames, strict=True)
    ]
    start = time.perf_counter()
    detections: list[Detections] = []
    for i in range(0, len(frames), batch):
        detections.extend(detector.detect(frames[i : i + batch]))
    seconds = time.perf_counter() - start
    results = [
        evaluate_class(label, detections, [t[label] for t in truths]) for label in CLASSES.values()
    ]
    return {
        "model": Path(MODEL).name,
        "images": len(frames),
        "input_size": size,
        "confidence": conf,
        "nms_iou": nms_iou,
        "iou_threshold": 0.5,
        "interpolation": "VOC all-point",
        "ms_per_image": 1000 * seconds / max(len(frames), 1),
        "classes": {r.label: asdict(r) for r in results},
        "map50": float(np.mean([r.ap50 for r in results])),
    }


def extra_sections(quick: bool) -> dict[str, Any]:
    """Run every ``accuracy_section`` hook found in ``SECTION_MODULES``."""
    found: dict[str, Any] = {}
    for name in SECTION_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        hook: Section | None = getattr(module, "accuracy_section", None)
        if hook is not None:
            found[name.rsplit(".", 1)[-1]] = dict(hook(quick))
    return found


def main(argv: Sequence[str] | None = None) -> None:
    """Score detection (and any plugged-in sections), print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conf", type=float, default=0.01, help="detector confidence floor")
    parser.add_argument("--nms-iou", type=float, default=0.45, help="NMS IoU (site default)")
    parser.add_argument("--size", type=int, default=640, help="network input size")
    parser.add_argument("--batch", type=int, default=4, help="frames per detect() call")
    parser.add_argument("--only", choices=["detection"], help="skip the plugged-in sections")
    parser.add_argument("--quick", action="store_true", help="passed to plugged-in sections")
    args = parser.parse_args(argv)
    detection = detection_section(args.conf, args.nms_iou, args.size, args.batch)
    print(
        f"AP50 on {detection['images']} Hard Hat Workers images, {detection['model']} at "
        f"{detection['input_size']}, conf >= {args.conf}, NMS IoU {args.nms_iou} "
        f"({detection['ms_per_image']:.1f} ms/image)"
    )
    print(f"{'label':12} {'GT':>5} {'dets':>6} {'AP50':>6} {'R@max':>6} {'P@.25':>6} {'R@.25':>6}")
    for row in detection["classes"].values():
        print(
            f"{row['label']:12} {row['ground_truth']:5d} {row['detections']:6d} "
            f"{row['ap50']:6.3f} {row['recall_at_max']:6.3f} {row['precision_at_025']:6.3f} "
            f"{row['recall_at_025']:6.3f}"
        )
    print(f"{'mAP50':12} {'':5} {'':6} {detection['map50']:6.3f}")
    results: dict[str, Any] = {"detection": detection}
    if args.only is None:
        results.update(extra_sections(args.quick))
    print(f"wrote {write_results('accuracy', results)}")


if __name__ == "__main__":
    main()
