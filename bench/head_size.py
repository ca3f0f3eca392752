"""How small can a head be before the head classifier's verdicts stop being reliable?

The head classifier's thresholds were calibrated for 95 % precision per crop on held-out training
photos, whose heads are mostly 20-60 px wide. On PETS09 (bench/ppe_clips), where heads are
8-15 px, it called a third of bare-head person-seconds compliant: a verdict on a head too small
to see is false assurance. This bench measures where the verdicts break, without touching the
evaluation photos or PETS09.

Data: the quarter of ``training/hard_hat_workers_extra`` the shipped classifier never saw (the
same draw as ``bench.ppe_compliance --data heldout``), its labelled heads (``helmet`` -> hard hat,
``head`` -> bare), minus heads in mirror-padded bands. For each head of labelled side ``L``
(longer side) and each simulated side ``S < L``, the whole photo is downscaled by ``S / L`` with
area averaging (a camera with fewer pixels on the head), the head box scaled with it, and the
product's own :meth:`HeadClassifier.classify` (``crop_heads``: context square, edge padding,
upscaling to the model's input as at run time) and :meth:`HeadClassifier.verdicts` give the
verdict, with the example site's ``head_thresholds`` over the model's calibrated ones. Heads
natively smaller than ``S`` are left out at ``S`` (upscaling them would not simulate anything);
``native`` is every head at its own size.

Two head boxes: the labelled one (as the verifier uses a PPE model's head box) and the run-time
estimate from the example detector's person box (``head_from_person``), for heads matched to a
detected person. ``--jpeg Q`` re-encodes each downscaled photo at JPEG quality ``Q`` (a stress
case: a compressed stream blurs a small head further than averaging does).

Per ``S``: hard-hat and bare calls' precision and recall, the share of bare heads called hard hat
(false assurance, which unlike precision does not depend on the mix of hats and bare heads), and
the share without a verdict; once over every head larger than ``S``, once over the same heads
(natively above 24 px) at every side. A per-crop figure: a person's verdict also needs votes
over frames (bench/ppe_compliance), so it is more precise than a crop's.
Run: ``python -m bench.head_size [--sizes 6,8,...] [--jpeg 30]``; JSON in
``bench/results/head_size[_jpegQ].json``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bench._common import require_asset, write_results
from bench.padding import detect_padding
from bench.ppe_compliance import (
    DATASETS,
    SITE,
    Setup,
    heldout_photos,
    load_setup,
    load_truth,
    match_heads,
)
from safewatch.domain import Frame, PPEState
from safewatch.track.head_check import HeadClassifier, head_classifier_file
from safewatch.track.head_crops import head_from_person

__all__ = ["main", "rates"]

SIZES = (6, 8, 10, 12, 14, 16, 20, 24, 32)
"""Simulated head sides (pixels)."""
NATIVE = 0
"""Key of a head's call at its own size."""
FIXED = 24
"""The fixed-population table keeps only heads natively larger than this, so every side up to it
is measured on the same heads (the main table's population shrinks as the side grows)."""
CALLS = {PPEState.PRESENT: "hat", PPEState.ABSENT: "bare"}


def rates(truths: Sequence[str], calls: Sequence[str | None]) -> dict[str, Any]:
    """Precision / recall of ``hat`` and ``bare`` calls and the no-verdict share.

    ``truths``: ``hat`` / ``bare`` per head; ``calls``: ``hat`` / ``bare`` / ``None`` (no
    verdict). A precision with no call, or a recall with no such head, is ``None``."""
    t = np.asarray(truths, object)
    c = np.asarray(calls, object)
    out: dict[str, Any] = {"heads": len(t)}
    for name in ("hat", "bare"):
        called = c == name
        right = called & (t == name)
        out[f"{name}_precision"] = round(right.sum() / called.sum(), 3) if called.any() else None
        truth = t == name
        out[f"{name}_recall"] = round(right.sum() / truth.sum(), 3) if truth.any() else None
        out[f"{name}_calls"] = int(called.sum())
        out[f"{name}_wrong"] = int(called.sum() - right.sum())
    # Precision depends on the mix (73 % hats here, none on PETS09); the share of bare heads
    # called hard hat (false assurance) and of hats called bare (false alarm) do not.
    bare, hat = t == "bare", t == "hat"
    out["bare_called_hat"] = round(float(np.mean(c[bare] == "hat")), 3) if bare.any() else None
    out["hat_called_bare"] = round(float(np.mean(c[hat] == "bare")), 3) if hat.any() else None
    out["no_verdict"] = round(float(np.mean([x is None for x in c])), 3) if len(c) else None
    return out


def _call(answer: tuple[PPEState, float] | None) -> str | None:
    return None if answer is None else CALLS[answer[0]]


def _sides_summary(sides: Sequence[float], truths: Sequence[str]) -> dict[str, Any]:
    """Percentiles and histogram of the labelled heads' sides (pixels)."""
    q = np.percentile(sides, [5, 10, 25, 50, 75, 90, 95]) if len(sides) else np.zeros(7)
    edges = [0, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 10_000]
    counts = np.histogram(sides, bins=edges)[0]
    names = ("p5", "p10", "p25", "p50", "p75", "p90", "p95")
    return {
        "percentiles": dict(zip(names, [round(float(v), 1) for v in q], strict=True)),
        "histogram": {
            f"{lo}-{hi}" if hi < 10_000 else f">={lo}": int(n)
            for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True)
        },
        "by_truth": {t: sum(1 for x in truths if x == t) for t in ("hat", "bare")},
    }


def _tables(
    sizes: Sequence[int],
    sides: Sequence[float],
    truths: Sequence[str],
    calls: Sequence[dict[int, str | None] | None],
) -> dict[str, Any]:
    """The size table and the fixed-population one for one kind of head box (``calls[i]`` is
    ``None`` for a head that kind gives no box, e.g. no detected person)."""
    rows = [(x, t, c) for x, t, c in zip(sides, truths, calls, strict=True) if c is not None]
    big = [(x, t, c) for x, t, c in rows if x > FIXED]
    return {
        "native": rates([t for _, t, _ in rows], [c[NATIVE] for _, _, c in rows]),
        "sizes": {str(s): _at(s, rows) for s in sizes},
        "fixed_heads": {
            "note": f"only heads natively larger than {FIXED} px, at each side up to {FIXED}",
            "native": rates([t for _, t, _ in big], [c[NATIVE] for _, _, c in big]),
            "sizes": {str(s): _at(s, big) for s in sizes if s <= FIXED},
        },
    }


def _at(size: int, rows: Sequence[tuple[float, str, dict[int, str | None]]]) -> dict[str, Any]:
    """:func:`rates` at one simulated side, over the heads natively larger than it."""
    kept = [(t, c[size]) for _, t, c in rows if size in c]
    return rates([t for t, _ in kept], [c for _, c in kept])


def measure(sizes: Sequence[int], jpeg: int | None = None) -> dict[str, Any]:
    """Classify every held-out labelled head natively and at each simulated side, in two boxes.

    ``label``: the labelled head box (as the verifier uses a PPE model's head box). ``person``:
    the run-time estimate from the person box (``head_from_person``) of the example site's
    detector, for heads matched one-to-one to a detected person (``bench.ppe_compliance``'s
    rule); both scaled with the photo. ``jpeg``: also re-encode each downscaled photo at this
    JPEG quality, as a compressed camera stream degrades small heads further."""
    site, detector = load_setup(Setup("example"))
    tracker = site.config.tracker
    if not tracker.head_classifier:
        raise SystemExit(f"{SITE} enables no head classifier")
    thresholds = {str(k): v for k, v in tracker.head_thresholds.items()}
    classifier = HeadClassifier(
        head_classifier_file(tracker.head_classifier, site.base_dir), thresholds=thresholds
    )
    folder, classes = DATASETS["heldout"]
    dataset = require_asset(folder)
    paths = sorted(p for p in (dataset / "images").iterdir() if p.suffix in {".png", ".jpg"})
    paths = [paths[i] for i in heldout_photos(len(paths))]
    sides: list[float] = []
    truths: list[str] = []
    by_box: dict[str, list[dict[int, str | None] | None]] = {"label": [], "person": []}
    for index, path in enumerate(paths):
        read = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if read is None:
            raise SystemExit(f"cannot read {path}")
        image: NDArray[np.uint8] = np.asarray(read, np.uint8)
        height, width = image.shape[:2]
        heads, labels = load_truth(dataset / "labels" / f"{path.stem}.txt", height, width, classes)
        padding = detect_padding(image)
        keep = ~padding.covers(heads)
        heads = heads[keep]
        labels = [t for t, k in zip(labels, keep, strict=True) if k]
        found = detector.detect([Frame("heldout", index, 0.0, 0.0, image)])[0]
        persons = found.xyxy[found.label == "person"].astype(np.float64).reshape(-1, 4)
        tops = np.stack([(persons[:, 0] + persons[:, 2]) / 2, persons[:, 1]], axis=1)
        persons = persons[~padding.covers(np.concatenate([tops, tops], axis=1))]
        estimated = dict(match_heads(heads, persons))
        for i, (box, truth) in enumerate(zip(heads, labels, strict=True)):
            side = float(max(box[2] - box[0], box[3] - box[1]))
            sides.append(side)
            truths.append(truth)
            boxes = {"label": box}
            if i in estimated:
                boxes["person"] = head_from_person(persons[estimated[i]])[0]
            kinds = list(boxes)
            stacked = np.stack([boxes[k] for k in kinds])
            head_calls: dict[str, dict[int, str | None]] = {k: {} for k in kinds}
            for s in (NATIVE, *sizes):
                if s != NATIVE and side <= s:
                    continue
                scale = 1.0 if s == NATIVE else s / side
                w, h = max(round(width * scale), 1), max(round(height * scale), 1)
                small = np.asarray(
                    cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA), np.uint8
                )
                if jpeg is not None:
                    _, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, jpeg])
                    small = np.asarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR), np.uint8)
                scaled = stacked * np.array([w / width, h / height, w / width, h / height])
                answers = classifier.verdicts(classifier.classify(small, scaled))
                for kind, answer in zip(kinds, answers, strict=True):
                    head_calls[kind][s] = _call(answer)
            for kind, column in by_box.items():
                column.append(head_calls.get(kind))
    return {
        "dataset": f"{folder} (held-out quarter, {len(paths)} photos)",
        "thresholds": classifier.thresholds,
        "head_sides": _sides_summary(sides, truths),
        "boxes": {kind: _tables(sizes, sides, truths, column) for kind, column in by_box.items()},
    }


def wilson_upper(right: int, total: int, z: float = 1.96) -> float:
    """Upper end of the 95 % Wilson interval of a proportion (a precision "clearly below" 0.95
    has this below 0.95, not just the point estimate: a call more or less must not decide)."""
    p = right / total
    centre = p + z * z / (2 * total)
    spread = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return float((centre + spread) / (1 + z * z / total))


def smallest_reliable(
    table: dict[str, Any], floor: float = 0.95, clearly: bool = False
) -> int | None:
    """The smallest simulated side from which every larger one keeps hard-hat and bare precision
    at ``floor`` or above (``clearly``: not clearly below it, i.e. its Wilson upper bound at
    ``floor`` or above); a side with no call of a class passes. ``None``: the largest fails."""
    chosen: int | None = None
    for s in sorted(table["sizes"], key=int, reverse=True):
        r = table["sizes"][s]
        for n in ("hat", "bare"):
            calls, wrong = r[f"{n}_calls"], r[f"{n}_wrong"]
            if not calls:
                continue
            value = wilson_upper(calls - wrong, calls) if clearly else (calls - wrong) / calls
            if value < floor:
                return chosen
        chosen = int(s)
    return chosen


def _table(title: str, rows: Sequence[tuple[str, dict[str, Any]]]) -> None:
    print(title)
    print(
        f"{'side':>6} {'heads':>5} {'hat P':>6} {'hat R':>6} {'bare P':>6} {'bare R':>6} "
        f"{'none':>5} {'bare->hat':>9} {'hat->bare':>9}  wrong/calls hat, bare"
    )
    for s, r in rows:
        print(
            f"{s:>6} {r['heads']:>5} {r['hat_precision']!s:>6} {r['hat_recall']!s:>6} "
            f"{r['bare_precision']!s:>6} {r['bare_recall']!s:>6} {r['no_verdict']!s:>5} "
            f"{r['bare_called_hat']!s:>9} {r['hat_called_bare']!s:>9}  "
            f"{r['hat_wrong']}/{r['hat_calls']}, {r['bare_wrong']}/{r['bare_calls']}"
        )


def _print(result: dict[str, Any]) -> None:
    print(result["dataset"], "thresholds", result["thresholds"])
    print("labelled head sides (px):", result["head_sides"])
    for kind, table in result["boxes"].items():
        print(f"\n== head box: {kind}")
        _table(
            "every head natively larger than the side:",
            [*table["sizes"].items(), ("native", table["native"])],
        )
        fixed = table["fixed_heads"]
        _table(fixed["note"] + ":", [*fixed["sizes"].items(), ("native", fixed["native"])])
        print(
            "smallest side from which hat and bare precision >= 0.95: "
            f"{table['smallest_reliable']} px (not clearly below 0.95, Wilson upper bound: "
            f"{table['smallest_not_clearly_below']} px)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table, write ``bench/results/head_size.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="simulated head sides, comma-separated"
    )
    parser.add_argument(
        "--jpeg",
        type=int,
        help="re-encode each downscaled photo at this JPEG quality (e.g. 30: a compressed stream)",
    )
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    load = os.getloadavg()
    start = time.perf_counter()
    result = measure(sizes, args.jpeg)
    result["jpeg"] = args.jpeg
    for table in result["boxes"].values():
        table["smallest_reliable"] = smallest_reliable(table)
        table["smallest_not_clearly_below"] = smallest_reliable(table, clearly=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["load_before"] = [round(x, 2) for x in load]
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    _print(result)
    print(f"load {result['load_before']} -> {result['load_after']}, {result['seconds']} s")
    name = "head_size" if args.jpeg is None else f"head_size_jpeg{args.jpeg}"
    print(f"wrote {write_results(name, result)}")


if __name__ == "__main__":
    main()
