"""Pack the head detector's training photos into one file (step 1 of 2).

Runs in the project's own environment (it uses the mirror-padding detector of ``bench.padding``).
For each photo of a YOLO-labelled folder (``0 helmet``, ``1 head`` = bare head, ``2 person``, as in
``hard_hat_workers_extra``) it keeps the original picture inside any mirror-padded bands (most of
these photos were fitted into 416x416 by mirroring their edges, with the labels copied into the
mirrored, upside-down copies: neither a head to learn nor a background to learn) and its head
boxes, and numbers the photos in sorted order, as ``bench.ppe_compliance`` and the head
classifier's scripts do, so ``train.py`` holds out the same quarter of them (written in the file,
as ``train.py`` runs without safewatch).

Writes ``photos.npz``: ``pixels`` (all photos' BGR bytes, concatenated), ``shapes`` (``N x 3``),
``boxes`` (``M x 4`` pixels in the kept picture), ``classes`` (``M``: 0 hard hat, 1 bare),
``owner`` (``M``: photo number of each box), ``heldout`` (the photo numbers ``train.py`` never
trains on: ``bench.ppe_compliance.heldout_photos``, the head classifier's held-out quarter).

Run: ``.venv/bin/python -m training.head_detector.extract --data DIR --out photos.npz``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from bench.padding import detect_padding
from bench.ppe_compliance import heldout_photos

from training.head_classifier.extract import read_labels


def main() -> None:
    """Read every photo of ``--data`` and write the packed file to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with images/, labels/")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    paths = sorted(p for p in (args.data / "images").iterdir() if p.suffix in {".jpg", ".png"})
    pixels: list[bytes] = []
    shapes: list[tuple[int, int, int]] = []
    boxes: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    for index, path in enumerate(paths):
        read = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if read is None:
            raise SystemExit(f"{path}: not a readable image")
        image = np.ascontiguousarray(read, np.uint8)
        heads, labels = read_labels(
            path.parent.parent / "labels" / f"{path.stem}.txt", *image.shape[:2]
        )
        padding = detect_padding(image)
        keep = ~padding.covers(heads)
        x1, y1, x2, y2 = padding.content
        kept = np.ascontiguousarray(image[y1:y2, x1:x2])
        moved = heads[keep] - np.array([x1, y1, x1, y1], np.float64)
        moved[:, [0, 2]] = moved[:, [0, 2]].clip(0, x2 - x1)
        moved[:, [1, 3]] = moved[:, [1, 3]].clip(0, y2 - y1)
        pixels.append(kept.tobytes())
        shapes.append(kept.shape)  # type: ignore[arg-type]
        boxes.append(moved.astype(np.float32))
        classes.append(labels[keep])
        owner.append(np.full(int(keep.sum()), index, np.int64))
    np.savez_compressed(
        args.out,
        pixels=np.frombuffer(b"".join(pixels), np.uint8),
        shapes=np.asarray(shapes, np.int64),
        boxes=np.concatenate(boxes).reshape(-1, 4),
        classes=np.concatenate(classes),
        owner=np.concatenate(owner),
        heldout=heldout_photos(len(paths)),
    )
    counts = np.bincount(np.concatenate(classes), minlength=2)
    print(f"{len(paths)} photos, {counts[0]} hard hats, {counts[1]} bare heads -> {args.out}")


if __name__ == "__main__":
    main()
