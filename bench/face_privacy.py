"""Evidence privacy on labelled photos: are the faces of people no detector found hidden?

Head regions built from the pipeline's boxes (:func:`safewatch.incidents.privacy.head_regions`)
hide only people some detector found. This bench runs the example site's detectors on each
labelled photo, builds the evidence frame's regions without and with the face detector
(``privacy.faces``), and checks every labelled head (each is one person, as in
``bench/ppe_compliance``):

- its *face area*: the middle 60 % of the box's width (a face is narrower than a hat or a head
  with hair); for a bare head (``head``) from 40 % of the box height down to 5 % above its
  bottom (below the hair, above the neck); for a hard hat (``helmet``, a box over the hat and the
  top of the face) from 10 % of its height above its bottom to 0.6 box heights below it (brow to
  chin);
- *hidden* when at least 80 % of that area lies inside the regions;
- *missed* when no detected person is matched to the head (``bench.ppe_compliance.match_heads``);
- for hard hats, whether half or more of the hat's dome (top 0.9 x ``HAT_SHOWN`` of the box) is
  inside a region (*dome hidden*): the hat must stay visible. Labelled and detected hat boxes do
  not align exactly, so a region's edge may cross a labelled dome; half is a hidden hat.

Heads in mirror-padded bands are ignored. The face detector's CPU time per photo is measured
alone (process time, one thread). Ground truth is only read here: nothing is tuned on the
evaluation photos; ``--data train`` (the training photos) is where ``--score`` was chosen.

Run: ``python -m bench.face_privacy [--data eval|train] [--score S] [--limit N]``; JSON goes to
``bench/results/face_privacy[_train].json``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bench._common import require_asset, write_results
from bench.padding import detect_padding
from bench.ppe_compliance import DATASETS, Setup, load_setup, load_truth, match_heads
from safewatch.config.site import PrivacyConfig
from safewatch.domain import Frame, TrackedFrame
from safewatch.incidents.faces import FACE_SCORE, FaceDetector
from safewatch.incidents.privacy import HAT_SHOWN, Box, face_regions, head_regions

__all__ = ["face_area", "main"]

FACE_MODEL = "models/face_detection_yunet_2023mar.onnx"
_HIDDEN = 0.8
_DOME_HIDDEN = 0.5


def face_area(box: NDArray[np.float64], truth: str, height: int) -> tuple[int, int, int, int]:
    """The face pixels of a labelled head (see the module doc), ``x1, y1, x2, y2`` whole pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if truth == "bare":
        top, bottom = y1 + 0.4 * h, y2 - 0.05 * h
    else:
        top, bottom = y2 - 0.1 * h, y2 + 0.6 * h
    left, right = x1 + 0.2 * w, x2 - 0.2 * w
    return int(np.ceil(left)), int(np.ceil(top)), int(np.floor(right)), min(height, int(bottom))


def _mask(regions: Sequence[Box], height: int, width: int) -> NDArray[np.bool_]:
    mask = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in regions:
        mask[y1:y2, x1:x2] = True
    return mask


@dataclass
class Counts:
    """Heads hidden without / with faces, by whether the person detector found the person."""

    heads: dict[str, int] = field(default_factory=lambda: {"found": 0, "missed": 0})
    hidden_before: dict[str, int] = field(default_factory=lambda: {"found": 0, "missed": 0})
    hidden_after: dict[str, int] = field(default_factory=lambda: {"found": 0, "missed": 0})
    hats: int = 0
    hat_domes_hidden_before: int = 0
    hat_domes_hidden_after: int = 0
    faces_found: int = 0
    face_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Shares hidden, dome damage and the face detector's cost."""
        out: dict[str, Any] = {}
        for kind in ("found", "missed"):
            n = self.heads[kind]
            out[kind] = {
                "heads": n,
                "hidden_without_faces": round(self.hidden_before[kind] / n, 4) if n else None,
                "hidden_with_faces": round(self.hidden_after[kind] / n, 4) if n else None,
            }
        ms = np.asarray(self.face_ms or [0.0])
        out["hat_domes_hidden"] = {
            "hats": self.hats,
            "without_faces": self.hat_domes_hidden_before,
            "with_faces": self.hat_domes_hidden_after,
        }
        out["faces_found"] = self.faces_found
        out["face_ms_per_still"] = {
            "mean": round(float(ms.mean()), 2),
            "p95": round(float(np.percentile(ms, 95)), 2),
        }
        return out


def run(data: str, score: float, limit: int | None) -> dict[str, Any]:
    """Score one photo set (see the module doc)."""
    folder, classes = DATASETS[data]
    dataset = require_asset(folder)
    _, detector = load_setup(Setup("example"))
    faces = FaceDetector(require_asset(FACE_MODEL), score=score)
    privacy = PrivacyConfig(mode="blur")
    counts = Counts()
    paths = sorted(p for p in (dataset / "images").iterdir() if p.suffix in {".png", ".jpg"})
    for i, path in enumerate(paths[:limit]):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {path}")
        pixels = np.asarray(image, np.uint8)
        height, width = pixels.shape[:2]
        detections = detector.detect([Frame("eval", i, 0.0, 0.0, pixels)])[0]
        tracked = TrackedFrame("eval", i, 0.0, 0.0, width, height, (), detections)
        before = head_regions(tracked, privacy)
        t0 = time.process_time()
        found = faces.detect(pixels)
        counts.face_ms.append(1000 * (time.process_time() - t0))
        counts.faces_found += len(found)
        after = before + face_regions(found, tracked, privacy)
        mask_before = _mask(before, height, width)
        mask_after = _mask(after, height, width)
        heads, truths = load_truth(dataset / "labels" / f"{path.stem}.txt", height, width, classes)
        persons = detections.xyxy[detections.label == "person"].astype(np.float64)
        matched = {h for h, _ in match_heads(heads, persons)}
        ignored = detect_padding(pixels).covers(heads)
        for h, (box, truth) in enumerate(zip(heads, truths, strict=True)):
            if ignored[h]:
                continue
            kind = "found" if h in matched else "missed"
            x1, y1, x2, y2 = face_area(box, truth, height)
            if x2 - x1 >= 2 and y2 - y1 >= 2:
                counts.heads[kind] += 1
                counts.hidden_before[kind] += int(mask_before[y1:y2, x1:x2].mean() >= _HIDDEN)
                counts.hidden_after[kind] += int(mask_after[y1:y2, x1:x2].mean() >= _HIDDEN)
            if truth == "hat":
                dx1, dy1 = int(np.ceil(box[0])), int(np.ceil(box[1]))
                dx2 = int(np.floor(box[2]))
                dy2 = int(np.floor(box[1] + 0.9 * HAT_SHOWN * (box[3] - box[1])))
                if dx2 > dx1 and dy2 > dy1:
                    counts.hats += 1
                    dome_before = mask_before[dy1:dy2, dx1:dx2].mean()
                    dome_after = mask_after[dy1:dy2, dx1:dx2].mean()
                    counts.hat_domes_hidden_before += int(dome_before >= _DOME_HIDDEN)
                    counts.hat_domes_hidden_after += int(dome_after >= _DOME_HIDDEN)
    result = counts.summary()
    result.update(images=len(paths[:limit]), score=score, dataset=folder)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Print and write the figures of one photo set."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=sorted(DATASETS), default="eval")
    parser.add_argument("--score", type=float, default=FACE_SCORE, help="lowest face score")
    parser.add_argument("--limit", type=int, help="only the first N photos")
    args = parser.parse_args(argv)
    result = run(args.data, args.score, args.limit)
    for kind in ("found", "missed"):
        r = result[kind]
        print(
            f"{kind:7} heads {r['heads']:4}  face hidden: without faces {r['hidden_without_faces']}"
            f"  with faces {r['hidden_with_faces']}"
        )
    print(f"hat domes hidden: {result['hat_domes_hidden']}")
    print(f"face detector: {result['face_ms_per_still']} ms CPU per still")
    name = "face_privacy" if args.data == "eval" else f"face_privacy_{args.data}"
    print(f"wrote {write_results(name, result)}")


if __name__ == "__main__":
    main()
