"""Cut the head classifier's training crops from labelled photos (step 1 of 2).

Runs in the project's own environment (it uses safewatch's detector and head geometry, so the crops
are exactly what the runtime verifier will cut). For each photo of a YOLO-labelled folder
(``0 helmet``, ``1 head`` = bare head, ``2 person``, as in ``hard_hat_workers_extra``):

- *box crops*: every labelled head box, as is and with a few random shifts and scalings
  (``--jitter``), as the verifier cuts around a PPE model's head box;
- *person crops*: the COCO person detector's boxes (yolox_nano, confidence >= 0.1), matched
  one-to-one to labelled heads with the same rule as ``bench/ppe_compliance``; each matched person
  gives a crop at the head position estimated from the person box alone, labelled with its head's
  class; a person matched to no head gives a ``not_visible`` crop (its head is hidden, cut off, or
  merely unlabelled, which is the label noise this class absorbs);
- *background crops*: random squares that overlap no labelled head, also ``not_visible``.

Heads and persons whose centre lies in a mirror-padded band are skipped (upside-down copies).
Prints the measured head geometry (head width / person width, head centre depth / person height)
that :mod:`safewatch.track.head_crops` uses. Writes ``crops.npz`` (uint8 crops, labels, groups =
photo index for a grouped split).

Run: ``.venv/bin/python -m training.head_classifier.extract --data DIR --out crops.npz``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from bench.padding import detect_padding
from bench.ppe_compliance import match_heads
from numpy.typing import NDArray

from safewatch.config.site import ModelConfig
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.domain import Frame
from safewatch.track.head_crops import crop_heads, head_from_person

CLASSES = ("hardhat", "bare", "not_visible")
"""Classifier outputs, in order."""
DATA_CLASSES = {0: 0, 1: 1}
"""Label file class -> classifier class (``2 person`` is not a head)."""
SIZE = 48
"""Default crop side (pixels): about a median head's context square in a 416 px photo (30 px head x
:data:`~safewatch.track.head_crops.CONTEXT`), so most crops are cut near their native resolution."""
PERSON_MODEL = Path(__file__).resolve().parents[3] / "shared/assets/models/yolox_nano_coco.onnx"


def read_labels(
    path: Path, height: int, width: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Head boxes (pixels) and classifier classes of one label file."""
    rows = np.loadtxt(path, ndmin=2) if path.exists() and path.stat().st_size else np.zeros((0, 5))
    rows = rows[np.isin(rows[:, 0].astype(int), list(DATA_CLASSES))]
    cx, cy = rows[:, 1] * width, rows[:, 2] * height
    w, h = rows[:, 3] * width, rows[:, 4] * height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).reshape(-1, 4)
    return boxes, np.asarray([DATA_CLASSES[int(c)] for c in rows[:, 0]], np.int64)


def jittered(box: NDArray[np.float64], rng: np.random.Generator, n: int) -> NDArray[np.float64]:
    """``n`` copies of a head box shifted by up to 15 % and scaled by 0.8-1.25."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    out = []
    for _ in range(n):
        s = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        dx, dy = rng.uniform(-0.15, 0.15, 2) * (w, h)
        cx, cy = (x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy
        out.append([cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2])
    return np.asarray(out, np.float64).reshape(-1, 4)


def wobbled(persons: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
    """Person boxes with each edge moved by up to 6 % of the box's size.

    The run-time head estimate follows the person box, and a detector's box of the same person
    moves from frame to frame and model to model; training on a few such boxes per person teaches
    the classifier heads a little off the crop's centre, as it will see them.
    """
    p = persons.reshape(-1, 4)
    size = np.stack([p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]] * 2, axis=1)
    return p + rng.uniform(-0.06, 0.06, p.shape) * size


def main() -> None:
    """Cut every crop of ``--data`` and write them to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="folder with images/ and labels/ (repeat to pool several sets; photos are numbered "
        "in the order given, each folder's photos sorted by name)",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jitter", type=int, default=3, help="jittered copies per head box")
    parser.add_argument("--background", type=int, default=2, help="background crops per photo")
    parser.add_argument(
        "--person-jitter",
        type=int,
        default=0,
        help="extra wobbled copies per person crop (2 measured worse on held-out photos, DATA.md)",
    )
    parser.add_argument("--size", type=int, default=SIZE, help="crop side in pixels")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    detector = OnnxDetector(
        ModelConfig(
            path=str(PERSON_MODEL), format="yolox", labels={"person": "person"}, confidence=0.1
        ),
        PERSON_MODEL,
        "persons",
    )
    crops: list[NDArray[np.float32]] = []
    labels: list[int] = []
    kinds: list[str] = []
    groups: list[int] = []
    ratios: list[tuple[float, float]] = []
    paths = [
        p
        for folder in args.data
        for p in sorted((folder / "images").iterdir())
        if p.suffix in {".jpg", ".png"}
    ]
    for index, path in enumerate(paths):
        read = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if read is None:
            continue
        image: NDArray[np.uint8] = np.asarray(read, np.uint8)
        height, width = image.shape[:2]
        label_file = path.parent.parent / "labels" / f"{path.stem}.txt"
        heads, classes = read_labels(label_file, height, width)
        padding = detect_padding(image)
        keep = ~padding.covers(heads)
        heads, classes = heads[keep], classes[keep]

        def add(
            boxes: NDArray[np.float64],
            cls: list[int],
            kind: str,
            image: NDArray[np.uint8] = image,
            index: int = index,
        ) -> None:
            if len(boxes):
                crops.append(crop_heads(image, boxes, args.size))
                labels.extend(cls)
                kinds.extend([kind] * len(boxes))
                groups.extend([index] * len(boxes))

        for box, cls in zip(heads, classes, strict=True):
            add(
                np.concatenate([box[None], jittered(box, rng, args.jitter)]),
                [int(cls)] * (1 + args.jitter),
                "box",
            )

        frame = Frame("train", index, 0.0, 0.0, np.asarray(image, np.uint8))
        det = detector.detect([frame])[0]
        persons = det.xyxy[det.label == "person"].astype(np.float64)
        tops = np.stack([(persons[:, 0] + persons[:, 2]) / 2, persons[:, 1]], axis=1)
        persons = persons[~padding.covers(np.concatenate([tops, tops], axis=1))]
        pairs = match_heads(heads, persons)
        matched = {p for _, p in pairs}
        for h, p in pairs:
            pw, ph = persons[p, 2] - persons[p, 0], persons[p, 3] - persons[p, 1]
            hw = heads[h, 2] - heads[h, 0]
            hcy = (heads[h, 1] + heads[h, 3]) / 2
            ratios.append((hw / pw, (hcy - persons[p, 1]) / ph))
        lone = [p for p in range(len(persons)) if p not in matched]
        chosen = [p for _, p in pairs] + lone
        truth = [int(classes[h]) for h, _ in pairs] + [2] * len(lone)
        add(head_from_person(persons[chosen]), truth, "person")
        for _ in range(args.person_jitter):
            add(head_from_person(wobbled(persons[chosen], rng)), truth, "person")

        backgrounds = []
        for _ in range(20 * args.background):
            side = float(rng.uniform(15, 90))
            x, y = rng.uniform(0, width - side), rng.uniform(0, height - side)
            box = np.array([x, y, x + side, y + side])
            big = np.concatenate([heads[:, :2] - 10, heads[:, 2:] + 10], axis=1)
            clear = np.all(
                (box[2] < big[:, 0])
                | (box[0] > big[:, 2])
                | (box[3] < big[:, 1])
                | (box[1] > big[:, 3])
            )
            if clear and not padding.covers(box[None])[0]:
                backgrounds.append(box)
            if len(backgrounds) == args.background:
                break
        add(
            np.asarray(backgrounds, np.float64).reshape(-1, 4), [2] * len(backgrounds), "background"
        )

    stacked = np.concatenate(crops) if crops else np.zeros((0, args.size, args.size, 3), np.float32)
    r = np.asarray(ratios)
    if len(r):
        for name, column in (("head width / person width", 0), ("head depth / height", 1)):
            q25, q50, q75 = np.percentile(r[:, column], [25, 50, 75])
            print(f"{name}: median {q50:.3f} (quartiles {q25:.3f} / {q75:.3f})")
    lab = np.asarray(labels)
    kind = np.asarray(kinds)
    for k in ("box", "person", "background"):
        counts = [int(np.sum((lab == c) & (kind == k))) for c in range(len(CLASSES))]
        print(f"{k:10} " + "  ".join(f"{n}={c}" for n, c in zip(CLASSES, counts, strict=True)))
    np.savez_compressed(
        args.out,
        crops=np.round(stacked * 255).astype(np.uint8),
        labels=lab,
        kinds=kind,
        groups=np.asarray(groups),
        classes=np.asarray(CLASSES),
    )
    print(f"wrote {len(lab)} crops from {len(paths)} photos to {args.out}")


if __name__ == "__main__":
    main()
