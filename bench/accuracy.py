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

Why the raw figure is lower than the card, and the padding-aware figure next to it: 220 of the
221 images were fitted into their 416x416 square by *mirroring* the photo's edges (see
:mod:`bench.padding`; about 31% of the pixels are mirrored bands), and the labels were carried into
those bands: 194 of the 780 helmets are upside-down or left-right mirror images of real helmets. A
detector that has only seen upright people rightly misses most of them, so the raw AP50 (all
labels, unchanged) mixes the detector's accuracy with an augmentation artefact. The padding-aware
AP50 treats the mirrored bands as *ignore regions*, as VOC does with ``difficult`` boxes and COCO
with crowds: a ground-truth box whose centre lies in a band counts neither as a hit nor as a miss;
a detection whose centre lies there, or that matches (IoU >= threshold) only such an ignored box,
counts neither as a true nor as a false positive. Both are reported, with AP at IoU 0.4 and 0.5:
the labels' helmet boxes include much of the face and are taller than the model's (the median
height ratio of matched label/detection boxes is reported), which costs some matches at 0.5.

A cross-check runs an independent minimal YOLOv8 implementation (:mod:`bench.reference_yolov8`)
over the same images and scores it the same way; its AP must agree with the detector's within
0.01. ``--sweep`` scores the test-time settings a site can change (NMS IoU 0.45 / 0.7, input
640 / 832) the same way; every row is reported. ``--conf`` is the floor of the precision-recall
curve, not a site setting: about half the bare heads get no ``NO-Hardhat`` box scoring 0.01, so the
no_hardhat AP rises markedly at ``--conf 0.001`` (Ultralytics' validation default); Hardhat
barely moves.

More accuracy sections plug in without editing this file: a module listed in ``SECTION_MODULES``
that defines ``accuracy_section(quick: bool) -> dict`` (for instance ``bench/tracking.py`` for
MOTA/IDF1) is run after the detection section and its result is stored under its short name.

Run: ``python -m bench.accuracy [--conf 0.01] [--nms-iou 0.45] [--sweep] [--no-cross-check]
[--only detection] [--model F]``; JSON goes to ``bench/results/accuracy.json``. ``--model``
scores another file of the same model, e.g. the INT8 copy ``safewatch models quantize`` makes.
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
from bench.padding import Padding, detect_padding
from bench.reference_yolov8 import ReferenceYolov8, model_classes
from safewatch.config.site import ModelConfig
from safewatch.detect import OnnxDetector
from safewatch.detect.nms import box_iou
from safewatch.domain import Detections, Frame

__all__ = [
    "SECTION_MODULES",
    "BoxRatio",
    "ClassResult",
    "Dataset",
    "Matching",
    "average_precision",
    "box_ratio",
    "evaluate_class",
    "load_dataset",
    "main",
    "match_class",
]

DATASET = "images/hard_hat_workers"
MODEL = "models/ppe14_yolov8n.onnx"
CLASSES = {0: "hardhat", 2: "no_hardhat"}
"""Dataset class id -> site label it is scored as."""
LABEL_MAP = {"Hardhat": "hardhat", "NO-Hardhat": "no_hardhat"}
IOU_THRESHOLDS = (0.4, 0.5)
"""IoU thresholds AP is reported at (0.5 is the headline AP50)."""
RATIO_IOU = 0.1
"""Loose IoU at which label and detection boxes are paired to compare their shapes."""
RATIO_CONF = 0.25
"""Only detections at least this confident (the site default) are paired for box shapes."""
CROSS_CHECK_TOLERANCE = 0.01
"""Largest AP difference allowed between the detector and the reference implementation."""
SWEEP = ((0.45, 640), (0.7, 640), (0.45, 832), (0.7, 832))
"""``(nms_iou, input_size)`` settings scored by ``--sweep``."""
SECTION_MODULES: tuple[str, ...] = ("bench.tracking",)
"""Modules whose ``accuracy_section(quick)`` adds a section to this bench (when defined)."""

Section = Callable[[bool], Mapping[str, Any]]


@dataclass(frozen=True)
class ClassResult:
    """Scores of one class over the whole image set.

    ``ignored_truths`` and ``ignored_detections`` are 0 for the raw evaluation; with ignore
    regions they count what was left out (see the module doc).
    """

    label: str
    ground_truth: int
    detections: int
    ap50: float
    recall_at_max: float
    precision_at_025: float
    recall_at_025: float
    ignored_truths: int = 0
    ignored_detections: int = 0


@dataclass(frozen=True)
class Matching:
    """Detections of one class matched to ground truth, most confident first.

    Ignored detections are left out of every array.

    Attributes:
        score: ``(D,)`` confidences, descending.
        tp: ``(D,)`` whether each detection is a true positive.
        det_xyxy: ``(D, 4)`` detection boxes.
        gt_xyxy: ``(D, 4)`` the ground-truth box each true positive matched (NaN otherwise).
        ground_truth: Ground-truth boxes that count (not ignored).
        ignored_truths: Ground-truth boxes ignored.
        ignored_detections: Detections ignored.
    """

    score: NDArray[np.float32]
    tp: NDArray[np.bool_]
    det_xyxy: NDArray[np.float64]
    gt_xyxy: NDArray[np.float64]
    ground_truth: int
    ignored_truths: int
    ignored_detections: int


@dataclass(frozen=True)
class BoxRatio:
    """Median label/detection box size ratio over loosely matched pairs of one class."""

    label: str
    pairs: int
    height: float
    width: float


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


def match_class(
    label: str,
    detections: Sequence[Detections],
    truths: Sequence[NDArray[np.float64]],
    iou_threshold: float = 0.5,
    padding: Sequence[Padding] | None = None,
) -> Matching:
    """Greedily match ``label``'s detections, most confident first, to ground truth.

    ``detections[i]`` and ``truths[i]`` (``(G, 4)`` xyxy) are image ``i``. A detection is a true
    positive when its best IoU with a not yet matched, counted ground-truth box is at least
    ``iou_threshold``; that box is then taken. With ``padding`` (one per image), ground-truth
    boxes and detections whose centre lies in the padding are ignored, and so is a detection that
    is not a true positive but reaches ``iou_threshold`` with an ignored box (VOC ``difficult``).
    """
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
    ignored_gt = [
        padding[i].covers(t) if padding is not None else np.zeros(len(t), bool)
        for i, t in enumerate(truths)
    ]
    taken = [ig.copy() for ig in ignored_gt]  # ignored boxes can never be matched as hits
    keep = np.ones(len(order), bool)
    tp = np.zeros(len(order), bool)
    gt_of = np.full((len(order), 4), np.nan)
    for rank, d in enumerate(order):
        i = int(image_of[d])
        if padding is not None and padding[i].covers(box[d : d + 1])[0]:
            keep[rank] = False
            continue
        gt = truths[i]
        if not len(gt):
            continue
        iou = box_iou(box[d : d + 1], gt)[0]
        free = np.where(taken[i], -1.0, iou)
        best = int(np.argmax(free))
        if free[best] >= iou_threshold:
            tp[rank] = True
            taken[i][best] = True
            gt_of[rank] = gt[best]
        elif np.any(iou[ignored_gt[i]] >= iou_threshold):
            keep[rank] = False
    n_ignored = int(sum(int(ig.sum()) for ig in ignored_gt))
    return Matching(
        score=score[order][keep],
        tp=tp[keep],
        det_xyxy=np.asarray(box[order][keep], np.float64),
        gt_xyxy=gt_of[keep],
        ground_truth=sum(len(t) for t in truths) - n_ignored,
        ignored_truths=n_ignored,
        ignored_detections=int((~keep).sum()),
    )


def evaluate_class(
    label: str,
    detections: Sequence[Detections],
    truths: Sequence[NDArray[np.float64]],
    iou_threshold: float = 0.5,
    padding: Sequence[Padding] | None = None,
) -> ClassResult:
    """AP of ``label`` (see :func:`match_class` for the arguments and the ignore rule)."""
    m = match_class(label, detections, truths, iou_threshold, padding)
    n_gt = m.ground_truth
    ctp = np.cumsum(m.tp)
    recall = ctp / max(n_gt, 1)
    precision = ctp / np.arange(1, len(m.tp) + 1)
    at = int(np.searchsorted(-m.score, -0.25, side="right"))  # detections >= 0.25
    return ClassResult(
        label=label,
        ground_truth=n_gt,
        detections=len(m.score),
        ap50=average_precision(recall, precision) if n_gt else float("nan"),
        recall_at_max=float(recall[-1]) if len(recall) else 0.0,
        precision_at_025=float(precision[at - 1]) if at else 0.0,
        recall_at_025=float(recall[at - 1]) if at else 0.0,
        ignored_truths=m.ignored_truths,
        ignored_detections=m.ignored_detections,
    )


def box_ratio(
    label: str,
    detections: Sequence[Detections],
    truths: Sequence[NDArray[np.float64]],
    padding: Sequence[Padding] | None = None,
) -> BoxRatio:
    """Median label/detection height and width over pairs matched at IoU >= :data:`RATIO_IOU`.

    Only detections scoring at least :data:`RATIO_CONF` are paired, so the figure describes the
    boxes a site would act on. A ratio above 1 means the labels are larger than the detections.
    """
    confident = [d[d.confidence >= RATIO_CONF] for d in detections]
    m = match_class(label, confident, truths, RATIO_IOU, padding)
    gt, det = m.gt_xyxy[m.tp], m.det_xyxy[m.tp]
    if not len(gt):
        return BoxRatio(label, 0, float("nan"), float("nan"))
    height = (gt[:, 3] - gt[:, 1]) / np.maximum(det[:, 3] - det[:, 1], 1e-6)
    width = (gt[:, 2] - gt[:, 0]) / np.maximum(det[:, 2] - det[:, 0], 1e-6)
    return BoxRatio(label, len(gt), float(np.median(height)), float(np.median(width)))


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


@dataclass(frozen=True)
class Dataset:
    """The image set with its labels and detected mirror padding, one entry per image."""

    paths: list[Path]
    frames: list[Frame]
    truths: list[dict[str, NDArray[np.float64]]]
    padding: list[Padding]

    def label_truths(self, label: str) -> list[NDArray[np.float64]]:
        """Ground-truth boxes of one label, per image."""
        return [t[label] for t in self.truths]


def load_dataset() -> Dataset:
    """Read every image and label file and find each image's mirror padding."""
    dataset = require_asset(DATASET)
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
    padding = [detect_padding(f.image) for f in frames]
    return Dataset(paths, frames, truths, padding)


def model_file(model: Path | None) -> Path:
    """The model scored: ``--model`` (e.g. an INT8 copy of ppe14), else the shared ppe14."""
    return model if model is not None else require_asset(MODEL)


def run_detector(
    data: Dataset, conf: float, nms_iou: float, size: int, batch: int, model: Path | None = None
) -> tuple[list[Detections], float]:
    """safewatch's detector over every image; returns the detections and ms per image."""
    config = ModelConfig(
        path=MODEL, labels=LABEL_MAP, confidence=conf, nms_iou=nms_iou, input_size=size
    )
    detector = OnnxDetector(config, model_file(model), "ppe14")
    start = time.perf_counter()
    detections: list[Detections] = []
    for i in range(0, len(data.frames), batch):
        detections.extend(detector.detect(data.frames[i : i + batch]))
    return detections, 1000 * (time.perf_counter() - start) / max(len(data.frames), 1)


def run_reference(
    data: Dataset, conf: float, nms_iou: float, size: int, model: Path | None = None
) -> list[Detections]:
    """The independent implementation of :mod:`bench.reference_yolov8` over every image."""
    path = str(model_file(model))
    index = model_classes(path)
    reference = ReferenceYolov8(
        path, size, {index[name]: label for name, label in LABEL_MAP.items()}, conf, nms_iou
    )
    return [reference(f.image) for f in data.frames]


def score(data: Dataset, detections: Sequence[Detections]) -> dict[str, Any]:
    """Raw and padding-aware AP of every class at every IoU threshold, and box-shape ratios."""
    out: dict[str, Any] = {"raw": {}, "padding_aware": {}, "box_ratio": {}}
    for label in CLASSES.values():
        truths = data.label_truths(label)
        for key, padding in (("raw", None), ("padding_aware", data.padding)):
            out[key][label] = {
                f"{iou:.1f}": asdict(evaluate_class(label, detections, truths, iou, padding))
                for iou in IOU_THRESHOLDS
            }
        out["box_ratio"][label] = asdict(box_ratio(label, detections, truths, data.padding))
    for key in ("raw", "padding_aware"):
        out[key]["map50"] = float(np.mean([out[key][c]["0.5"]["ap50"] for c in CLASSES.values()]))
    return out


def padding_summary(data: Dataset) -> dict[str, Any]:
    """How many images are padded and how many labels lie in the padding."""
    return {
        "images_padded": sum(p.any for p in data.padding),
        "mean_padded_fraction": float(np.mean([p.padded_fraction for p in data.padding])),
        "truths_in_padding": {
            label: int(
                sum(
                    p.covers(t[label]).sum() for p, t in zip(data.padding, data.truths, strict=True)
                )
            )
            for label in CLASSES.values()
        },
        "truths": {
            label: int(sum(len(t[label]) for t in data.truths)) for label in CLASSES.values()
        },
    }


def cross_check(
    data: Dataset,
    ours: Sequence[Detections],
    conf: float,
    nms_iou: float,
    size: int,
    model: Path | None = None,
) -> dict[str, Any]:
    """Score the reference implementation and compare it with the detector's figures."""
    theirs = run_reference(data, conf, nms_iou, size, model)
    mine, ref = score(data, ours), score(data, theirs)
    diffs = {
        f"{key}/{label}/{iou:.1f}": abs(
            mine[key][label][f"{iou:.1f}"]["ap50"] - ref[key][label][f"{iou:.1f}"]["ap50"]
        )
        for key in ("raw", "padding_aware")
        for label in CLASSES.values()
        for iou in IOU_THRESHOLDS
    }
    same = twins = 0
    for a, b in zip(ours, theirs, strict=True):
        same += len(a)
        if len(a) and len(b):
            iou = box_iou(a.xyxy, b.xyxy)
            iou[a.label[:, None] != b.label[None, :]] = 0.0
            twins += int((iou.max(axis=1) >= 0.99).sum())
    return {
        "reference": "bench/reference_yolov8.py",
        "reference_ap": {
            key: {label: ref[key][label]["0.5"]["ap50"] for label in CLASSES.values()}
            for key in ("raw", "padding_aware")
        },
        "max_ap_difference": max(diffs.values()),
        "tolerance": CROSS_CHECK_TOLERANCE,
        "agrees": max(diffs.values()) <= CROSS_CHECK_TOLERANCE,
        "detections": {"safewatch": same, "reference": sum(len(d) for d in theirs)},
        "safewatch_boxes_with_reference_twin": twins / max(same, 1),
    }


def sweep(
    data: Dataset,
    conf: float,
    batch: int,
    done: Mapping[tuple[float, int], Any],
    model: Path | None = None,
) -> list[dict[str, Any]]:
    """AP (raw and padding-aware) for each test-time setting in :data:`SWEEP`.

    ``done`` maps ``(nms_iou, input_size)`` to ``(detections, ms_per_image)`` already computed.
    """
    rows = []
    for nms_iou, size in SWEEP:
        key = (nms_iou, size)
        detections, ms = done[key] if key in done else run_detector(data, conf, *key, batch, model)
        s = score(data, detections)
        rows.append(
            {
                "nms_iou": nms_iou,
                "input_size": size,
                "ms_per_image": ms,
                **{
                    f"{key}_{label}_ap{iou * 100:.0f}": s[key][label][f"{iou:.1f}"]["ap50"]
                    for key in ("raw", "padding_aware")
                    for label in CLASSES.values()
                    for iou in IOU_THRESHOLDS
                },
            }
        )
    return rows


def detection_section(
    conf: float,
    nms_iou: float,
    size: int,
    batch: int,
    *,
    check: bool = True,
    settings: bool = False,
    model: Path | None = None,
) -> dict[str, Any]:
    """Run the PPE model over the whole set and score each class, raw and padding-aware."""
    data = load_dataset()
    detections, ms = run_detector(data, conf, nms_iou, size, batch, model)
    scored = score(data, detections)
    section: dict[str, Any] = {
        "model": model_file(model).name,
        "images": len(data.frames),
        "input_size": size,
        "confidence": conf,
        "nms_iou": nms_iou,
        "iou_threshold": 0.5,
        "interpolation": "VOC all-point",
        "ms_per_image": ms,
        "classes": {label: scored["raw"][label]["0.5"] for label in CLASSES.values()},
        "map50": scored["raw"]["map50"],
        "padding": padding_summary(data),
        "padding_aware": {
            "classes": {label: scored["padding_aware"][label]["0.5"] for label in CLASSES.values()},
            "map50": scored["padding_aware"]["map50"],
        },
        "ap_by_iou": {
            key: {
                label: {iou: row["ap50"] for iou, row in scored[key][label].items()}
                for label in CLASSES.values()
            }
            for key in ("raw", "padding_aware")
        },
        "box_ratio": scored["box_ratio"],
    }
    if check:
        section["cross_check"] = cross_check(data, detections, conf, nms_iou, size, model)
    if settings:
        section["settings"] = sweep(data, conf, batch, {(nms_iou, size): (detections, ms)}, model)
    return section


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


def _print_table(title: str, classes: Mapping[str, Mapping[str, Any]], map50: float) -> None:
    print(title)
    print(
        f"{'label':12} {'GT':>5} {'ignGT':>5} {'dets':>6} {'ignD':>5} {'AP50':>6} {'R@max':>6} "
        f"{'P@.25':>6} {'R@.25':>6}"
    )
    for row in classes.values():
        print(
            f"{row['label']:12} {row['ground_truth']:5d} {row['ignored_truths']:5d} "
            f"{row['detections']:6d} {row['ignored_detections']:5d} {row['ap50']:6.3f} "
            f"{row['recall_at_max']:6.3f} {row['precision_at_025']:6.3f} "
            f"{row['recall_at_025']:6.3f}"
        )
    print(f"{'mAP50':12} {'':5} {'':5} {'':6} {'':5} {map50:6.3f}")


def report(detection: Mapping[str, Any], conf: float) -> None:
    """Print the detection section."""
    pad = detection["padding"]
    print(
        f"AP on {detection['images']} Hard Hat Workers images, {detection['model']} at "
        f"{detection['input_size']}, conf >= {conf}, NMS IoU {detection['nms_iou']} "
        f"({detection['ms_per_image']:.1f} ms/image)"
    )
    print(
        f"{pad['images_padded']} images have mirror-padded borders "
        f"({pad['mean_padded_fraction']:.0%} of the pixels); labels inside them (mirrored copies): "
        + ", ".join(f"{k} {v}/{pad['truths'][k]}" for k, v in pad["truths_in_padding"].items())
    )
    _print_table("raw (every label counts):", detection["classes"], detection["map50"])
    aware = detection["padding_aware"]
    _print_table(
        "padding-aware (labels and detections centred in mirrored borders ignored):",
        aware["classes"],
        aware["map50"],
    )
    for key, by_label in detection["ap_by_iou"].items():
        print(
            f"AP by IoU, {key}: "
            + "; ".join(
                f"{label} " + " ".join(f"@{iou} {ap:.3f}" for iou, ap in aps.items())
                for label, aps in by_label.items()
            )
        )
    print(
        f"label/detection box ratio (median over pairs at IoU >= {RATIO_IOU}, conf >= "
        f"{RATIO_CONF}, padding-aware): "
        + "; ".join(
            f"{r['label']} height {r['height']:.2f} width {r['width']:.2f} ({r['pairs']} pairs)"
            for r in detection["box_ratio"].values()
        )
    )
    check = detection.get("cross_check")
    if check is not None:
        print(
            f"cross-check vs {check['reference']}: max AP difference "
            f"{check['max_ap_difference']:.4f} (tolerance {check['tolerance']}) -> "
            f"{'agrees' if check['agrees'] else 'DISAGREES'}; "
            f"{check['safewatch_boxes_with_reference_twin']:.1%} of safewatch's boxes have a twin"
        )
    for row in detection.get("settings", []):
        print(
            f"nms_iou {row['nms_iou']:.2f} input {row['input_size']}: hardhat AP50 raw "
            f"{row['raw_hardhat_ap50']:.3f} aware {row['padding_aware_hardhat_ap50']:.3f}, "
            f"no_hardhat raw {row['raw_no_hardhat_ap50']:.3f} aware "
            f"{row['padding_aware_no_hardhat_ap50']:.3f} ({row['ms_per_image']:.0f} ms/image)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    """Score detection (and any plugged-in sections), print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conf", type=float, default=0.01, help="detector confidence floor")
    parser.add_argument("--nms-iou", type=float, default=0.45, help="NMS IoU (site default)")
    parser.add_argument("--size", type=int, default=640, help="network input size")
    parser.add_argument("--batch", type=int, default=4, help="frames per detect() call")
    parser.add_argument(
        "--no-cross-check", action="store_true", help="skip the reference implementation"
    )
    parser.add_argument("--sweep", action="store_true", help="also score NMS IoU x input size")
    parser.add_argument("--only", choices=["detection"], help="skip the plugged-in sections")
    parser.add_argument("--quick", action="store_true", help="passed to plugged-in sections")
    parser.add_argument(
        "--model", type=Path, help="score this ppe14 file instead (e.g. `models quantize` output)"
    )
    args = parser.parse_args(argv)
    detection = detection_section(
        args.conf,
        args.nms_iou,
        args.size,
        args.batch,
        check=not args.no_cross_check,
        settings=args.sweep,
        model=args.model,
    )
    report(detection, args.conf)
    results: dict[str, Any] = {"detection": detection}
    if args.only is None:
        results.update(extra_sections(args.quick))
    print(f"wrote {write_results('accuracy', results)}")
    check = detection.get("cross_check")
    if check is not None and not check["agrees"]:
        raise SystemExit("the detector and the reference implementation disagree (see above)")


if __name__ == "__main__":
    main()
