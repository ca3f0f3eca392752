"""bench/ppe_clips scores a clip's verdicts and hard-hat incidents against a hand-made timeline.

Synthetic tracks against a synthetic timeline, so every count is known: which frames a person is
matched in (IoU >= 0.5, one box per person), what each frame's verdict adds to that person's
seconds, which person an incident belongs to and after how long, and what matches nobody.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench.ppe_clips import (
    TIMELINES,
    ClipIncident,
    Seen,
    match_frame,
    match_iou,
    override_tracker,
    parse_overrides,
    run_clip,
    score_bare_clip,
    score_hat_clip,
    with_head_detector,
)
from bench.ppe_compliance import SITE

from assets import asset
from safewatch.config.loader import load_site
from safewatch.config.site import TrackerConfig
from safewatch.domain import PPEState
from safewatch.track.ppe import PPEVocabulary

A = (0.0, 0.0, 10.0, 30.0)
B = (50.0, 0.0, 60.0, 30.0)
SHIFTED_A = (2.0, 0.0, 12.0, 30.0)  # IoU with A = 8 * 30 / (12 * 30) = 0.67
FAR_FROM_A = (6.0, 0.0, 16.0, 30.0)  # IoU with A = 4 / 16 = 0.25


def test_match_frame_is_one_to_one_and_needs_half_overlap() -> None:
    seen = [Seen(FAR_FROM_A, "violation", 1), Seen(SHIFTED_A, "compliant", 2), Seen(A, "unknown")]
    # Both A-like boxes pass the gate; A takes the better one, the exact untracked box.
    assert match_frame({9: A}, seen) == {9: 2}
    assert match_frame({9: A}, seen[:2]) == {9: 1}
    assert match_frame({9: A}, seen[:1]) == {}
    assert match_frame({9: A, 11: B}, []) == {}


def test_match_rules_out_weak_pairs_before_assigning() -> None:
    # On raw IoU the best total is 0-1 plus 1-0 (0.607), both below 0.5 and then dropped;
    # ruled out first, the only valid pair, person 8 with box 1 at 0.588, is kept.
    iou = np.array([[0.0, 0.112], [0.495, 0.588]])
    assert match_iou([7, 8], iou) == {8: 1}
    # More valid pairs beat a closer single one.
    assert match_iou([7, 8], np.array([[0.95, 0.6], [0.6, 0.0]])) == {7: 1, 8: 0}


def test_tracker_overrides_are_validated_like_a_site_file() -> None:
    site = TrackerConfig.model_validate(
        {"head_classifier": "head_classifier", "head_thresholds": {"bare": 0.65}}
    )
    with pytest.raises(ValueError, match="'head_clasifier' is no tracker setting"):
        parse_overrides(["head_clasifier=null"])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_overrides(["head_classifier"])
    # Turning the classifier off alone leaves its thresholds orphaned: refused, as on load.
    with pytest.raises(ValueError, match="head_thresholds \\(needs head_classifier\\)"):
        override_tracker(site, parse_overrides(["head_classifier=null"]))
    with pytest.raises(ValueError, match="min_frames"):
        override_tracker(site, parse_overrides(["min_frames=0"]))
    boxes_only = override_tracker(
        site, parse_overrides(["head_classifier=null", "head_thresholds=null"])
    )
    assert boxes_only == TrackerConfig()
    tuned = override_tracker(
        site, parse_overrides(['head_thresholds={"bare": 0.8}', "ppe_window=7"])
    )
    assert (tuned.head_classifier, tuned.head_thresholds, tuned.ppe_window) == (
        "head_classifier",
        {"bare": 0.8},
        7,
    )
    assert parse_overrides(["head_classifier=my_head"]) == {"head_classifier": "my_head"}


def test_bare_clip_counts_seconds_per_verdict_incidents_and_strays() -> None:
    # Person 9 is in frames 0-5, person 11 appears at frame 2; 0.5 s per frame.
    truth = {f: {9: A} | ({11: B} if f >= 2 else {}) for f in range(6)}
    seen = {
        0: [Seen(A, "unknown", 1)],
        1: [Seen(A, "violation", 1)],
        2: [Seen(A, "violation", 1), Seen(B, "untracked")],
        3: [Seen(SHIFTED_A, "violation", 1), Seen(B, "compliant", 2)],
        4: [Seen(B, "compliant", 2), Seen((100.0, 0.0, 110.0, 30.0), "violation", 7)],
        5: [Seen(A, "violation", 1), Seen(B, "unknown", 2)],
    }
    incidents = [
        ClipIncident(track_id=1, start=1, end=3, raised=3),
        ClipIncident(track_id=1, start=5, end=5, raised=5),  # a second one on the same person
        ClipIncident(track_id=7, start=4, end=4, raised=4),  # a stranger nobody annotated
    ]
    r = score_bare_clip(truth, seen, incidents, period=0.5)
    p9, p11 = r["persons"]["9"], r["persons"]["11"]
    assert p9["visible_s"] == 3.0
    assert (p9["violation_s"], p9["unknown_s"], p9["missed_s"], p9["compliant_s"]) == (
        2.0,
        0.5,
        0.5,
        0.0,
    )
    assert (p9["incident"], p9["incidents"], p9["incident_after_s"], p9["violating_from_s"]) == (
        True,
        2,
        1.5,
        0.5,
    )
    assert p11["visible_s"] == 2.0
    assert (p11["untracked_s"], p11["compliant_s"], p11["unknown_s"]) == (0.5, 1.0, 0.5)
    assert (p11["incident"], p11["incident_after_s"]) == (False, None)
    assert r["person_count"] == 2
    assert r["persons_with_incident"] == 1
    assert r["person_recall"] == 0.5
    assert r["bare_person_s"] == 5.0
    # 10 person-frames: 4 violation, 2 compliant, 2 unknown + 1 untracked + 1 missed.
    assert (r["share_violation"], r["share_compliant"], r["share_unknown"]) == (0.4, 0.2, 0.4)
    assert r["share_unknown_split"] == {"tracked_no_verdict": 0.2, "untracked": 0.1, "missed": 0.1}
    assert r["incidents"] == 3
    assert r["incidents_matching_no_person"] == [{"track_id": 7, "raised_s": 2.0}]


def test_an_incident_goes_to_the_person_its_track_matched_most_while_it_ran() -> None:
    # Track 1 is on person 9 for frames 0-1, then switches to person 11 for frames 2-4.
    truth = {f: {9: A, 11: B} for f in range(5)}
    seen = {f: [Seen(A if f < 2 else B, "violation", 1)] for f in range(5)}
    r = score_bare_clip(truth, seen, [ClipIncident(1, start=1, end=4, raised=3)], period=1.0)
    assert r["persons"]["11"]["incident"] is True
    assert r["persons"]["9"]["incident"] is False


def test_hat_clip_counts_every_person_second_and_every_incident_as_false() -> None:
    seen = {
        0: [Seen(A, "compliant", 1), Seen(B, "untracked")],
        1: [Seen(A, "violation", 1), Seen(B, "unknown", 2)],
    }
    r = score_hat_clip(seen, [ClipIncident(1, start=1, end=1, raised=1)], period=0.2)
    assert r["person_s"] == 0.8
    assert (r["violation_s"], r["compliant_s"], r["unknown_s"], r["untracked_s"]) == (
        0.2,
        0.2,
        0.2,
        0.2,
    )
    assert (r["share_violation"], r["share_compliant"], r["share_unknown"]) == (0.25, 0.25, 0.5)
    assert r["false_incidents"] == 1
    assert r["incidents"] == [{"track_id": 1, "start_s": 0.2, "raised_s": 0.2, "end_s": 0.2}]


def test_every_clip_of_the_timeline_says_where_it_comes_from() -> None:
    clips = json.loads(TIMELINES.read_text())["clips"]
    assert set(clips) == {"pets09", "construction"}
    for clip in clips.values():
        for key in ("video", "source", "licence", "fps", "truth", "how_made", "frames_looked_at"):
            assert clip[key], key


@pytest.mark.slow
def test_the_bench_runs_the_example_site_over_pets09_frames() -> None:
    """Five PETS09 frames through the example site's stages: frame times, boxes and ground
    truth line up (each annotated person is matched in most frames)."""
    from bench.ppe_clips import load_truth
    from bench.ppe_compliance import SITE

    from safewatch.config.loader import load_site

    clip = json.loads(TIMELINES.read_text())["clips"]["pets09"]
    video = asset(clip["video"])
    asset(clip["ground_truth"])
    run = run_clip(load_site(SITE), video, float(clip["fps"]), frames=5)
    assert run.frames == 5
    assert sorted(run.seen) == [0, 1, 2, 3, 4]
    r = score_bare_clip(load_truth(clip, run.frames), run.seen, run.incidents, 0.1)
    assert r["person_count"] == 3  # ids 9, 15 and 19 are in frames 0-4
    for person in r["persons"].values():
        assert person["visible_s"] == 0.5
        assert person["missed_s"] <= 0.2, person


def test_a_head_detector_runs_beside_every_cameras_own_models() -> None:
    """``--head-detector``: the trained detector's classes reach the tracker as hat / bare-head
    evidence, on every camera, and the site's own models stay as they were."""
    site = load_site(SITE)
    added = with_head_detector(site, "/models/heads.onnx")
    heads = added.config.models["heads"]
    assert (heads.path, heads.format) == ("/models/heads.onnx", "yolov8")
    assert heads.labels is not None
    vocabulary = PPEVocabulary()
    assert [vocabulary.item_of(heads.labels[c]) for c in ("hardhat", "bare")] == [
        ("hardhat", PPEState.PRESENT),
        ("hardhat", PPEState.ABSENT),
    ]
    for key, camera in added.config.cameras.items():
        assert camera.models == [*site.config.cameras[key].models, "heads"]
    assert {k: v for k, v in added.config.models.items() if k != "heads"} == site.config.models
