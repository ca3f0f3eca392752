"""line_crossing: line sides, confirmed crossings, flicker, pruning, incidents from the pair."""

from __future__ import annotations

from itertools import groupby, pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_factories import H, W, frame, person, rule, rule_set

from safewatch.config.rules import LineCrossingRule
from safewatch.domain import Frame, Phase
from safewatch.domain.lines import Line, Side
from safewatch.incidents import ChangeKind, EvidenceStore, IncidentManager
from safewatch.rules import RuleEngine
from safewatch.rules.line_crossing import LineCrossingMonitor
from safewatch.storage import IncidentRepository, create_engine_for

DOOR = ((0.1, 0.5), (0.9, 0.5))
"""Horizontal, drawn left to right: ``left`` is above it (y < 250 px), ``right`` below."""
LINE = Line("door", "cam", *DOOR)
Y = {"L": 200.0, "R": 300.0}
"""Foot heights on each side of the door."""
X_ON, X_OFF = 500.0, 50.0
"""Level with the segment, and beyond its left end (x < 100 px)."""


def _rule(**fields: object) -> LineCrossingRule:
    built = rule(id="door-count", kind="line_crossing", line="door", **fields)
    assert isinstance(built, LineCrossingRule)
    return built


def _feet(sequence: str) -> list[tuple[float, float] | None]:
    """``L``/``R``: level with the line on that side; ``l``/``r``: beyond its end; ``.``: unseen."""
    feet: list[tuple[float, float] | None] = []
    for code in sequence:
        if code == ".":
            feet.append(None)
        else:
            feet.append((X_ON if code.isupper() else X_OFF, Y[code.upper()]))
    return feet


def _crossings(
    monitor: LineCrossingMonitor, sequence: str, dt: float = 0.2
) -> list[tuple[str, float, float]]:
    found = []
    for index, foot in enumerate(_feet(sequence)):
        tracks = [] if foot is None else [person(1, foot)]
        for c in monitor.crossings(frame(index * dt, tracks)):
            found.append((c.direction, c.since, c.at))
    return found


@pytest.mark.parametrize(
    ("point", "side"),
    [
        ((500, 200), Side.LEFT),
        ((500, 300), Side.RIGHT),
        ((500, 250), Side.RIGHT),  # exactly on the line: the tie goes right
        ((100, 200), Side.LEFT),  # level with the first point
        ((99, 200), Side.NONE),  # beyond the first end
        ((901, 300), Side.NONE),  # beyond the second end
    ],
)
def test_line_sides(point: tuple[float, float], side: Side) -> None:
    assert LINE.sides(np.array([point], dtype=np.float64), W, H).tolist() == [side]


def test_vertical_line_sides_follow_its_direction() -> None:
    down = Line("v", "cam", (0.5, 0.1), (0.5, 0.9))  # walking down the screen
    up = Line("v", "cam", (0.5, 0.9), (0.5, 0.1))
    points = np.array([[400, 250], [600, 250]], dtype=np.float64)
    assert down.sides(points, W, H).tolist() == [Side.RIGHT, Side.LEFT]
    assert up.sides(points, W, H).tolist() == [Side.LEFT, Side.RIGHT]


def test_an_end_on_the_picture_edge_does_not_cut_the_sides() -> None:
    # From the left edge to the bottom edge: nobody can walk round either end.
    edge = Line("ramp", "cam", (0.0, 0.2), (0.8, 1.0))
    # At y = 0.97 the line is at x = 0.77: x = 0.9 is beyond the segment's bottom end (the band
    # level with it stops at x ~ 0.82 there), yet has a side, the other one from x = 0.7.
    beyond_b = np.array([[900.0, 485.0], [700.0, 485.0]])
    assert edge.sides(beyond_b, W, H).tolist() == [Side.LEFT, Side.RIGHT]
    # An end within 0.01 of the edge counts as on it; one 0.05 inside is a free end.
    near = Line("ramp", "cam", (0.3, 0.2), (0.8, 0.995))
    inside = Line("ramp", "cam", (0.3, 0.2), (0.8, 0.95))
    assert near.sides(np.array([[900.0, 495.0]]), W, H).tolist() == [Side.LEFT]
    assert inside.sides(np.array([[900.0, 495.0]]), W, H).tolist() == [Side.NONE]
    assert near.sides(np.array([[200.0, 10.0]]), W, H).tolist() == [Side.NONE]  # free end


def _walk(line: Line, feet: list[tuple[float, float]]) -> list[float]:
    """One person at normalised ``feet`` positions, 5 fps; times of the crossings reported."""
    counting = rule(id="ramp-count", kind="line_crossing", line="ramp")
    engine = RuleEngine(rule_set([counting], lines={"ramp": (line.a, line.b)}))
    found = []
    for index, (x, y) in enumerate(feet):
        events = engine.evaluate(frame(index * 0.2, [person(1, (x * W, y * H))]))
        found += [e.at for e in events if e.phase is Phase.STARTED]
    return found


def test_a_slanted_line_to_the_edge_counts_crossings_near_the_edge() -> None:
    # Walking left to right at y = 0.97 across a line drawn from the left edge to the bottom
    # edge: level with the segment only until x ~ 0.8, so the walk left the band two frames
    # after crossing (at x = 0.77) and the side it had just taken was wiped: no crossing.
    feet = [(0.57 + 0.03 * i, 0.97) for i in range(14)]
    assert _walk(Line("ramp", "cam", (0.0, 0.2), (0.8, 1.0)), feet) == [pytest.approx(1.8)]


def test_walking_round_a_free_end_is_still_no_crossing() -> None:
    # The same kind of line with its top end inside the picture: round that end and down the
    # other side, established on both sides, is not a crossing.
    line = Line("ramp", "cam", (0.3, 0.2), (0.8, 1.0))
    feet = [(0.3, 0.6)] * 3 + [(0.1, 0.02)] * 3 + [(0.3, 0.02)] * 3 + [(0.7, 0.4)] * 3
    assert line.sides(np.array([[x * W, y * H] for x, y in feet[::3]]), W, H).tolist() == [
        Side.RIGHT,
        Side.NONE,
        Side.NONE,
        Side.LEFT,
    ]
    assert _walk(line, feet) == []


def test_a_line_needs_two_points() -> None:
    with pytest.raises(ValueError, match="two equal points"):
        Line("x", "cam", (0.2, 0.2), (0.2, 0.2))


@pytest.mark.parametrize(
    ("sequence", "confirm", "expected"),
    [
        ("LLLRRR", 3, ["left_to_right"]),
        ("RRRLLL", 3, ["right_to_left"]),
        ("LLLRR", 3, []),  # the far side is not confirmed yet
        ("LLRRR", 3, []),  # the near side never was
        ("LLLRLRLRLRLL", 3, []),  # a box flickering over the line
        ("LLLRRLRRLRRLLL", 3, []),  # runs of two on the far side never confirm
        ("LLLRRLRRR", 3, ["left_to_right"]),  # a broken run restarts, then confirms
        ("LLLRRRLLL", 3, ["left_to_right", "right_to_left"]),
        ("LLLrrrRRR", 3, []),  # went round the end of the line
        ("LLLlllLLL", 3, []),  # beyond the end and back on the same side
        ("LLLlLRRR", 3, ["left_to_right"]),  # one frame of jitter past the end keeps the side
        ("LLLllLRRR", 3, ["left_to_right"]),  # as do two, fewer than confirm_frames
        ("LLLlllLRRR", 3, []),  # three (confirm_frames) beyond the end forget it
        ("LLLrRRR", 3, []),  # back on the other side: round the end, however quickly
        ("LLLlRRR", 3, []),
        ("LLLRRRRRRRRR", 3, ["left_to_right"]),  # staying on the new side counts once
        ("LRLR", 1, ["left_to_right", "right_to_left", "left_to_right"]),
        ("LL..LRR..R", 2, ["left_to_right"]),  # short gaps do not break a run
    ],
)
def test_crossing_sequences(sequence: str, confirm: int, expected: list[str]) -> None:
    monitor = LineCrossingMonitor(_rule(confirm_frames=confirm), LINE)
    assert [direction for direction, _, _ in _crossings(monitor, sequence)] == expected


def test_since_is_the_first_frame_on_the_new_side() -> None:
    monitor = LineCrossingMonitor(_rule(confirm_frames=3), LINE)
    assert _crossings(monitor, "LLLRRR") == [("left_to_right", pytest.approx(0.6), 1.0)]


def test_min_duration_holds_a_crossing_back() -> None:
    monitor = LineCrossingMonitor(_rule(confirm_frames=1, min_duration="0.5s"), LINE)
    found = _crossings(monitor, "LLLLRRRRR")  # 0.2 s frames: right from 0.8 s
    assert found == [("left_to_right", pytest.approx(0.8), pytest.approx(1.4))]


def test_a_track_missing_longer_than_grace_forgets_its_side() -> None:
    kept = LineCrossingMonitor(_rule(grace="1s"), LINE)
    assert len(_crossings(kept, "LLL....RRR")) == 1  # unseen for 1.0 s: still known
    lost = LineCrossingMonitor(_rule(grace="1s"), LINE)
    assert _crossings(lost, "LLL......RRR") == []  # unseen for 1.4 s: starts again


def test_one_missed_frame_on_a_slow_camera_keeps_the_side() -> None:
    """At 0.5 fps the grace in force is 3 s (1.5 frame intervals), as for episodes: a track
    missing from one frame kept its side only at 1 fps and faster, so a walk across the line
    with one missed detection was not counted at 0.5 fps."""
    for sequence in ("LLL.RRR", "LL.L.RRR"):
        monitor = LineCrossingMonitor(_rule(confirm_frames=2), LINE)
        assert len(_crossings(monitor, sequence, dt=2.0)) == 1, sequence
    gone = LineCrossingMonitor(_rule(confirm_frames=2), LINE)
    assert _crossings(gone, "LLL..RRR", dt=2.0) == []  # two missed frames: starts again


def test_history_is_pruned() -> None:
    monitor = LineCrossingMonitor(_rule(grace="1s"), LINE)
    for index in range(200):  # 200 people walk past, one per frame, each seen once
        monitor.crossings(frame(index * 0.2, [person(index, (X_ON, 200.0))]))
        assert len(monitor) <= 6
    monitor.crossings(frame(200 * 0.2 + 2.0, []))
    assert len(monitor) == 0


def test_objects_and_anchor() -> None:
    # A tall box whose feet stay below the line while its centre crosses it.
    centre_rule = _rule(anchor="centre", objects=["forklift"], confirm_frames=2)
    monitor = LineCrossingMonitor(centre_rule, LINE)
    found = []
    for index, foot_y in enumerate([180.0, 180.0, 380.0, 380.0]):
        tracks = [
            person(1, (X_ON, foot_y), size=(40, 100), label="forklift"),
            person(2, (X_ON, foot_y), size=(40, 100)),  # a person: not counted
        ]
        found += [(c.track_id, c.direction) for c in monitor.crossings(frame(index * 0.2, tracks))]
    assert found == [(1, "left_to_right")]


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("any", ["left to right", "right to left"]),
        ("left_to_right", ["left to right"]),
        ("right_to_left", ["right to left"]),
    ],
)
def test_direction_filter(direction: str, expected: list[str]) -> None:
    monitor = LineCrossingMonitor(_rule(direction=direction), LINE)
    messages = []
    for index, foot in enumerate(_feet("LLLRRRLLL")):
        assert foot is not None
        messages += [o.message for o in monitor.observe(frame(index * 0.2, [person(4, foot)]))]
    assert messages == [f"person #4 crossed line door ({d})" for d in expected]


def _engine(**fields: object) -> RuleEngine:
    return RuleEngine(rule_set([_rule(**fields)], lines={"door": DOOR}))


def test_engine_reports_a_started_ended_pair_per_crossing() -> None:
    engine = _engine()
    events = []
    for index, foot in enumerate(_feet("LLLRRR")):
        assert foot is not None
        events += engine.evaluate(frame(index * 0.2, [person(4, foot)]))
    assert [(e.phase, e.started_at, e.at, e.track_ids) for e in events] == [
        (Phase.STARTED, pytest.approx(0.6), 1.0, (4,)),
        (Phase.ENDED, pytest.approx(0.6), 1.0, (4,)),
    ]
    assert events[0].rule_kind == "line_crossing"
    assert engine.open_state_count() == 1  # the track's side history, no open episode


def test_cooldown_suppresses_a_quick_second_crossing() -> None:
    engine = _engine(cooldown="10s")
    crossings = []
    for index, foot in enumerate(_feet("LLLRRRLLLRRR")):
        assert foot is not None
        events = engine.evaluate(frame(index * 0.2, [person(4, foot)]))
        crossings += [e.at for e in events if e.phase is Phase.STARTED]
    assert crossings == [1.0]


def test_the_rule_runs_only_on_the_lines_camera() -> None:
    engine = _engine()
    for index, foot in enumerate(_feet("LLLRRR")):
        assert foot is not None
        assert engine.evaluate(frame(index * 0.2, [person(4, foot)], camera="other")) == []


def test_incident_manager_opens_and_closes_one_incident_per_crossing(tmp_path: Path) -> None:
    db = create_engine_for("sqlite:///audit.db", tmp_path)
    try:
        repository = IncidentRepository(db)
        manager = IncidentManager(repository, EvidenceStore(tmp_path / "evidence"))
        engine = _engine()
        changes = []
        for index, foot in enumerate(_feet("LLLRRRLLL")):
            assert foot is not None
            tracked = frame(1000.0 + index * 0.2, [person(4, foot)])
            image = np.zeros((H, W, 3), np.uint8)
            picture = Frame("cam", tracked.seq, tracked.pts, tracked.timestamp, image)
            changes += manager.handle(engine.evaluate(tracked), tracked, picture)
        assert [c.kind for c in changes] == [ChangeKind.OPENED, ChangeKind.CLOSED] * 2
        assert manager.open_incidents == []
        stored = [repository.get(c.incident.id) for c in changes[1::2]]
        assert [(i.started_at, i.ended_at) for i in stored] == [
            (pytest.approx(1000.6), pytest.approx(1001.0)),
            (pytest.approx(1001.2), pytest.approx(1001.6)),
        ]
        assert stored[0].id != stored[1].id
        assert stored[0].snapshot is not None
    finally:
        db.dispose()


def _reference_count(sides: list[str], confirm: int) -> int:
    """Crossings as run lengths see them: changes between runs of at least ``confirm`` frames."""
    long_runs = [side for side, run in groupby(sides) if len(list(run)) >= confirm]
    return sum(1 for a, b in pairwise(long_runs) if a != b)


@given(
    confirm=st.integers(min_value=2, max_value=5),
    flicker=st.lists(st.integers(min_value=1, max_value=4), max_size=12),
)
@settings(max_examples=60, deadline=None)
def test_flicker_shorter_than_confirm_never_counts(confirm: int, flicker: list[int]) -> None:
    # Established on the left, then any number of excursions to the right each shorter than
    # `confirm` frames, separated by single frames back on the left.
    sequence = "L" * confirm
    for run in flicker:
        sequence += "R" * min(run, confirm - 1) + "L"
    monitor = LineCrossingMonitor(_rule(confirm_frames=confirm), LINE)
    assert _crossings(monitor, sequence) == []


@given(
    confirm=st.integers(min_value=1, max_value=4),
    sides=st.lists(st.sampled_from("LR"), max_size=40),
)
@settings(max_examples=80, deadline=None)
def test_crossings_match_run_lengths(confirm: int, sides: list[str]) -> None:
    monitor = LineCrossingMonitor(_rule(confirm_frames=confirm), LINE)
    found = _crossings(monitor, "".join(sides))
    assert len(found) == _reference_count(sides, confirm)
    # Directions alternate: a track cannot cross twice the same way without crossing back.
    directions = [direction for direction, _, _ in found]
    assert all(a != b for a, b in pairwise(directions))


def test_memory_survives_a_reporting_change_but_not_a_moved_line() -> None:
    engine = _engine()
    for index, foot in enumerate(_feet("LLL")):
        assert foot is not None
        engine.evaluate(frame(index * 0.2, [person(4, foot)]))
    severity = rule_set([_rule(severity="high")], lines={"door": DOOR})
    assert engine.replace_rules(severity) == []
    events = []
    for index, foot in enumerate(_feet("RRR"), start=3):
        assert foot is not None
        events += engine.evaluate(frame(index * 0.2, [person(4, foot)]))
    assert [(e.phase, e.severity) for e in events] == [
        (Phase.STARTED, "high"),
        (Phase.ENDED, "high"),
    ]
    # Moving the line is a new test: the side history starts again, nothing is counted.
    moved = rule_set([_rule()], lines={"door": ((0.1, 0.55), (0.9, 0.55))})
    engine.replace_rules(moved)
    assert engine.open_state_count() == 0
    for index, foot in enumerate(_feet("LL"), start=6):
        assert foot is not None
        assert engine.evaluate(frame(index * 0.2, [person(4, foot)])) == []


def test_finish_and_schedule_drop_the_side_history() -> None:
    engine = _engine()
    for index, foot in enumerate(_feet("LLL")):
        assert foot is not None
        engine.evaluate(frame(index * 0.2, [person(4, foot)]))
    assert engine.open_state_count() == 1
    assert engine.finish("cam") == []
    assert engine.open_state_count() == 0
    # Outside its schedule (a Sunday-only rule on a Thursday) the rule keeps no memory.
    sunday = RuleEngine(rule_set([_rule(schedule={"days": ["sun"]})], lines={"door": DOOR}))
    for index, foot in enumerate(_feet("LLLRRR")):
        assert foot is not None
        assert sunday.evaluate(frame(index * 0.2, [person(4, foot)])) == []
    assert sunday.open_state_count() == 0
