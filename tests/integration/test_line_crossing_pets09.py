"""A ``line_crossing`` rule on real footage (PETS 2009 S2.L1, frames 1-100): the count from the
real pipeline against the count the same rule gives on the ground-truth tracks.

The line was chosen from the picture before counting (across the road at the lamp post, see
``bench/line_crossing.py``). It sits where three walkers meet, and the pipeline misses one
crossing there: the walker is hidden behind another, then merged with a third into one box, so
its track ends before the line. That mismatch is a real limit of a small detector on occlusion,
recorded below as a strict expected failure rather than hidden by moving the line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.line_crossing import (
    CLIP,
    GT,
    CrossingEvent,
    count_crossings,
    decoded_frames,
    follow,
    ground_truth_frames,
    matched,
    pipeline_frames,
    rule_set,
    summary,
)

from assets import asset
from safewatch.domain import TrackedFrame
from safewatch.rules import RuleSet


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return rule_set(tmp_path_factory.mktemp("rules"))


@pytest.fixture(scope="module")
def truth(rules: RuleSet) -> tuple[list[TrackedFrame], list[CrossingEvent]]:
    frames = ground_truth_frames(asset(GT))
    return frames, count_crossings(rules, frames)


@pytest.fixture(scope="module")
def pipeline(rules: RuleSet) -> tuple[list[TrackedFrame], list[CrossingEvent]]:
    asset("models/yolox_nano_coco.onnx")
    frames = list(pipeline_frames(decoded_frames(asset(CLIP)), "yolox_nano_coco"))
    return frames, count_crossings(rules, frames)


def test_ground_truth_crossings(truth: tuple[list[TrackedFrame], list[CrossingEvent]]) -> None:
    """Walker 9 crosses once going left; walker 19 reaches the lamp post, steps a little past the
    line, turns back, and crosses for good later: three crossings (read off the boxes)."""
    _, events = truth
    assert summary(events)["counts"] == {"gate-any": 4, "gate-l2r": 3, "gate-r2l": 1}
    crossings = [(e.track, e.frame, e.message.rsplit("(", 1)[1]) for e in events
                 if e.rule == "gate-any"]  # fmt: skip
    assert crossings == [
        (9, 21, "left to right)"),
        (19, 27, "left to right)"),
        (19, 33, "right to left)"),
        (19, 55, "left to right)"),
    ]


@pytest.mark.slow
def test_every_pipeline_crossing_is_a_ground_truth_crossing(
    truth: tuple[list[TrackedFrame], list[CrossingEvent]],
    pipeline: tuple[list[TrackedFrame], list[CrossingEvent]],
) -> None:
    gt_frames, gt_events = truth
    pipe_frames, pipe_events = pipeline

    def covering(crossing: CrossingEvent) -> set[int]:
        seen = follow(crossing, gt_frames, pipe_frames)
        return {int(x.split("#")[1]) for x in seen if "#" in x}

    pairs, missed, extra = matched(gt_events, pipe_events, covering)
    assert extra == [], "the pipeline counted a crossing nobody made"
    assert len(pairs) == 3
    # The one it misses: walker 9, whose pipeline track ends on the near side (hidden behind
    # walker 19 from frame 18) and who is then covered by walker 15's box: no pipeline track of
    # its own is on the line when it crosses.
    (lost,) = missed
    assert (lost.track, lost.frame) == (9, 21)
    seen = dict(entry.split(":") for entry in follow(lost, gt_frames, pipe_frames))
    assert seen["17"] == "#3", "tracked up to the lamp post"
    assert all(seen[str(f)] == "-" for f in range(18, 26)), seen  # hidden behind walker 19
    assert seen["26"] == "#2", "then inside walker 15's box (#2)"
    assert "#3" not in [seen[str(f)] for f in range(18, 46)], "track #3 never reached the line"


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="yolox_nano misses walker 9 while it is occluded at the lamp post (3 of 4 crossings); "
    "see bench/results/line_crossing_yolox_nano_coco.json",
)
def test_pipeline_count_matches_ground_truth(
    truth: tuple[list[TrackedFrame], list[CrossingEvent]],
    pipeline: tuple[list[TrackedFrame], list[CrossingEvent]],
) -> None:
    assert summary(pipeline[1])["counts"] == summary(truth[1])["counts"]


def test_the_rule_file_is_a_valid_rule_file(tmp_path: Path) -> None:
    rules = rule_set(tmp_path)
    assert [r.id for r in rules.rules] == ["gate-any", "gate-l2r", "gate-r2l"]
    assert rules.line("lamp_gate").camera_id == "pets09"
