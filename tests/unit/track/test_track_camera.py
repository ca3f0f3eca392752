"""CameraTracker on synthetic detections: ids, gaps, classes, PPE on tracks, bounded state."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from safewatch.config.site import TrackerConfig
from safewatch.domain import Detections, Frame, PPEState, TrackedFrame
from safewatch.track import CameraTracker, Tracker

IMAGE = np.zeros((360, 480, 3), np.uint8)
Row = tuple[str, float, float, float, float, float]  # label, confidence, x1, y1, x2, y2


def _frame(seq: int, fps: float = 5.0, camera: str = "cam") -> Frame:
    return Frame(camera, seq, seq / fps, 1_700_000_000.0 + seq / fps, IMAGE)


def _det(rows: Sequence[Row]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([r[2:] for r in rows], np.float32),
        np.array([r[1] for r in rows], np.float32),
        np.array([r[0] for r in rows]),
    )


def _person(x: float, y: float = 100, conf: float = 0.9, w: float = 40, h: float = 100) -> Row:
    return ("person", conf, x, y, x + w, y + h)


def _hat(px: float, py: float = 100, label: str = "hardhat", conf: float = 0.8) -> Row:
    return (label, conf, px + 10, py - 4, px + 30, py + 14)


def _run(
    tracker: CameraTracker, frames: Sequence[Sequence[Row]], fps: float = 5.0, start: int = 0
) -> list[TrackedFrame]:
    return [tracker.update(_det(rows), _frame(start + i, fps)) for i, rows in enumerate(frames)]


def _ids(out: TrackedFrame, label: str | None = None) -> list[int]:
    return [t.track_id for t in out.tracks if label is None or t.label == label]


def test_is_a_tracker_and_reports_frame_clock_and_size() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    assert isinstance(tracker, Tracker)
    det = _det([_person(100)])
    out = tracker.update(det, _frame(7))
    assert (out.camera_id, out.seq, out.pts, out.width, out.height) == ("cam", 7, 1.4, 480, 360)
    assert out.timestamp == pytest.approx(1_700_000_001.4)
    assert out.detections is det


def test_refuses_frames_of_another_camera() -> None:
    with pytest.raises(ValueError, match="other"):
        CameraTracker(TrackerConfig(), "cam").update(Detections.empty(), _frame(0, camera="other"))


def test_new_track_is_reported_after_min_frames_with_a_stable_id() -> None:
    tracker = CameraTracker(TrackerConfig(min_frames=2), "cam")
    outs = _run(tracker, [[_person(100 + 4 * i)] for i in range(6)])
    assert _ids(outs[0]) == []
    assert {tuple(_ids(o)) for o in outs[1:]} == {(1,)}
    assert outs[3].tracks[0].xyxy == (112.0, 100.0, 152.0, 200.0)  # the detection's box
    assert outs[3].tracks[0].confidence == pytest.approx(0.9)


def test_a_worker_is_not_a_new_person_after_two_missed_frames() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    frames: list[list[Row]] = [[_person(100 + 4 * i)] for i in range(12)]
    frames[5] = frames[6] = []
    outs = _run(tracker, frames)
    assert _ids(outs[5]) == _ids(outs[6]) == []  # gaps are not invented
    assert {tuple(_ids(o)) for i, o in enumerate(outs) if i not in (0, 5, 6)} == {(1,)}


@pytest.mark.parametrize("fps", [2.0, 5.0, 25.0])
def test_lost_track_budget_is_in_seconds_of_the_frame_clock(fps: float) -> None:
    tracker = CameraTracker(TrackerConfig(lost_track_seconds=1.0), "cam", frame_rate=fps)
    seen = [[_person(100)] for _ in range(4)]
    short_gap = int(0.8 * fps) - 1  # frames missing: a bit under 1 s between sightings
    long_gap = int(1.5 * fps)
    frames = seen + [[]] * short_gap + seen + [[]] * long_gap + seen
    outs = _run(tracker, frames, fps=fps)
    ids = [_ids(o) for o in outs if o.tracks]
    assert ids[0] == [1]
    first_after_short = ids[len(seen) - 1]  # index of the first sighting after the short gap
    assert first_after_short == [1]
    assert ids[-1] == [2]  # past the budget: a new track


def test_crossing_paths_keep_their_ids() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    frames = [[_person(50 + 12 * i, 100), _person(330 - 12 * i, 140)] for i in range(25)]
    outs = _run(tracker, frames)
    start = {t.track_id: t.xyxy[1] for t in outs[2].tracks}
    end = {t.track_id: t.xyxy[1] for t in outs[-1].tracks}
    assert start == end  # each id keeps its lane (y) after walking through the other


def test_labels_never_share_a_track_and_ids_are_unique_across_labels() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    same_place = [_person(100, 100, w=80, h=80), ("vehicle", 0.9, 100, 100, 180, 180)]
    outs = _run(tracker, [same_place] * 5)
    labels = {t.track_id: t.label for o in outs for t in o.tracks}
    assert sorted(labels.values()) == ["person", "vehicle"]
    # The person leaves; a forklift appears exactly where they stood: a new id, never theirs.
    outs = _run(tracker, [[("forklift", 0.9, 100, 100, 180, 180)]] * 3, start=5)
    forklift_ids = {t.track_id for o in outs for t in o.tracks if t.label == "forklift"}
    assert len(forklift_ids) == 1
    assert forklift_ids.isdisjoint(labels)


def test_never_mutates_its_input() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    rows = [_person(100), _hat(100), ("vehicle", 0.6, 300, 200, 400, 260)]
    for i in range(4):
        det = _det([(r[0], r[1], r[2] + 3 * i, r[3], r[4] + 3 * i, r[5]) for r in rows])
        frame = _frame(i)
        before = (det.xyxy.copy(), det.confidence.copy(), det.label.copy(), frame.image.copy())
        out = tracker.update(det, frame)
        assert np.array_equal(det.xyxy, before[0])
        assert np.array_equal(det.confidence, before[1])
        assert np.array_equal(det.label, before[2])
        assert np.array_equal(frame.image, before[3])
        assert not det.xyxy.flags.writeable
        assert out.detections is det


def test_per_track_state_stays_bounded_on_a_long_stream() -> None:
    tracker = CameraTracker(TrackerConfig(lost_track_seconds=1.0), "cam")
    sizes: list[int] = []
    max_id = 0
    for i in range(3000):
        rows: list[Row] = []
        for lane in range(4):  # four people at a time, each walks through in 30 frames
            born = i - (i + 7 * lane) % 30
            x = 20 + 12 * (i - born)
            rows.append(_person(x, 20 + 80 * lane, h=60))
            rows.append(_hat(x, 20 + 80 * lane, label="hardhat" if lane % 2 else "no_hardhat"))
        if i % 50 < 5:
            rows.append(("vehicle", 0.9, 10, 300, 90, 350))
        out = tracker.update(_det(rows), _frame(i))
        sizes.append(tracker.state_size)
        max_id = max([max_id, *_ids(out)])
    assert max_id > 300  # hundreds of people came and went ...
    assert max(sizes) <= 4 * 8 + 3  # ... but only the living (plus the lost budget) are kept
    assert max(sizes[-500:]) <= max(sizes[:500]) + 2


def test_ppe_state_is_voted_so_one_bad_frame_does_not_flip_it() -> None:
    tracker = CameraTracker(TrackerConfig(ppe_window=5), "cam")
    frames: list[list[Row]] = []
    for i in range(20):
        x = 100 + 2 * i
        if i < 8:
            rows = [_person(x), _hat(x)]
        elif i == 8:
            rows = [_person(x)]  # the hat was missed
        elif i == 9:
            rows = [_person(x), _hat(x, label="no_hardhat", conf=0.6)]  # or misread once
        else:
            rows = [_person(x), _hat(x, label="no_hardhat")]
        frames.append(rows)
    outs = _run(tracker, frames)
    states = [o.tracks[0].attributes["hardhat"] for o in outs[1:]]
    assert states[:10] == [PPEState.PRESENT] * 10  # frames 1-10: one miss, one misread
    assert states[10] is PPEState.ABSENT  # frame 11: three absent votes clearly win
    assert states[-1] is PPEState.ABSENT
    assert outs[-1].tracks[0].attribute_confidence["hardhat"] == pytest.approx(0.8)


def test_attributes_cover_the_items_this_camera_detects_and_only_persons_get_them() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    rows = [_person(100), _hat(100), _person(300), ("no_vest", 0.7, 302, 130, 338, 160)]
    rows.append(("vehicle", 0.9, 10, 250, 90, 300))
    out = _run(tracker, [rows] * 4)[-1]
    by_x = {t.xyxy[0]: t for t in out.tracks}
    assert dict(by_x[100.0].attributes) == {"hardhat": PPEState.PRESENT, "vest": PPEState.UNKNOWN}
    assert dict(by_x[300.0].attributes) == {"hardhat": PPEState.UNKNOWN, "vest": PPEState.ABSENT}
    assert by_x[300.0].attribute_confidence["hardhat"] == 0.0
    assert dict(by_x[10.0].attributes) == {}


def test_fixed_ppe_items_are_reported_before_any_is_seen() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam", ppe_items=["hardhat", "vest"])
    out = _run(tracker, [[_person(100)]] * 3)[-1]
    assert dict(out.tracks[0].attributes) == {
        "hardhat": PPEState.UNKNOWN,
        "vest": PPEState.UNKNOWN,
    }


@pytest.mark.parametrize(("item", "region"), [("helmet", "head"), ("safety_vest", "torso")])
def test_an_item_outside_the_built_in_list_is_worn_once_its_no_class_is_seen(
    item: str, region: str
) -> None:
    """Review repro t5: ``helmet`` boxes became tracked objects, ``no_helmet`` was matched to the
    whole body and no wearer could ever be present."""
    tracker = CameraTracker(TrackerConfig(), "cam", ppe_items={item})
    a, b = _person(100), _person(300)
    y = {"head": (96, 114), "torso": (130, 160)}[region]  # where the item sits on a 100 px person
    worn: Row = (item, 0.8, 110, y[0], 130, y[1])
    knees: Row = (f"no_{item}", 0.7, 310, 170, 330, 190)  # B's bare box at its knees
    out = _run(tracker, [[a, b, worn, knees]] * 6)[-1]
    assert [(t.label, t.attributes[item]) for t in out.tracks] == [
        ("person", PPEState.PRESENT),
        ("person", PPEState.UNKNOWN),  # not the whole body: a box at the knees is no helmet
    ]


def test_head_mode_tracks_hat_boxes_as_persons() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam", track_heads=True)
    frames = [
        [_hat(100 + 3 * i), _hat(300 - 3 * i, label="no_hardhat"), ("vest", 0.5, 0, 0, 9, 9)]
        for i in range(6)
    ]
    frames[3] = frames[3][:1]  # one head missed for a frame
    outs = _run(tracker, frames)
    assert tracker.head_mode
    final = {t.xyxy[0]: t for t in outs[-1].tracks}
    assert {t.label for t in final.values()} == {"person"}
    assert final[125.0].attributes["hardhat"] is PPEState.PRESENT
    assert final[295.0].attributes["hardhat"] is PPEState.ABSENT
    assert final[295.0].attributes["vest"] is PPEState.UNKNOWN
    assert len({i for o in outs for i in _ids(o)}) == 2


def test_head_mode_merges_a_hat_and_a_bare_head_on_the_same_head() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam", track_heads=True)
    outs = _run(tracker, [[_hat(100, conf=0.9), _hat(101, label="no_hardhat", conf=0.4)]] * 4)
    assert len(outs[-1].tracks) == 1


def test_auto_head_mode_starts_without_persons_and_ignores_a_stray_person_box() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    frames: list[list[Row]] = [[_hat(100 + 2 * i)] for i in range(20)]
    frames[10] = [*frames[10], ("person", 0.3, 0, 0, 30, 80)]  # a PPE model's weak Person class
    outs = _run(tracker, frames)
    assert tracker.head_mode
    assert len({i for o in outs for i in _ids(o)}) == 1
    assert outs[-1].tracks[0].attributes["hardhat"] is PPEState.PRESENT


def test_auto_mode_stays_on_persons_when_a_person_model_runs() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    frames: list[list[Row]] = [[_person(100 + 2 * i), _hat(100 + 2 * i)] for i in range(20)]
    for i in (4, 5, 6, 12):
        frames[i] = [_hat(100 + 2 * i)]  # the small person is missed, the hat is not
    outs = _run(tracker, frames)
    assert not tracker.head_mode
    assert {i for o in outs for i in _ids(o)} == {1}


def test_auto_head_mode_counts_only_heads_that_could_start_a_track() -> None:
    """Weak bare-head boxes (the example keeps them from 0.1) are no sign that the camera has no
    person model: they never switch it, and one strong head box among them still does."""
    tracker = CameraTracker(TrackerConfig(), "cam")
    _run(tracker, [[_hat(100, label="no_hardhat", conf=0.2)]] * 20)
    assert not tracker.head_mode
    _run(tracker, [[_hat(100, label="no_hardhat", conf=0.2), _hat(300)]] * 3, start=20)
    assert tracker.head_mode


def test_auto_mode_switches_back_to_persons_when_persons_keep_coming() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    _run(tracker, [[_hat(100)]] * 5)
    assert tracker.head_mode
    outs = _run(tracker, [[_person(100), _hat(100)]] * 12, start=5)
    assert not tracker.head_mode
    assert outs[-1].tracks[0].label == "person"
    assert outs[-1].tracks[0].xyxy == (100.0, 100.0, 140.0, 200.0)


def test_a_restarted_stream_clock_keeps_tracking() -> None:
    tracker = CameraTracker(TrackerConfig(), "cam")
    for i in range(4):
        tracker.update(_det([_person(100)]), _frame(i))
    # The source reconnected: pts restarts at 0, wall time moved on by 0.4 s.
    restarted = Frame("cam", 4, 0.0, 1_700_000_001.2, IMAGE)
    out = tracker.update(_det([_person(100)]), restarted)
    assert _ids(out) == [1]


def test_a_resolution_change_keeps_the_ids_of_the_people_in_view() -> None:
    # A camera switched from 960x720 to 480x360 mid-stream (a profile or firmware change): the
    # same two workers, their boxes now at half the pixels, are the same two tracks.
    big = np.zeros((720, 960, 3), np.uint8)
    tracker = CameraTracker(TrackerConfig(), "cam")
    ids: list[list[int]] = []
    for seq in range(12):
        half = seq >= 6
        scale = 0.5 if half else 1.0
        rows = [
            _person((x + 8 * seq) * scale, 200 * scale, w=80 * scale, h=200 * scale)
            for x in (200, 600)
        ]
        frame = Frame("cam", seq, seq / 5, 1_700_000_000.0 + seq / 5, IMAGE if half else big)
        ids.append(_ids(tracker.update(_det(rows), frame)))
    assert ids[5] == [1, 2]
    assert all(row == [1, 2] for row in ids[6:]), ids


def test_head_mode_can_use_its_own_thresholds_for_weakly_scored_heads() -> None:
    frames = [[_hat(100 + 2 * i, conf=0.35)] for i in range(5)]
    plain = CameraTracker(TrackerConfig(), "cam", track_heads=True)
    assert _run(plain, frames)[-1].tracks == ()  # 0.35 never starts a track at high 0.5
    head_config = TrackerConfig(high_confidence=0.3, activation_confidence=0.25)
    tuned = CameraTracker(TrackerConfig(), "cam", track_heads=True, head_config=head_config)
    assert _ids(_run(tuned, frames)[-1]) == [1]


def test_weak_persons_get_a_track_and_a_ppe_verdict_only_with_low_score_tracks() -> None:
    # A strong worker and a weak one (0.4, below the 0.6 start) beside a bare-head box.
    frames = [[_person(50), _person(300, conf=0.4), _hat(300, label="no_hardhat")]] * 6
    plain = _run(CameraTracker(TrackerConfig(), "cam", ppe_items={"hardhat"}), frames)
    assert len(plain[-1].tracks) == 1, "by default a weak person is never tracked"
    low = _run(
        CameraTracker(TrackerConfig(low_score_tracks=0.3), "cam", ppe_items={"hardhat"}), frames
    )
    # One frame later than a strong track (min_frames + 1), and never reported twice.
    assert [len(out.tracks) for out in low] == [0, 1, 2, 2, 2, 2]
    weak = next(t for t in low[-1].tracks if t.xyxy[0] == 300)
    strong = next(t for t in low[-1].tracks if t.xyxy[0] == 50)
    assert weak.label == "person"
    assert weak.attributes["hardhat"] is PPEState.ABSENT
    assert (weak.ppe_only, strong.ppe_only) == (True, False), "only PPE rules see the weak one"
    assert len({t.track_id for t in low[-1].tracks}) == 2


def test_low_score_tracks_leave_the_person_tracks_as_they_were() -> None:
    """Turning low-score PPE subjects on changes no person track: same boxes, frame by frame.

    Random walkers scored across the track-start threshold, some dipping below it for a few
    frames, and random clutter; the person tracks (not ``ppe_only``) must be the same boxes with
    the option on as off, or PETS09's MOTA would move (it fell to 0.572 from 0.761 when low-score
    tracks were person tracks)."""
    rng = np.random.default_rng(7)
    frames = []
    walkers = rng.uniform(20, 560, size=(6, 2))
    steps = rng.uniform(-4, 4, size=(6, 2))
    for _ in range(60):
        walkers += steps
        rows = [
            _person(float(x), y=float(y) % 300, conf=float(rng.uniform(0.25, 0.95)))
            for x, y in walkers
        ]
        rows += [
            _person(float(rng.uniform(0, 600)), conf=float(rng.uniform(0.1, 0.5)))
            for _ in range(int(rng.integers(0, 3)))
        ]
        frames.append(rows)
    plain = _run(CameraTracker(TrackerConfig(), "cam", ppe_items={"hardhat"}), frames)
    low = _run(
        CameraTracker(TrackerConfig(low_score_tracks=0.3), "cam", ppe_items={"hardhat"}), frames
    )
    assert any(t.ppe_only for out in low for t in out.tracks), "the option made PPE subjects"
    for a, b in zip(plain, low, strict=True):
        assert sorted(t.xyxy for t in a.tracks) == sorted(
            t.xyxy for t in b.tracks if not t.ppe_only
        )


def test_a_second_box_on_a_head_a_person_took_is_no_lone_head() -> None:
    """Two boxes on one worker's head (a head detector's and the PPE model's, or a bare box under
    a hat box) are one head: the person takes one, and the other must not become a head-first
    subject of its own (a duplicate that would carry its own verdict, and a false alarm when it is
    the wrong box). A lone head beside the worker still is one."""
    shifted: Row = ("no_hardhat", 0.6, 62.0, 98.0, 81.0, 115.0)  # IoU ~0.7 with the worker's hat
    lone = _hat(300, label="no_hardhat", conf=0.5)
    frames = [[_person(50), _hat(50), shifted, lone]] * 6
    out = _run(CameraTracker(TrackerConfig(head_tracks=0.3), "cam", ppe_items={"hardhat"}), frames)
    subjects = sorted(out[-1].tracks, key=lambda t: t.xyxy[0])
    assert [(t.ppe_only, t.xyxy[0]) for t in subjects] == [(False, 50.0), (True, 310.0)]


def test_a_head_no_person_box_takes_is_tracked_as_a_person_only_with_head_tracks() -> None:
    # A detected worker in a hard hat, a bare head whose wearer the person model missed (0.5),
    # and a fainter head (0.2, below the 0.3 start).
    lone = _hat(300, label="no_hardhat", conf=0.5)
    faint = _hat(150, py=250, conf=0.2)
    frames = [[_person(50), _hat(50), lone, faint]] * 6
    plain = _run(CameraTracker(TrackerConfig(), "cam", ppe_items={"hardhat"}), frames)
    assert len(plain[-1].tracks) == 1, "by default only detected persons carry PPE"
    heads = _run(
        CameraTracker(TrackerConfig(head_tracks=0.3), "cam", ppe_items={"hardhat"}), frames
    )
    assert [len(out.tracks) for out in heads] == [0, 2, 2, 2, 2, 2]
    worker, head = sorted(heads[-1].tracks, key=lambda t: t.xyxy[0])
    # The worker's own hat never becomes a second subject; the lone head is one, with its box.
    assert worker.attributes["hardhat"] is PPEState.PRESENT
    assert head.label == "person" and head.xyxy == tuple(float(v) for v in lone[2:])
    assert head.attributes["hardhat"] is PPEState.ABSENT
    assert (head.ppe_only, worker.ppe_only) == (True, False)
    assert len({t.track_id for t in heads[-1].tracks}) == 2
