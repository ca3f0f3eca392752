"""Line crossings on PETS 2009 S2.L1 (frames 1-100): ground-truth tracks against the real pipeline.

One ``line_crossing`` rule set, chosen from the scene before any counting: a gate across the road
at the lamp post in the middle of the view, from the kerb of the parking area (0.56, 0.30) down to
the grass (0.56, 0.68), so walkers going along the road cross it and people on the grass or on
the branch road to the upper right do not. Three rules share the line: ``any`` direction and
each direction on its own.

The same :class:`~safewatch.rules.RuleEngine` code runs on two sources of tracks:

* **ground truth**: the MOTChallenge boxes and ids of ``gt_480x360_frames1-100.txt`` as
  ``TrackedFrame`` s (MOT frame N is decoded frame N-1; the clip is 10 fps);
* **pipeline**: decoded frames 0-99 through the COCO detector (``yolox_nano_coco`` by default,
  the site defaults otherwise) and :class:`~safewatch.track.CameraTracker`.

A crossing is counted from each rule's ``STARTED`` events (a crossing is an instant: ``STARTED``
and ``ENDED`` on the confirming frame). Where the counts differ, the per-crossing lists (track,
frame, direction) show which walker was missed or double-counted and why.

Run: ``python -m bench.line_crossing [--model yolov8n_coco]``; JSON goes to
``bench/results/line_crossing_<model>.json``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import yaml

from bench._common import require_asset, write_results
from safewatch.config.site import ModelConfig, ModelFormat, TrackerConfig
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.domain import Frame, Phase, Track, TrackedFrame
from safewatch.rules import RuleEngine, RuleSet, load_rules

CLIP = "video/pets09_s2l1_480x360.avi"
GT = "video/pets09_s2l1_gt/gt_480x360_frames1-100.txt"
CAMERA = "pets09"
FPS = 10.0
FRAMES = 100
WIDTH, HEIGHT = 480, 360
ORIGIN = 1_237_000_000.0
"""Wall clock of frame 0 (the rules have no schedule, so any fixed time will do)."""

GATE = ((0.56, 0.30), (0.56, 0.68))
"""The line, chosen from the picture: across the road at the lamp post, kerb to grass."""

RULES: dict[str, Any] = {
    "version": 1,
    "lines": {
        "lamp_gate": {
            "camera": CAMERA,
            "points": [list(GATE[0]), list(GATE[1])],
            "description": "Across the road at the lamp post, from the parking kerb to the grass",
        }
    },
    "rules": [
        {"id": f"gate-{name}", "kind": "line_crossing", "line": "lamp_gate", "direction": d}
        for name, d in [("any", "any"), ("l2r", "left_to_right"), ("r2l", "right_to_left")]
    ],
}

MODELS: dict[str, tuple[str, ModelFormat]] = {
    "yolox_nano_coco": ("yolox_nano_coco.onnx", "yolox"),
    "yolov8n_coco": ("yolov8n_coco.onnx", "yolov8"),
}


@dataclass(frozen=True, slots=True)
class CrossingEvent:
    """One counted crossing: which rule, which track, at which decoded frame."""

    rule: str
    track: int
    frame: int
    message: str


def rule_set(folder: Path) -> RuleSet:
    """Write the rule file into ``folder`` and load it as a user's would be."""
    path = folder / "pets09_gate.yaml"
    path.write_text(yaml.safe_dump(RULES, sort_keys=False))
    return load_rules(path)


def _tracked(seq: int, tracks: Iterable[Track]) -> TrackedFrame:
    return TrackedFrame(
        camera_id=CAMERA,
        seq=seq,
        pts=seq / FPS,
        timestamp=ORIGIN + seq / FPS,
        width=WIDTH,
        height=HEIGHT,
        tracks=tuple(tracks),
    )


def ground_truth_frames(path: Path | None = None) -> list[TrackedFrame]:
    """Decoded frames 0-99 as the ground truth sees them: every annotated person, its MOT id."""
    rows = np.loadtxt(path or require_asset(GT), delimiter=",")
    frames = []
    for seq in range(FRAMES):
        selected = rows[rows[:, 0] == seq + 1]  # MOT frame N is decoded frame N-1
        frames.append(
            _tracked(
                seq,
                (
                    Track(int(r[1]), "person", (r[2], r[3], r[2] + r[4], r[3] + r[5]), 1.0)
                    for r in selected
                ),
            )
        )
    return frames


def decoded_frames(path: Path | None = None) -> list[Frame]:
    """Decoded frames 0-99 of the clip, clocked at its 10 fps."""
    frames: list[Frame] = []
    with av.open(str(path or require_asset(CLIP))) as container:
        for image in container.decode(video=0):
            seq = len(frames)
            bgr = np.ascontiguousarray(image.to_ndarray(format="bgr24"), dtype=np.uint8)
            frames.append(Frame(CAMERA, seq, seq / FPS, ORIGIN + seq / FPS, bgr))
            if len(frames) == FRAMES:
                break
    return frames


def pipeline_frames(
    frames: Sequence[Frame], model: str = "yolox_nano_coco"
) -> Iterator[TrackedFrame]:
    """The product's detector and tracker over ``frames``, with the site defaults."""
    from safewatch.track import CameraTracker

    file, fmt = MODELS[model]
    path = require_asset(f"models/{file}")
    config = ModelConfig(path=str(path), format=fmt, labels={"person": "person"})
    detector = OnnxDetector(config, path, model)
    # A person model, so no head mode: what build_tracker decides for a camera with one.
    tracker = CameraTracker(TrackerConfig(), CAMERA, frame_rate=FPS, track_heads=False)
    for start in range(0, len(frames), 8):
        batch = list(frames[start : start + 8])
        for frame, detections in zip(batch, detector.detect(batch), strict=True):
            yield tracker.update(detections, frame)


def count_crossings(rules: RuleSet, frames: Iterable[TrackedFrame]) -> list[CrossingEvent]:
    """Run the rule engine over ``frames``; one entry per ``STARTED`` event (one crossing)."""
    engine = RuleEngine(rules)
    found = []
    for tracked in frames:
        for event in engine.evaluate(tracked):
            if event.phase is Phase.STARTED:
                found.append(CrossingEvent(event.rule_id, event.track_ids[0], tracked.seq,
                                           event.message))  # fmt: skip
    return found


def summary(events: Sequence[CrossingEvent]) -> dict[str, Any]:
    """Counts per rule, and the crossings of the ``any`` rule in order."""
    counts = {rule["id"]: 0 for rule in RULES["rules"]}
    for event in events:
        counts[event.rule] += 1
    return {
        "counts": counts,
        "crossings": [asdict(e) for e in events if e.rule == "gate-any"],
    }


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matched(
    truth: Sequence[CrossingEvent],
    found: Sequence[CrossingEvent],
    covering: Callable[[CrossingEvent], set[int]],
    *,
    within: int = 10,
) -> tuple[list[tuple[CrossingEvent, CrossingEvent]], list[CrossingEvent], list[CrossingEvent]]:
    """Pair ground-truth and pipeline crossings of the ``any`` rule: same direction, at most
    ``within`` frames apart, by a pipeline track that covered the walker (``covering``).

    Returns:
        (pairs, missed ground-truth crossings, extra pipeline crossings).
    """
    left = [e for e in found if e.rule == "gate-any"]
    pairs, missed = [], []
    for t in (e for e in truth if e.rule == "gate-any"):
        direction = t.message.rsplit("(", 1)[1]
        ids = covering(t)
        match = next(
            (f for f in left if f.message.rsplit("(", 1)[1] == direction
             and abs(f.frame - t.frame) <= within and f.track in ids),
            None,
        )  # fmt: skip
        if match is None:
            missed.append(t)
        else:
            left.remove(match)
            pairs.append((t, match))
    return pairs, missed, left


def follow(
    crossing: CrossingEvent,
    truth: Sequence[TrackedFrame],
    pipeline: Sequence[TrackedFrame],
    *,
    window: int = 25,
) -> list[str]:
    """How the pipeline saw a ground-truth walker around its crossing: per frame, the pipeline
    track covering its box (IoU >= 0.5) or ``-`` when none did (missed or merged)."""
    seen = []
    for seq in range(max(0, crossing.frame - window), min(FRAMES, crossing.frame + window)):
        box = next((t.xyxy for t in truth[seq].tracks if t.track_id == crossing.track), None)
        if box is None:
            continue
        best = max(pipeline[seq].tracks, key=lambda t: _iou(t.xyxy, box), default=None)
        covered = best is not None and _iou(best.xyxy, box) >= 0.5
        seen.append(f"{seq}:{'#' + str(best.track_id) if covered and best else '-'}")
    return seen


def main() -> None:
    """Count on both sources and write ``bench/results/line_crossing.json``."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="yolox_nano_coco")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rules = rule_set(Path(folder))
    gt_frames = ground_truth_frames()
    truth_events = count_crossings(rules, gt_frames)
    began = time.perf_counter()
    pipe_frames = list(pipeline_frames(decoded_frames(), args.model))
    pipe_events = count_crossings(rules, pipe_frames)
    seconds = time.perf_counter() - began
    truth, pipeline = summary(truth_events), summary(pipe_events)

    def covering(crossing: CrossingEvent) -> set[int]:
        return {int(x.split("#")[1]) for x in follow(crossing, gt_frames, pipe_frames) if "#" in x}

    pairs, missed, extra = matched(truth_events, pipe_events, covering)
    result = {
        "clip": CLIP,
        "frames": f"decoded 0-{FRAMES - 1} (MOT 1-{FRAMES}), {FPS:g} fps",
        "line": {
            "points": [list(p) for p in GATE],
            "why": RULES["lines"]["lamp_gate"]["description"],
        },
        "rule": "line_crossing, objects [person], anchor feet, confirm_frames 3 (defaults)",
        "ground_truth": truth,
        "pipeline": {
            "model": args.model,
            "tracker": "site defaults",
            "seconds": seconds,
            **pipeline,
        },
        "match": truth["counts"] == pipeline["counts"],
        "paired": [[t.frame, f.frame, t.message] for t, f in pairs],
        "missed": [
            {**asdict(t), "pipeline_track_by_frame": follow(t, gt_frames, pipe_frames)}
            for t in missed
        ],
        "extra": [asdict(f) for f in extra],
    }
    out = write_results(f"line_crossing_{args.model}", result)
    print(f"ground truth: {truth['counts']}")
    print(f"pipeline ({args.model}): {pipeline['counts']}  ({seconds:.1f} s)")
    for t in missed:
        print(f"missed: {t.message} at frame {t.frame}")
        print("  pipeline track covering it:", " ".join(follow(t, gt_frames, pipe_frames)))
    for f in extra:
        print(f"extra: {f.message} at frame {f.frame}")
    print(f"match: {result['match']}; written {out}")


if __name__ == "__main__":
    main()
