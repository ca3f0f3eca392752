"""Clip-level PPE check: hard-hat incidents and verdicts against a hand-made timeline.

:mod:`bench.ppe_compliance` scores one verdict per labelled person on still photos; a safety
officer sees something else: the incidents a camera raises over time. This bench plays two
public clips through the product's own file path, as ``safewatch audit`` builds it, with the
example site's PPE setup (``examples/site.yaml``: its detectors, tracker, head verification and
the ``hardhat-required`` rule of ``examples/rules``), and scores what comes out against the
timelines in ``bench/ppe_clip_timelines.json`` (who is in each clip, their head state, and how
that was established):

* **PETS09** (PETS 2009 S2.L1, decoded frames 0-99, the part with MOT ground truth, at the clip's
  own 10 fps so every frame is analysed): six pedestrians, every one bare-headed. Each frame, the
  product's person boxes (reported tracks with their voted ``hardhat`` state, and person
  detections no reported track holds, *untracked*) are matched one-to-one to the ground-truth
  boxes (IoU >= 0.5, Hungarian with weaker pairs ruled out beforehand, as :mod:`bench.tracking`);
  an annotated person no box matches is *missed*. *Untracked* is a person detected below the
  track-start threshold, and also a new track's first frame: the tracker reports a track only
  from its ``min_frames``-th frame (2 in the example), so the frame that starts it shows only a
  detection. Per person: seconds visible, seconds called violation (right), compliant (a wrong
  call), unknown (tracked without a verdict), untracked and missed; whether a hard-hat incident
  was raised on them and how many seconds after they appeared (frame 0 for those already in
  view then). An incident belongs to the person its subject track matched in most of the
  incident's frames; a track that matched nobody during the incident (its box off every
  annotated person then) is given to the person it matched most over its whole life, and only a
  track that never matched anyone counts as matching no person. Totals: person recall (persons
  with an incident / persons), the shares of bare-head person-seconds called violation /
  compliant / unknown, and incidents that match no annotated person.
* **construction** (the example site's own demo clip, at the example camera's 5 fps, as
  ``make audit`` runs it): workers in hard hats, no identity ground truth, so every product person
  counts: hard-hat incidents (each a false alarm) and person-seconds called violation (false),
  compliant or unknown.

The run is :class:`safewatch.pipeline.run.Pipeline` with the stages ``safewatch audit`` gives it
(:func:`~safewatch.pipeline.stages.build_file_run_detectors`,
:func:`~safewatch.pipeline.stages.build_tracker`, the site's rule engine and an
:class:`~safewatch.incidents.IncidentManager` over a throw-away SQLite store), driven directly
rather than through :func:`~safewatch.footage.audit.run_audit` for two reasons: audit reads a
whole file (PETS09 is annotated for 100 of its 795 frames) and it has no hook for the per-frame
tracks the verdicts are read from. Evidence clips are not written (``--no-clips``); they do not
change which incidents open. The PETS09 run is the example camera with its source and fps
replaced; zone rules of the example may fire there too and are ignored (only ``ppe`` incidents
count).

Clock: frames carry the times the product's file source gives them, as in ``safewatch audit``;
the tracker's clock and the rule's ``min_duration`` run on them. Since commit a50c372
(:mod:`safewatch.ingest.picture_clock`) they are right for AVI files too: before, PETS09's AVI
(H.264 with B-frames, packets stamped in decode order) gave times that stepped back 44 times in
these 100 frames (374 in 795), which this bench found; now (the file is also read 8 pictures
ahead at its start) every frame has its exact time, in 0.1 s steps. Each clip's result still
counts the steps back (``clock_backsteps``).

Run: ``python -m bench.ppe_clips [--clip pets09|construction] [--frames N]
[--tracker KEY=VALUE ... --name X]``; JSON goes to ``bench/results/ppe_clips.json`` (with the
machine's load average before and after). ``--tracker`` overrides are validated as the site
loader validates a site file (an unknown key or a setting without its feature is refused), and
``KEY=null`` removes the key. What the PPE boxes alone say (``ppe_clips_ppe_boxes_only.json``)::

    python -m bench.ppe_clips --tracker head_classifier=null --tracker head_thresholds=null \\
        --name ppe_boxes_only

(``head_classifier=null`` alone is refused: the example's ``head_thresholds`` would tune a
classifier that is not there.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from scipy.optimize import linear_sum_assignment

from bench._common import ROOT, require_asset, write_results
from bench.ppe_compliance import _STATE_VERDICT, ITEM, SITE, head_detector_model, verdicts_of
from safewatch.cli.fetch import fetch_site_files
from safewatch.config.loader import LoadedSite, load_site
from safewatch.config.site import ModelConfig, TrackerConfig
from safewatch.detect import Detector
from safewatch.detect.nms import box_iou
from safewatch.domain import Detections, Frame, Incident, PPEState, RuleEvent, TrackedFrame
from safewatch.footage.audit import audit_pipeline
from safewatch.incidents import EvidenceStore, IncidentChange, IncidentManager
from safewatch.ingest import open_source
from safewatch.pipeline.stages import build_file_run_detectors
from safewatch.rules import load_rules
from safewatch.storage import IncidentRepository, create_engine_for

__all__ = [
    "TIMELINES",
    "ClipIncident",
    "Seen",
    "main",
    "match_frame",
    "match_iou",
    "override_tracker",
    "parse_overrides",
    "score_bare_clip",
    "score_hat_clip",
]

TIMELINES = ROOT / "bench" / "ppe_clip_timelines.json"
RULES = ROOT / "examples" / "rules"
MIN_IOU = 0.5
CALLS = ("violation", "compliant", "unknown", "untracked")
"""What a product person box says in one frame (``untracked``: a person detection no reported
track holds, so no verdict: one below the track-start threshold, or the first frame of a new
track, which the tracker reports only from its ``min_frames``-th frame)."""


@dataclass(frozen=True)
class Seen:
    """One person box the product reported in one frame, with its verdict then."""

    xyxy: tuple[float, float, float, float]
    verdict: str
    """One of :data:`CALLS`."""
    track_id: int | None = None
    """``None`` for an untracked person."""


@dataclass(frozen=True)
class ClipIncident:
    """A hard-hat incident in frame indices of the run."""

    track_id: int
    start: int
    """First violating frame (the incident's ``started_at``)."""
    end: int
    """Last violating frame."""
    raised: int
    """The frame at which the incident was opened (stored), after the rule's ``min_duration``:
    when a user would first see it."""


def match_frame(
    truth: Mapping[int, tuple[float, float, float, float]], seen: Sequence[Seen]
) -> dict[int, int]:
    """Ground-truth id -> index into ``seen``: one-to-one, IoU >= :data:`MIN_IOU`, most overlap.

    Pairs below :data:`MIN_IOU` are ruled out *before* the assignment (as
    :func:`bench.tracking.iou_distances` does with NaN): assigning on raw IoU and dropping weak
    pairs afterwards can spend a person on a box it may not take and so lose a valid pair, e.g.
    IoU ``[[0, .112], [.495, .588]]`` would pair 0-1 and 1-0 (total 0.607, both then dropped)
    rather than 1-1 at 0.588.
    """
    if not truth or not seen:
        return {}
    ids = list(truth)
    iou = box_iou(np.asarray([truth[i] for i in ids]), np.asarray([s.xyxy for s in seen]))
    return match_iou(ids, iou)


def match_iou(ids: Sequence[int], iou: np.ndarray) -> dict[int, int]:
    """:func:`match_frame` on a given IoU matrix (rows ``ids``, columns boxes).

    The cost is ``1 - IoU``, and a pair below :data:`MIN_IOU` costs more than all allowed pairs
    together, so the assignment makes as many allowed pairs as it can, then the closest ones
    (the CLEAR-MOT matching ``motmetrics`` does on :func:`bench.tracking.iou_distances`)."""
    impossible = float(min(iou.shape)) + 1.0
    cost = np.where(iou >= MIN_IOU, 1.0 - iou, impossible)
    rows, cols = linear_sum_assignment(cost)
    return {ids[r]: int(c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= MIN_IOU}


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> tracker keys and values; a value is read as JSON (``0.3``,
    ``null``, ``{"bare": 0.7}``), else taken as a plain string (``head_classifier=my_head``).

    Raises:
        ValueError: An item without ``=``, or a key that is no tracker setting (named with the
            settings there are, so a typo does not silently run the example's own setup).
    """
    known = TrackerConfig.model_fields
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--tracker {item!r}: expected KEY=VALUE")
        if key not in known:
            raise ValueError(
                f"--tracker {item!r}: {key!r} is no tracker setting (settings: "
                f"{', '.join(sorted(known))})"
            )
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def override_tracker(tracker: TrackerConfig, overrides: Mapping[str, Any]) -> TrackerConfig:
    """The site's tracker settings with ``overrides`` applied and validated as the site loader
    validates them (``model_copy(update=...)`` would skip that and run a setup no site file can
    give). A ``null`` value removes the key, as if the site file did not set it (every setting
    that may be null defaults to null), so ``head_classifier=null head_thresholds=null`` turns
    head verification off together with its tuning, which ``head_classifier=null`` alone leaves
    orphaned and the validator refuses.

    Raises:
        ValueError: The overridden settings are not a valid tracker, with pydantic's reasons.
    """
    data = {**tracker.model_dump(exclude_unset=True), **overrides}
    data = {key: value for key, value in data.items() if value is not None}
    try:
        return TrackerConfig.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'tracker'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(
            f"--tracker overrides {dict(overrides)} give no valid tracker: {reasons}"
        ) from None


def _seconds(frames: int, period: float) -> float:
    return round(frames * period, 2)


def score_bare_clip(
    truth: Mapping[int, Mapping[int, tuple[float, float, float, float]]],
    seen: Mapping[int, Sequence[Seen]],
    incidents: Sequence[ClipIncident],
    period: float,
) -> dict[str, Any]:
    """Score a clip whose annotated persons are all bare-headed (module doc).

    Args:
        truth: Frame index -> ground-truth id -> box, for every scored frame (a frame with
            nobody annotated maps to an empty mapping).
        seen: Frame index -> the product's person boxes in that frame.
        incidents: Hard-hat incidents of the run.
        period: Seconds one analysed frame stands for.
    """
    persons: dict[int, Counter[str]] = {}
    first: dict[int, int] = {}
    # (frame, track id) -> the ground-truth id it matched then.
    owner: dict[tuple[int, int], int] = {}
    for index in sorted(truth):
        boxes = truth[index]
        here = list(seen.get(index, ()))
        pairs = match_frame(boxes, here)
        for gt_id in boxes:
            first.setdefault(gt_id, index)
            calls = persons.setdefault(gt_id, Counter())
            j = pairs.get(gt_id)
            calls["visible"] += 1
            calls["missed" if j is None else here[j].verdict] += 1
            track = None if j is None else here[j].track_id
            if track is not None:
                owner[(index, track)] = gt_id
    raised: dict[int, tuple[float, float]] = {}
    per_person: Counter[int] = Counter()
    unmatched: list[dict[str, Any]] = []
    for incident in sorted(incidents, key=lambda i: i.start):
        votes = Counter(
            owner[(f, incident.track_id)]
            for f in range(incident.start, incident.end + 1)
            if (f, incident.track_id) in owner
        )
        if not votes:  # matched nobody while violating: try the track's whole life
            votes = Counter(gt for (_, track), gt in owner.items() if track == incident.track_id)
        if not votes:
            unmatched.append(
                {"track_id": incident.track_id, "raised_s": _seconds(incident.raised, period)}
            )
            continue
        gt_id = votes.most_common(1)[0][0]
        per_person[gt_id] += 1
        raised.setdefault(
            gt_id,
            (
                _seconds(incident.raised - first[gt_id], period),
                _seconds(incident.start - first[gt_id], period),
            ),
        )
    table: dict[str, dict[str, Any]] = {}
    totals: Counter[str] = Counter()
    for gt_id in sorted(persons):
        calls = persons[gt_id]
        totals.update(calls)
        table[str(gt_id)] = {
            "visible_s": _seconds(calls["visible"], period),
            **{f"{c}_s": _seconds(calls[c], period) for c in (*CALLS, "missed")},
            "incident": gt_id in raised,
            "incidents": per_person[gt_id],
            "incident_after_s": raised[gt_id][0] if gt_id in raised else None,
            "violating_from_s": raised[gt_id][1] if gt_id in raised else None,
        }
    visible = totals["visible"]

    def share(*keys: str) -> float | None:
        return round(sum(totals[k] for k in keys) / visible, 4) if visible else None

    return {
        "persons": table,
        "person_recall": round(len(raised) / len(persons), 4) if persons else None,
        "persons_with_incident": len(raised),
        "person_count": len(persons),
        "bare_person_s": _seconds(visible, period),
        "share_violation": share("violation"),
        "share_compliant": share("compliant"),
        "share_unknown": share("unknown", "untracked", "missed"),
        "share_unknown_split": {
            "tracked_no_verdict": share("unknown"),
            "untracked": share("untracked"),
            "missed": share("missed"),
        },
        "incidents": len(incidents),
        "incidents_matching_no_person": unmatched,
    }


def score_hat_clip(
    seen: Mapping[int, Sequence[Seen]], incidents: Sequence[ClipIncident], period: float
) -> dict[str, Any]:
    """Score a clip where everyone wears a hard hat: every product person counts (module doc)."""
    calls: Counter[str] = Counter(s.verdict for boxes in seen.values() for s in boxes)
    total = sum(calls.values())
    return {
        "person_s": _seconds(total, period),
        **{f"{c}_s": _seconds(calls[c], period) for c in CALLS},
        "share_violation": round(calls["violation"] / total, 4) if total else None,
        "share_compliant": round(calls["compliant"] / total, 4) if total else None,
        "share_unknown": round((calls["unknown"] + calls["untracked"]) / total, 4)
        if total
        else None,
        "false_incidents": len(incidents),
        "incidents": [
            {
                "track_id": i.track_id,
                "start_s": _seconds(i.start, period),
                "raised_s": _seconds(i.raised, period),
                "end_s": _seconds(i.end, period),
            }
            for i in incidents
        ],
    }


def seen_of(tracked: TrackedFrame, detections: Detections) -> list[Seen]:
    """The frame's person boxes: tracks with their voted hard-hat state, then untracked persons
    (:func:`bench.ppe_compliance.verdicts_of` decides which detections those are)."""
    out = [
        Seen(t.xyxy, _STATE_VERDICT[t.attributes.get(ITEM, PPEState.UNKNOWN)], t.track_id)
        for t in tracked.tracks
        if t.label == "person"
    ]
    untracked = (p for p in verdicts_of(tracked, detections) if p.verdict == "untracked")
    out.extend(Seen(p.xyxy, p.verdict) for p in untracked)
    return out


class _Keeping:
    """A detector that keeps what it found per frame, for the per-frame verdicts.

    Side-by-side file-run detectors each see every other batch, so results are kept by frame
    ``seq`` in one shared mapping (each key written once)."""

    def __init__(self, inner: Detector, found: dict[int, Detections]) -> None:
        self._inner = inner
        self._found = found

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        result = list(self._inner.detect(frames))
        for frame, detections in zip(frames, result, strict=True):
            self._found[frame.seq] = detections
        return result


class _FirstFrames:
    """The first ``count`` frames of a source (``None``: all of them), counting how often the
    source's clock stepped back (0 since the file source's fix; a regression shows here)."""

    def __init__(self, frames: Iterator[Frame], count: int | None) -> None:
        self._frames = frames
        self._count = count
        self.backsteps = 0

    def frames(self) -> Iterator[Frame]:
        last = float("-inf")
        for frame in itertools.islice(self._frames, self._count):
            if frame.pts < last:
                self.backsteps += 1
            last = frame.pts
            yield frame


@dataclass
class Run:
    """What one clip's run produced, in frame indices of the analysed frames."""

    seen: dict[int, list[Seen]] = field(default_factory=dict)
    incidents: list[ClipIncident] = field(default_factory=list)
    frames: int = 0
    clock_backsteps: int = 0
    """Frames whose time was earlier than the previous frame's, as the source gave them."""
    wall_s: float = 0.0
    cpu_s: float = 0.0


def run_clip(site: LoadedSite, video: Path, fps: float, frames: int | None) -> Run:
    """Play ``video`` through the example camera's stages at ``fps`` (module doc), the first
    ``frames`` analysed frames of it (``None``: all)."""
    fetch_site_files(site)  # the site's catalogue models, as `safewatch audit` pulls them first
    camera_id, camera = next(iter(site.config.cameras.items()))
    camera = camera.model_copy(update={"source": str(video), "fps": fps})
    rules = load_rules(RULES, site.config)
    zones = rules.zones_for(camera_id)
    found: dict[int, Detections] = {}
    detectors = [_Keeping(d, found) for d in build_file_run_detectors(site, camera)]
    run = Run()
    seq_of_pts: dict[float, int] = {}
    opened: dict[str, int] = {}

    def record(
        frame: Frame,
        tracked: TrackedFrame,
        _events: Sequence[RuleEvent],
        changes: Sequence[IncidentChange],
    ) -> None:
        run.seen[frame.seq] = seen_of(tracked, found.pop(frame.seq))
        seq_of_pts[frame.timestamp] = frame.seq
        for change in changes:
            opened.setdefault(change.incident.id, frame.seq)

    with tempfile.TemporaryDirectory(prefix="ppe_clips_") as tmp:
        engine = create_engine_for(f"sqlite:///{Path(tmp) / 'audit.db'}", Path("."))
        try:
            repository = IncidentRepository(engine)
            manager = IncidentManager(
                repository,
                EvidenceStore(Path(tmp) / "evidence", log=repository),
                lambda _camera: zones,
                privacy_for=site.config.privacy_for,
            )
            source = open_source(camera_id, camera, base_dir=Path("."), origin=0.0)
            first = _FirstFrames(source.frames(), frames)
            pipeline = audit_pipeline(
                site, camera_id, camera, first, detectors, rules, manager, observers=[record]
            )
            cpu = time.process_time()
            try:
                stats = pipeline.run()
            finally:
                source.close()
            run.cpu_s = time.process_time() - cpu
            run.wall_s = stats.elapsed
            run.frames = stats.frames
            run.clock_backsteps = first.backsteps
            ids = {change.incident.id for change in stats.changes}
            got = [repository.get(i) for i in ids]
        finally:
            engine.dispose()
    run.incidents = [_in_frames(i, seq_of_pts, opened[i.id]) for i in got if i.rule_kind == "ppe"]
    return run


def _in_frames(incident: Incident, seq_of_pts: Mapping[float, int], raised: int) -> ClipIncident:
    """An incident in frames (its times are analysed frames' times; ``raised``: the frame whose
    step stored it first)."""

    def nearest(t: float) -> int:
        return seq_of_pts[min(seq_of_pts, key=lambda s: abs(s - t))]

    end = incident.ended_at if incident.ended_at is not None else incident.started_at
    return ClipIncident(incident.track_ids[0], nearest(incident.started_at), nearest(end), raised)


def load_truth(clip: Mapping[str, Any], frames: int) -> dict[int, dict[int, Any]]:
    """Frame index -> ground-truth id -> xyxy from the clip's MOT file, for frames
    ``0..frames-1``; checks each person's span against the timeline."""
    rows = np.loadtxt(require_asset(clip["ground_truth"]), delimiter=",", ndmin=2)
    offset = int(clip["mot_frame_offset"])
    truth: dict[int, dict[int, Any]] = {i: {} for i in range(frames)}
    spans: dict[int, list[int]] = {}
    for row in rows:
        index = int(row[0]) - offset
        gt_id = int(row[1])
        x, y, w, h = (float(v) for v in row[2:6])
        span = spans.setdefault(gt_id, [index, index])
        span[0], span[1] = min(span[0], index), max(span[1], index)
        if index in truth:
            truth[index][gt_id] = (x, y, x + w, y + h)
    listed = {int(k): v["frames"] for k, v in clip["persons"].items()}
    if listed != spans:
        raise SystemExit(f"timeline persons {listed} do not match the ground truth's {spans}")
    if any(v["head"] != "bare" for v in clip["persons"].values()):
        raise SystemExit("the PETS09 scoring assumes every annotated person is bare-headed")
    return truth


def _print_bare(name: str, r: dict[str, Any]) -> None:
    print(f"\n{name}: {r['person_count']} bare-headed persons, {r['bare_person_s']} person-s")
    head = ("visible", *CALLS, "missed")
    print(f"  {'id':>4} " + " ".join(f"{h:>9}" for h in head) + "  incident after")
    for gt_id, p in r["persons"].items():
        after = (
            f"{p['incident_after_s']} s (violating from {p['violating_from_s']} s"
            f"{'' if p['incidents'] == 1 else ', ' + str(p['incidents']) + ' incidents'})"
            if p["incident"]
            else "none"
        )
        print(f"  {gt_id:>4} " + " ".join(f"{p[f'{h}_s']:>9}" for h in head) + f"  {after}")
    print(
        f"  person recall {r['person_recall']} ({r['persons_with_incident']}/{r['person_count']})"
        f"; person-seconds violation {r['share_violation']}, compliant {r['share_compliant']},"
        f" unknown {r['share_unknown']} {r['share_unknown_split']}"
    )
    print(
        f"  hard-hat incidents {r['incidents']}, matching no person: "
        f"{r['incidents_matching_no_person']}"
    )


def _print_hat(name: str, r: dict[str, Any]) -> None:
    print(f"\n{name}: {r['person_s']} person-s (everyone in a hard hat)")
    print("  " + "  ".join(f"{c} {r[f'{c}_s']} s" for c in CALLS))
    print(f"  false hard-hat incidents {r['false_incidents']}: {r['incidents']}")


def with_head_detector(site: LoadedSite, path: str) -> LoadedSite:
    """``site`` with a head detector run on every camera besides its own models."""
    models = {**site.config.models, "heads": ModelConfig(**head_detector_model(path))}
    cameras = {
        key: camera.model_copy(update={"models": [*camera.models, "heads"]})
        for key, camera in site.config.cameras.items()
    }
    config = site.config.model_copy(update={"models": models, "cameras": cameras})
    return replace(site, config=config)


def main(argv: Sequence[str] | None = None) -> None:
    """Run and score each clip; print the tables and write ``bench/results/ppe_clips.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", choices=("pets09", "construction"), help="only this clip")
    parser.add_argument("--frames", type=int, help="only the first N analysed frames")
    parser.add_argument(
        "--tracker",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a tracker setting of the example site (VALUE as JSON; null removes "
        "the key), validated as a site file is, e.g. head_classifier=null "
        "head_thresholds=null (results go to ppe_clips_<name>.json with --name)",
    )
    parser.add_argument(
        "--head-detector",
        help="also run this head detector on the camera (training/head_detector; a catalogue "
        "name or an .onnx path, relative paths read from examples/ as in the site file)",
    )
    parser.add_argument("--name", help="store the results as ppe_clips_<name>.json")
    parser.add_argument("--no-write", action="store_true", help="print only (quick looks, tests)")
    args = parser.parse_args(argv)
    timelines = json.loads(TIMELINES.read_text())["clips"]
    site = load_site(SITE)
    try:
        overrides = parse_overrides(args.tracker)
        tracker = override_tracker(site.config.tracker, overrides)
    except ValueError as exc:
        parser.error(str(exc))
    if overrides:
        site = replace(site, config=site.config.model_copy(update={"tracker": tracker}))
    if args.head_detector:
        site = with_head_detector(site, args.head_detector)
    results: dict[str, Any] = {
        "site": str(SITE.relative_to(ROOT)),
        "timelines": str(TIMELINES.relative_to(ROOT)),
        "tracker_overrides": overrides,
        "head_detector": args.head_detector,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "clips": {},
    }
    print(f"load average before: {results['load_average_before']}")
    for name, clip in timelines.items():
        if args.clip and name != args.clip:
            continue
        video = require_asset(clip["video"])
        fps = float(clip["fps"])
        span = clip["frames"]
        frames = span[1] - span[0] + 1 if span is not None else None
        if args.frames is not None:
            frames = min(args.frames, frames) if frames is not None else args.frames
        run = run_clip(site, video, fps, frames)
        if clip["truth"] == "bare":
            if span[0] != 0:
                raise SystemExit(f"{name}: a timeline must start at decoded frame 0")
            scored = score_bare_clip(load_truth(clip, run.frames), run.seen, run.incidents, 1 / fps)
            _print_bare(name, scored)
        else:
            scored = score_hat_clip(run.seen, run.incidents, 1 / fps)
            _print_hat(name, scored)
        scored.update(
            video=clip["video"],
            fps=fps,
            frames=run.frames,
            clock_backsteps=run.clock_backsteps,
            wall_s=round(run.wall_s, 1),
            cpu_ms_per_frame=round(1000 * run.cpu_s / max(run.frames, 1), 1),
        )
        results["clips"][name] = scored
        print(
            f"  {run.frames} frames at {fps} fps (the file source's times stepped back "
            f"{run.clock_backsteps} times), {scored['cpu_ms_per_frame']} ms CPU per frame"
        )
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average after: {results['load_average_after']}")
    if not args.no_write:
        name = f"ppe_clips_{args.name}" if args.name else "ppe_clips"
        print(f"wrote {write_results(name, results)}")


if __name__ == "__main__":
    main()
