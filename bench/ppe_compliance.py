"""Per-person PPE compliance: does safewatch call each labelled worker's hard hat right?

The figure a safety officer cares about is not AP but "of the people without a hard hat, how many
did it flag, and how often was a flag wrong". This bench runs the product's own path (the site
file's detectors, the camera's :class:`~safewatch.track.CameraTracker` with PPE voting, and the head
verifier when the site enables it) over the labelled photos of ``images/hard_hat_workers`` and
scores one verdict per labelled person: *violation* (hard hat voted absent), *compliant* (present)
or *unknown* (no verdict, including persons no detector found).

How a still photo becomes a run: it is played as a static clip of ``ppe_window + 2`` identical
frames at the camera's fps (detected once; the detector is deterministic), so a track can start
(``min_frames``) and its vote window fill. The verdicts are read after the last frame.

Ground truth: the photos label heads, not persons (``helmet`` = hard hat, ``head`` = bare head;
``person`` is almost never labelled), so each labelled head *is* one person, and its class is
the truth. Detected persons are given to labelled heads one-to-one: a head may go to a person box
when the head's centre lies horizontally inside the person box widened by 15 % of its width on
each side, and vertically between 15 % of the box height above its top edge and 55 % of the
height below it (head boxes from head mode sit fully in that band). Among those pairs a minimum-cost
assignment (Hungarian, :func:`scipy.optimize.linear_sum_assignment`) minimises the distance from
the head's centre to the person's expected head point (top centre, 10 % down), in person heights.
The matching is the bench's own, deliberately independent of the product's PPE association.

Head subjects: a track whose box is a head rather than a person box (head mode, head-first tracks
of ``tracker.head_tracks``, face-first tracks of ``tracker.face_subjects``) would be misjudged by
the person gate (a head box's "head point" is near its top, and a face-derived head box sits
higher and is smaller than the labelled head: over 671 faces of every second training photo, its
side is a median 0.6 of the labelled head's longer side and its centre 0.31 of its own side above
the labelled head's). So they are matched after the person boxes, to the labelled heads no person
took, by their own rule: a head subject may take a labelled head when the subject box's centre
lies inside the labelled head box grown by 10 % of its width and height on each side (659 of 671
faces inside the box itself, 667 with the 10 %); among those pairs a minimum-cost assignment
minimises the distance between the two centres over the labelled head's longer side. A correct
face-derived violation so counts as a hit and a wrong one as a false violation; a head subject
that takes no labelled head counts as an extra person (so a second subject on a worker whose
person box already took the head, e.g. a face outside the box's estimated head, is a false call
when it says bare). Person boxes are scored exactly as before (matched first, by the unchanged
rule): the example setup's figures did not move on the held-out photos; on the evaluation photos
one head-mode subject on a hard hat went from extra to compliant.

Mirror padding: most photos were fitted into 416x416 by mirroring their edges, with the labels
copied into the mirrored bands (see :mod:`bench.padding`). Labelled heads whose centre lies in a
band are ignored, and so are detected persons whose head point lies there.

Scores: the confusion matrix (truth bare / hat x verdict violation / compliant / unknown, unknown
split into *missed* = no person matched, *untracked* = detected only below the track-start
threshold, and *unknown* = tracked without a verdict; a weak person box holding a head-sized
subject in its upper half, a head-first or face-first track, is that subject's person and not
listed again); violation precision = true violations
/ all violations called on unignored persons, including violations on persons matched to no
labelled head (*extra*, e.g. an unlabelled or a phantom person); violation recall = true
violations / bare heads; unknown rate = unknown / labelled persons.

The setups are the example site (``examples/site.yaml``: yolox_nano for persons + ppe14 int8 at
320 px for PPE, default thresholds, head verification as the site sets it), the same without head
verification (PPE boxes only), with yolov8n for persons (at 640 and 832 px), with the fp32 ppe14
at 640 px (the example site before it moved to catalogue models), with low-score person tracks,
head-first tracks (``tracker.head_tracks``), face-first subjects (``tracker.face_subjects``;
``face_subjects_crowd`` also makes faces behind a tracked worker's box, outside its head region,
subjects and calls them bare only from 0.9, as chosen on held-out training photos) and 2x2
tiling. ``cpu_ms_per_frame`` is the process CPU of one analysed frame (the detectors on the photo
plus one tracker update), per photo. Never tune on these photos: they are the evaluation set
(``training/hard_hat_workers_extra`` is for training and calibration).

CPU (``--cpu``): the example clip at the camera's 5 fps through the example setup, timing in one
run, frame by frame, the detectors and tracker without head verification (the baseline), the head
verification (the same tracker with the verifier, minus the one without) and hiding heads with
the site's privacy settings (``blur``, and the face detector of ``privacy.faces``) as if every
analysed frame were evidence (an upper bound: only stills and clip frames are hidden). Process
CPU time, not wall time, so the other load on a shared machine does not enter the ratio; the
extra cost is reported as a share of the baseline.

Calibration (``--data train``): settings such as ``--tracker 'head_thresholds={"bare": 0.6}'``
or ``--model 'ppe.label_confidence={"no_hardhat": 0.1}'`` are chosen on the training photos,
``../shared/assets/training/hard_hat_workers_extra`` (479 Hard Hat Workers photos, none among the
evaluation photos; public domain / CC0, doi:10.7910/DVN/7CBGOS, each file's origin and hash in its
``sources.csv``), keeping the setting with the highest violation recall at precision >= 0.95
there; only the chosen setting is then run once on the evaluation photos. The head classifier
was trained on three quarters of the training photos, so figures there are optimistic;
``--data heldout`` scores only the other quarter (119 photos it never saw), the place to compare
head classifiers (``--head-classifier x.onnx``) and the settings that depend on them.

Run: ``python -m bench.ppe_compliance [--setup example] [--limit N] [--cpu]``; JSON goes to
``bench/results/ppe_compliance.json`` (``--name X``: ``ppe_compliance[_train]_X.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from bench._common import ROOT, require_asset, write_results
from bench.padding import Padding, detect_padding
from safewatch.config.loader import LoadedSite, load_site
from safewatch.config.runtime import TilingConfig
from safewatch.config.site import ModelConfig
from safewatch.detect import Detector, build_detector
from safewatch.detect.catalogue import resolve, resolve_video
from safewatch.domain import Detections, Frame, PPEState, TrackedFrame
from safewatch.pipeline.stages import build_tracker

__all__ = [
    "Outcome",
    "PersonVerdict",
    "Setup",
    "main",
    "match_head_subjects",
    "match_heads",
    "score",
]

DATASET = "images/hard_hat_workers"
SITE = ROOT / "examples" / "site.yaml"
ITEM = "hardhat"
TRUTH_CLASSES = {0: "hat", 2: "bare"}
"""Dataset class id -> truth (``1`` = person is not a head and is skipped)."""
DATASETS = {
    "eval": (DATASET, TRUTH_CLASSES),
    "train": ("training/hard_hat_workers_extra", {0: "hat", 1: "bare"}),
    "heldout": ("training/hard_hat_workers_extra", {0: "hat", 1: "bare"}),
}
"""``--data`` choices: the evaluation photos, or the training photos (for calibrating settings;
the head classifier was trained on three quarters of them, so its figures there are optimistic),
or only the quarter of the training photos the head classifier never saw (``heldout``: an honest
figure for choosing between head classifiers or settings without touching the evaluation set)."""


def heldout_photos(count: int) -> NDArray[np.intp]:
    """Indices (into the sorted photo list) of the training photos the head classifier held out.

    The same draw as ``training/head_classifier/train.py`` (a quarter of the photos, seed 0; its
    crop groups are these indices because ``extract.py`` numbers the photos in the same order).
    """
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(np.arange(count), size=count // 4, replace=False))


VERDICTS = ("violation", "compliant", "unknown", "untracked")
"""``unknown``: a track with no verdict; ``untracked``: a person detected only below the
track-start threshold (no track, so no verdict). Both count as unknown in the unknown rate."""
_X_MARGIN = 0.15
_Y_ABOVE = 0.15
_Y_BELOW = 0.55
_HEAD_POINT = 0.10
_HEAD_GROW = 0.10


@dataclass(frozen=True)
class PersonVerdict:
    """One detected person (or head-mode track) and the verdict safewatch reached on it."""

    xyxy: tuple[float, float, float, float]
    verdict: str
    head: bool = False
    """The box is a head (head mode, head-first or face-first track), not a person box: it is
    matched to labelled heads by the head-subject rule (module doc)."""


@dataclass(frozen=True)
class Setup:
    """A model setup to score: the example site with some models swapped."""

    name: str
    models: dict[str, str] = field(default_factory=dict)
    """Model key -> replacement asset path (relative to the shared assets)."""
    formats: dict[str, str] = field(default_factory=dict)
    tracker: dict[str, Any] = field(default_factory=dict)
    """Overrides of the site's ``tracker:`` settings."""
    model_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Model key -> overrides of its ``models:`` settings (``input_size``, ``label_confidence``)."""
    tiling: dict[str, Any] | None = None
    """The camera's ``tiling:`` block (``None``: none)."""
    added_models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Model key -> ``models:`` settings of a model the camera runs besides the site's own."""


SETUPS = (
    Setup("example"),
    Setup("example_ppe_boxes_only", tracker={"head_classifier": None}),
    Setup("yolov8n_persons", {"coco": "models/yolov8n_coco.onnx"}, {"coco": "yolov8"}),
    Setup("ppe14_fp32_640", {"ppe": "models/ppe14_yolov8n.onnx"}),
    Setup("low_score_tracks", tracker={"low_score_tracks": 0.3}),
    Setup("head_tracks", tracker={"head_tracks": 0.3}),
    Setup("head_and_low_tracks", tracker={"head_tracks": 0.3, "low_score_tracks": 0.3}),
    Setup(
        "yolov8n_persons_832",
        {"coco": "models/yolov8n_coco.onnx"},
        {"coco": "yolov8"},
        model_settings={"coco": {"input_size": 832}},
    ),
    Setup(
        "yolov8n_persons_832_head_tracks",
        {"coco": "models/yolov8n_coco.onnx"},
        {"coco": "yolov8"},
        tracker={"head_tracks": 0.3},
        model_settings={"coco": {"input_size": 832}},
    ),
    Setup("face_subjects", tracker={"face_subjects": "yunet"}),
    Setup(
        "face_subjects_crowd",
        tracker={"face_subjects": "yunet", "face_cover": "head", "face_thresholds": {"bare": 0.9}},
    ),
    Setup("tiled_2x2", tiling={"columns": 2, "rows": 2}),
    Setup("tiled_2x2_head_tracks", tracker={"head_tracks": 0.3}, tiling={"columns": 2, "rows": 2}),
)


@dataclass
class Outcome:
    """Counts of one setup over the image set."""

    matrix: dict[str, dict[str, int]] = field(
        default_factory=lambda: {
            t: dict.fromkeys((*VERDICTS, "missed"), 0) for t in ("bare", "hat")
        }
    )
    extra: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    ignored_truths: int = 0

    def summary(self) -> dict[str, Any]:
        """Precision, recall, unknown rate and the raw counts."""
        bare, hat = self.matrix["bare"], self.matrix["hat"]
        tp = bare["violation"]
        called = tp + hat["violation"] + self.extra["violation"]
        persons = sum(sum(row.values()) for row in self.matrix.values())
        unknown = sum(
            row["unknown"] + row["untracked"] + row["missed"] for row in self.matrix.values()
        )
        bare_total = sum(bare.values())
        hat_total = sum(hat.values())
        return {
            "persons": persons,
            "bare": bare_total,
            "hat": hat_total,
            "violation_precision": round(tp / called, 4) if called else None,
            "violation_recall": round(tp / bare_total, 4) if bare_total else None,
            "compliant_recall": round(hat["compliant"] / hat_total, 4) if hat_total else None,
            "unknown_rate": round(unknown / persons, 4) if persons else None,
            "missed_rate": round(sum(row["missed"] for row in self.matrix.values()) / persons, 4)
            if persons
            else None,
            "confusion": self.matrix,
            "extra_persons": self.extra,
            "ignored_truths": self.ignored_truths,
        }


def load_truth(
    path: Path, height: int, width: int, classes: dict[int, str] = TRUTH_CLASSES
) -> tuple[NDArray[np.float64], list[str]]:
    """Labelled head boxes (pixels, xyxy) and their truth (``hat`` / ``bare``)."""
    rows = np.loadtxt(path, ndmin=2) if path.exists() and path.stat().st_size else np.zeros((0, 5))
    keep = [i for i, c in enumerate(rows[:, 0]) if int(c) in classes]
    r = rows[keep]
    cx, cy, w, h = r[:, 1] * width, r[:, 2] * height, r[:, 3] * width, r[:, 4] * height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).reshape(-1, 4)
    return boxes, [classes[int(c)] for c in r[:, 0]]


def head_points(persons: NDArray[np.float64]) -> NDArray[np.float64]:
    """Expected head centre of ``(P, 4)`` person boxes: top centre, 10 % of the height down."""
    p = persons.reshape(-1, 4)
    return np.stack([(p[:, 0] + p[:, 2]) / 2, p[:, 1] + _HEAD_POINT * (p[:, 3] - p[:, 1])], axis=1)


def match_heads(heads: NDArray[np.float64], persons: NDArray[np.float64]) -> list[tuple[int, int]]:
    """One-to-one ``(head, person)`` pairs (see the module doc for the gate and the cost)."""
    h = heads.reshape(-1, 4)
    p = persons.reshape(-1, 4)
    if len(h) == 0 or len(p) == 0:
        return []
    hx = ((h[:, 0] + h[:, 2]) / 2)[:, None]
    hy = ((h[:, 1] + h[:, 3]) / 2)[:, None]
    pw = np.maximum(p[:, 2] - p[:, 0], 1e-6)[None, :]
    ph = np.maximum(p[:, 3] - p[:, 1], 1e-6)[None, :]
    inside = (
        (hx >= p[None, :, 0] - _X_MARGIN * pw)
        & (hx <= p[None, :, 2] + _X_MARGIN * pw)
        & (hy >= p[None, :, 1] - _Y_ABOVE * ph)
        & (hy <= p[None, :, 1] + _Y_BELOW * ph)
    )
    points = head_points(p)
    dist = np.hypot(hx - points[None, :, 0], hy - points[None, :, 1]) / ph
    cost = np.where(inside, dist, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if inside[r, c]]


def match_head_subjects(
    heads: NDArray[np.float64], subjects: NDArray[np.float64]
) -> list[tuple[int, int]]:
    """One-to-one ``(head, subject)`` pairs of labelled heads and head-box subjects (module doc:
    the subject's centre inside the labelled head grown by 10 % per side; cost the centre
    distance over the labelled head's longer side)."""
    h = heads.reshape(-1, 4)
    s = subjects.reshape(-1, 4)
    if len(h) == 0 or len(s) == 0:
        return []
    hw = (h[:, 2] - h[:, 0])[:, None]
    hh = (h[:, 3] - h[:, 1])[:, None]
    sx = ((s[:, 0] + s[:, 2]) / 2)[None, :]
    sy = ((s[:, 1] + s[:, 3]) / 2)[None, :]
    inside = (
        (sx >= h[:, 0, None] - _HEAD_GROW * hw)
        & (sx <= h[:, 2, None] + _HEAD_GROW * hw)
        & (sy >= h[:, 1, None] - _HEAD_GROW * hh)
        & (sy <= h[:, 3, None] + _HEAD_GROW * hh)
    )
    hx = (h[:, 0, None] + h[:, 2, None]) / 2
    hy = (h[:, 1, None] + h[:, 3, None]) / 2
    dist = np.hypot(sx - hx, sy - hy) / np.maximum(np.maximum(hw, hh), 1e-6)
    cost = np.where(inside, dist, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if inside[r, c]]


def score(
    outcome: Outcome,
    heads: NDArray[np.float64],
    truths: Sequence[str],
    persons: Sequence[PersonVerdict],
    padding: Padding,
) -> None:
    """Add one image's verdicts to ``outcome`` (person boxes first, then head subjects)."""
    boxes = np.asarray([p.xyxy for p in persons], np.float64).reshape(-1, 4)
    is_head = np.asarray([p.head for p in persons], np.bool_)
    body = np.flatnonzero(~is_head)
    pairs = {h: int(body[b]) for h, b in match_heads(heads, boxes[body])}
    free = np.asarray([i for i in range(len(heads)) if i not in pairs], np.intp)
    subjects = np.flatnonzero(is_head)
    for h, s in match_head_subjects(heads.reshape(-1, 4)[free], boxes[subjects]):
        pairs[int(free[h])] = int(subjects[s])
    ignored_heads = padding.covers(heads)
    points = head_points(boxes)
    # A person box is placed by its head point, a head subject by its centre.
    ignored_persons = padding.covers(
        np.where(is_head[:, None], boxes, np.concatenate([points, points], axis=1))
    )
    matched_persons = set(pairs.values())
    for i, truth in enumerate(truths):
        if ignored_heads[i]:
            outcome.ignored_truths += 1
            continue
        j = pairs.get(i)
        outcome.matrix[truth]["missed" if j is None else persons[j].verdict] += 1
    for j, person in enumerate(persons):
        if j not in matched_persons and not ignored_persons[j]:
            outcome.extra[person.verdict] += 1


_STATE_VERDICT = {
    PPEState.ABSENT: "violation",
    PPEState.PRESENT: "compliant",
    PPEState.UNKNOWN: "unknown",
}


def verdicts_of(tracked: TrackedFrame, detections: Detections) -> list[PersonVerdict]:
    """Every person of the last frame: confirmed tracks with their voted state, and person
    detections no track took (below the track-start threshold), which have no verdict."""
    person_boxes = {
        tuple(float(v) for v in box) for box in detections.xyxy[detections.label == "person"]
    }
    # A person track whose box is no person detection is a head subject (head mode, head-first
    # or face-first track): its box is a head.
    out = [
        PersonVerdict(
            t.xyxy,
            _STATE_VERDICT[t.attributes.get(ITEM, PPEState.UNKNOWN)],
            head=t.xyxy not in person_boxes,
        )
        for t in tracked.tracks
        if t.label == "person"
    ]
    taken = {t.xyxy for t in tracked.tracks}
    # Centres of head-sized subjects (head-first and face-first tracks): a weak person box
    # holding one in its upper half is that subject's person, not a second, verdict-less one.
    subjects = [
        ((t.xyxy[0] + t.xyxy[2]) / 2, (t.xyxy[1] + t.xyxy[3]) / 2)
        for t in tracked.tracks
        if t.label == "person" and t.xyxy not in person_boxes
    ]
    for row in np.flatnonzero(detections.label == "person"):
        box = tuple(float(v) for v in detections.xyxy[row])
        if box in taken:
            continue
        x1, y1, x2, y2 = box
        if any(x1 <= cx <= x2 and y1 <= cy <= (y1 + y2) / 2 for cx, cy in subjects):
            continue
        out.append(PersonVerdict((x1, y1, x2, y2), "untracked"))
    return out


Runner = Callable[[Frame], list[PersonVerdict]]


def product_runner(site: LoadedSite, detector: Detector, cpu: list[float] | None = None) -> Runner:
    """Play a photo as a static clip through the example camera's tracker; read the verdicts.

    ``cpu`` collects, per photo, the process CPU seconds of one analysed frame: the detector run
    and one tracker update (head verification and head-first tracks included)."""
    camera_id, camera = next(iter(site.config.cameras.items()))
    frames = site.config.tracker.ppe_window + 2

    def run(frame: Frame) -> list[PersonVerdict]:
        t0 = time.process_time()
        detections = detector.detect([frame])[0]
        t1 = time.process_time()
        tracker = build_tracker(site, camera_id, camera)
        t2 = time.process_time()
        tracked: TrackedFrame | None = None
        for seq in range(frames):
            t = seq / camera.fps
            still = Frame(camera_id, seq, t, t, frame.image)
            tracked = tracker.update(detections, still)
        t3 = time.process_time()
        assert tracked is not None
        if cpu is not None:
            cpu.append((t1 - t0) + (t3 - t2) / frames)
        return verdicts_of(tracked, detections)

    return run


def _model_file(site: LoadedSite, path: str) -> Path:
    """A model's file: the path as written when it exists, else a catalogue name."""
    direct = site.resolve(path)
    return direct if direct.is_file() else resolve(path, site.base_dir)


def load_setup(setup: Setup) -> tuple[LoadedSite, Detector]:
    """The example site with ``setup``'s model swaps, and its camera's detector."""
    site = load_site(SITE)
    models = dict(site.config.models)
    for key, settings in setup.added_models.items():
        models[key] = ModelConfig(**settings)
    for key, asset in setup.models.items():
        update: dict[str, Any] = {"path": str(require_asset(asset))}
        if key in setup.formats:
            update["format"] = setup.formats[key]
        models[key] = models[key].model_copy(update=update)
    for key, settings in setup.model_settings.items():
        models[key] = models[key].model_copy(update=settings)
    tracker = site.config.tracker.model_copy(update=setup.tracker)
    camera_id, camera = next(iter(site.config.cameras.items()))
    tiling = TilingConfig(**setup.tiling) if setup.tiling is not None else camera.tiling
    camera = camera.model_copy(
        update={"tiling": tiling, "models": [*camera.models, *setup.added_models]}
    )
    config = site.config.model_copy(
        update={"models": models, "tracker": tracker, "cameras": {camera_id: camera}}
    )
    site = replace(site, config=config)
    resolved = {k: (models[k], _model_file(site, models[k].path)) for k in camera.models}
    return site, build_detector(resolved, camera.models, tiling=camera.tiling)


def evaluate(setup: Setup, limit: int | None = None, data: str = "eval") -> dict[str, Any]:
    """Score one setup over the evaluation (or training) photos."""
    folder, classes = DATASETS[data]
    dataset = require_asset(folder)
    site, detector = load_setup(setup)
    cpu: list[float] = []
    runner = product_runner(site, detector, cpu)
    outcome = Outcome()
    paths = sorted(p for p in (dataset / "images").iterdir() if p.suffix in {".png", ".jpg"})
    if data == "heldout":
        paths = [paths[i] for i in heldout_photos(len(paths))]
    paths = paths[:limit]
    start = time.perf_counter()
    for i, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {path}")
        pixels = np.asarray(image, np.uint8)
        frame = Frame("eval", i, 0.0, 0.0, pixels)
        label_file = dataset / "labels" / f"{path.stem}.txt"
        height, width = pixels.shape[:2]
        heads, truths = load_truth(label_file, height, width, classes)
        score(outcome, heads, truths, runner(frame), detect_padding(pixels))
    result = outcome.summary()
    result["cpu_ms_per_frame"] = round(1000 * float(np.mean(cpu)), 1) if cpu else None
    result["images"] = len(paths)
    result["added_models"] = {k: v["path"] for k, v in setup.added_models.items()}
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def cpu_section(
    head_classifier: str | None = None, tracker_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Extra CPU per analysed frame from head verification and blur (see the module doc).

    ``tracker_overrides`` (``--cpu --tracker K=V``): also time, in the same run and frame by
    frame, a third tracker with these settings (e.g. ``face_subjects``) against the verifying
    one, and report its extra CPU as a share of the baseline too."""
    from safewatch.incidents.privacy import anonymise_heads
    from safewatch.ingest import FileSource

    overrides = {"head_classifier": head_classifier} if head_classifier else {}
    site, detector = load_setup(Setup("example", tracker=overrides))
    camera_id, camera = next(iter(site.config.cameras.items()))
    if not site.config.tracker.head_classifier:
        raise SystemExit("the example site has no tracker.head_classifier to time")
    plain_site = replace(
        site,
        config=site.config.model_copy(
            update={"tracker": site.config.tracker.model_copy(update={"head_classifier": None})}
        ),
    )
    verified = build_tracker(site, camera_id, camera)
    plain = build_tracker(plain_site, camera_id, camera)
    variant = None
    if tracker_overrides:
        variant_site = replace(
            site,
            config=site.config.model_copy(
                update={"tracker": site.config.tracker.model_copy(update=tracker_overrides)}
            ),
        )
        variant = build_tracker(variant_site, camera_id, camera)
    privacy = site.config.privacy_for(camera_id)
    clip = resolve_video(str(camera.source), site.base_dir) or site.resolve(str(camera.source))
    source = FileSource(camera_id, clip, fps=camera.fps, threads=1)
    base = verify = blur = extra_variant = 0.0
    frames = persons = 0
    try:
        for frame in source.frames():
            t0 = time.process_time()
            detections = detector.detect([frame])[0]
            t1 = time.process_time()
            plain.update(detections, frame)
            t2 = time.process_time()
            tracked = verified.update(detections, frame)
            t3 = time.process_time()
            if variant is not None:
                t5 = time.process_time()
                variant.update(detections, frame)
                # Its own tracker work minus the verifying tracker's (the same frame's).
                extra_variant += (time.process_time() - t5) - (t3 - t2)
            t3b = time.process_time()
            anonymise_heads(frame.image, tracked, privacy)
            t4 = time.process_time()
            base += t2 - t0
            # The verifying tracker does the plain tracker's work plus the verification.
            verify += (t3 - t2) - (t2 - t1)
            blur += t4 - t3b
            frames += 1
            persons += sum(1 for t in tracked.tracks if t.label == "person")
    finally:
        source.close()
    extra_verify = max(verify, 0.0)
    variant_part: dict[str, Any] = {}
    if variant is not None:
        variant_part = {
            "variant": tracker_overrides,
            "variant_extra_ms_per_frame": round(1000 * extra_variant / max(frames, 1), 2),
            "variant_extra_ratio": round(extra_variant / max(base, 1e-9), 4),
        }
    return {
        "clip": str(clip.name),
        "frames": frames,
        "tracked_persons_per_frame": round(persons / max(frames, 1), 2),
        "baseline_ms_per_frame": round(1000 * base / max(frames, 1), 2),
        "head_verification_ms_per_frame": round(1000 * extra_verify / max(frames, 1), 2),
        "blur_ms_per_frame": round(1000 * blur / max(frames, 1), 2),
        "extra_ratio": round((extra_verify + blur) / max(base, 1e-9), 4),
        **variant_part,
    }


def _print(name: str, r: dict[str, Any]) -> None:
    print(
        f"\n{name}: {r['persons']} persons ({r['bare']} bare, {r['hat']} hat), "
        f"{r['ignored_truths']} heads in mirrored bands ignored, {r['images']} images"
    )
    print(
        f"  violation recall {r['violation_recall']}  precision {r['violation_precision']}  "
        f"unknown {r['unknown_rate']} (missed {r['missed_rate']})  "
        f"compliant recall {r['compliant_recall']}  CPU {r['cpu_ms_per_frame']} ms/frame"
    )
    print(f"  {'truth':6} " + " ".join(f"{v:>10}" for v in (*VERDICTS, "missed")))
    for truth, row in r["confusion"].items():
        print(f"  {truth:6} " + " ".join(f"{row[v]:>10}" for v in (*VERDICTS, "missed")))
    extra = r["extra_persons"]
    print(f"  {'extra':6} " + " ".join(f"{extra[v]:>10}" for v in VERDICTS))


def head_detector_model(path: str) -> dict[str, Any]:
    """``models:`` settings of a head detector (``training/head_detector``'s output layout)."""
    return {
        "path": path,
        "format": "yolov8",
        "labels": {"hardhat": "hardhat", "bare": "no_hardhat"},
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Score every setup (or one) and write ``bench/results/ppe_compliance.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", choices=[s.name for s in SETUPS], help="only this setup")
    parser.add_argument("--limit", type=int, help="only the first N photos (a quick look)")
    parser.add_argument("--head-classifier", help="use this head classifier (name or .onnx)")
    parser.add_argument("--data", choices=sorted(DATASETS), default="eval")
    parser.add_argument(
        "--head-detector",
        help="also run this head detector on the camera (training/head_detector; a catalogue "
        "name or an .onnx path, relative paths read from examples/ as in the site file)",
    )
    parser.add_argument(
        "--tracker",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a tracker setting (calibration on --data train)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="KEY.FIELD=VALUE",
        help='override a model setting, e.g. ppe.label_confidence={"no_hardhat": 0.1}',
    )
    parser.add_argument("--name", help="store the results under this name (with overrides)")
    parser.add_argument("--cpu", action="store_true", help="only the CPU cost on the example clip")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    if args.cpu:
        overrides = {}
        for item in args.tracker:
            key, _, value = item.partition("=")
            overrides[key] = json.loads(value)
        cpu = cpu_section(args.head_classifier, overrides or None)
        print(json.dumps(cpu, indent=2))
        out = write_results("ppe_compliance_cpu", cpu)
        print(f"wrote {out}")
        return
    for listed in SETUPS:
        if args.setup and listed.name != args.setup:
            continue
        setup = listed
        tracker = dict(listed.tracker)
        if args.head_classifier and "head_classifier" not in listed.tracker:
            tracker["head_classifier"] = args.head_classifier
        for item in args.tracker:
            key, _, value = item.partition("=")
            tracker[key] = json.loads(value)
        models = {k: dict(v) for k, v in listed.model_settings.items()}
        for item in args.model:
            key, _, value = item.partition("=")
            model, _, setting = key.partition(".")
            models.setdefault(model, {})[setting] = json.loads(value)
        added = dict(listed.added_models)
        if args.head_detector:
            added["heads"] = head_detector_model(args.head_detector)
        setup = replace(listed, tracker=tracker, model_settings=models, added_models=added)
        if args.name:
            setup = replace(setup, name=args.name)
        results[setup.name] = evaluate(setup, args.limit, args.data)
        _print(setup.name, results[setup.name])
    name = "ppe_compliance" if args.data == "eval" else f"ppe_compliance_{args.data}"
    if args.name:
        name = f"{name}_{args.name}"
    out = write_results(name, {"dataset": DATASETS[args.data][0], "setups": results})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
