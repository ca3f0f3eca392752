"""proximity: person-to-vehicle and person-to-machine distances, approaching, pixels and metres."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rules_factories import frame, person, rule, rule_set

from safewatch.config.rules import ProximityRule
from safewatch.domain.events import Phase
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import Track
from safewatch.rules import Calibration, RuleEngine
from safewatch.rules.measure import Plane, point_polygon_distance, point_segment_distance
from safewatch.rules.proximity import MACHINE, ProximityMonitor

# 1 px = 1 cm on the floor (1000 x 500 px frame over a 10 m x 5 m floor).
CM = Calibration.from_points([[0, 0], [1, 0], [1, 1], [0, 1]], [[0, 0], [10, 0], [10, 5], [0, 5]])
PRESS = Zone(
    "press", "cam", ((0.6, 0.2), (0.8, 0.2), (0.8, 0.6), (0.6, 0.6))
)  # x 600-800, y 100-300
FPS = 5.0


def _rule(**fields: object) -> ProximityRule:
    built = rule(
        id="forklift-distance",
        kind="proximity",
        **{"objects": ["forklift"], "max_distance": "150px", **fields},
    )
    assert isinstance(built, ProximityRule)
    return built


def forklift(track_id: int, x1: float, x2: float, bottom: float, confidence: float = 0.9) -> Track:
    return Track(track_id, "forklift", (x1, bottom - 120.0, x2, bottom), confidence)


@pytest.mark.parametrize(
    ("foot", "expected"),
    [
        ((500.0, 400.0), 100.0),  # straight in front of the bottom edge (y 300)
        ((500.0, 300.0), 0.0),  # touching it
        ((100.0, 300.0), 200.0),  # beside its left end (x 300)
        ((200.0, 300.0), 100.0),
        ((500.0, 150.0), 150.0),  # behind it: distance to the bottom edge
    ],
)
def test_pixel_distance_to_the_bottom_edge(foot: tuple[float, float], expected: float) -> None:
    monitor = ProximityMonitor(_rule(), Plane())
    (gap,) = monitor.gaps(frame(0, [person(1, foot), forklift(9, 300.0, 700.0, 300.0)]))
    assert (gap.subject, gap.hazard) == (1, 9)
    assert gap.distance == pytest.approx(expected)


@pytest.mark.parametrize(
    ("foot", "expected"),
    [
        ((500.0, 250.0), 0.0),  # feet in the box's lower half: beside the forklift
        ((300.0, 240.0), 0.0),  # on its left edge, at mid-height
        ((500.0, 200.0), 100.0),  # in its upper half: behind it, to the bottom edge
        ((500.0, 170.0), 130.0),  # just above the box: still to the bottom edge
    ],
)
def test_pixel_distance_from_inside_the_box(foot: tuple[float, float], expected: float) -> None:
    monitor = ProximityMonitor(_rule(), Plane())
    (gap,) = monitor.gaps(frame(0, [person(1, foot), forklift(9, 300.0, 700.0, 300.0)]))
    assert gap.distance == pytest.approx(expected)


@pytest.mark.parametrize(
    ("foot", "expected"),
    [
        ((500.0, 340.0), 0.0),  # within the box
        ((300.0, 400.0), 100.0),  # beside it: to its left side, not to the frame's bottom
        ((500.0, 245.0), 5.0),  # behind it: to its top
        ((700.0, 150.0), 100.0 * 2**0.5),  # to its top right corner (600, 250)
    ],
)
@pytest.mark.parametrize("bottom", [500.0, 499.0])  # the frame's last row, or a pixel short
def test_a_box_cut_by_the_bottom_of_the_picture(
    foot: tuple[float, float], expected: float, bottom: float
) -> None:
    # A forklift coming into view from below: its real bottom edge is out of the picture.
    cut = Track(9, "forklift", (400.0, 250.0, 600.0, bottom), 0.9)
    (gap,) = ProximityMonitor(_rule(), Plane()).gaps(frame(0, [person(1, foot), cut]))
    assert gap.distance == pytest.approx(expected)


def test_a_cut_box_and_feet_inside_in_metres() -> None:
    monitor = ProximityMonitor(_rule(max_distance="1.5m"), Plane(CM))
    cut = Track(9, "forklift", (400.0, 250.0, 600.0, 500.0), 0.9)
    tracks = [person(1, (500.0, 340.0)), person(2, (300.0, 400.0)), cut]
    assert [o.message for o in monitor.observe(frame(0, tracks))] == [
        "person #1 0.0 m from forklift #9 (min 1.5 m)",
        "person #2 1.0 m from forklift #9 (min 1.5 m)",
    ]


@pytest.mark.parametrize(
    ("foot", "max_distance", "message"),
    [
        ((500.0, 400.0), "150px", "person #1 100 px from forklift #9 (min 150 px)"),
        ((500.0, 400.0), "101px", "person #1 100 px from forklift #9 (min 101 px)"),
        ((500.0, 400.0), "100px", None),  # exactly the closest allowed distance: allowed
        ((500.0, 400.0), "99px", None),
        ((500.0, 480.0), "150px", None),
    ],
)
def test_too_close(foot: tuple[float, float], max_distance: str, message: str | None) -> None:
    monitor = ProximityMonitor(_rule(max_distance=max_distance), Plane())
    tracks = [person(1, foot, confidence=0.95), forklift(9, 300.0, 700.0, 300.0, confidence=0.7)]
    observations = monitor.observe(frame(0, tracks))
    assert [o.message for o in observations] == ([message] if message else [])
    if observations:
        assert observations[0].track_ids == (1, 9)
        assert observations[0].confidence == pytest.approx(0.7)


@pytest.mark.parametrize("limit", ["0px", "0m", "0cm"])
def test_a_max_distance_of_nothing_is_refused(limit: str) -> None:
    """Contact is distance 0 and each test is ``distance < max_distance``: a limit of 0 loaded
    and made a rule that could never report anything."""
    with pytest.raises(ValueError, match="must be more than 0"):
        _rule(max_distance=limit)


@pytest.mark.parametrize("approaching", [None, "10px/s"])
def test_exactly_max_distance_is_allowed(approaching: str | None) -> None:
    """``max_distance`` is the closest allowed distance (as a speed or dwell limit allows exactly
    the limit), but a person exactly 40 px from a forklift or a machine zone was reported."""
    monitor = ProximityMonitor(
        _rule(max_distance="40px", approaching=approaching), Plane(), machine=PRESS
    )
    messages = []
    for i in range(8):  # the forklift drives at the person, stopping exactly 40 px away
        bottom = min(300.0, 100.0 + 50.0 * i)
        tracks = [
            person(1, (400.0, 340.0)),  # 40 px below the forklift's bottom edge (y 300)
            person(2, (560.0, 200.0)),  # 40 px left of the press (x 600-800, y 100-300)
            forklift(9, 300.0, 500.0, bottom),
        ]
        messages += [o.message for o in monitor.observe(frame(i / FPS, tracks))]
        assert [g.distance for g in monitor.gaps(frame(i / FPS, tracks), 40.0)] == []
    assert messages == []


def test_nearest_hazard_is_reported_and_labels_filter() -> None:
    monitor = ProximityMonitor(_rule(), Plane())
    tracks = [
        person(1, (500.0, 420.0)),
        forklift(8, 300.0, 700.0, 300.0),  # 120 px
        forklift(9, 550.0, 650.0, 350.0),  # 70 px (nearest point (550, 350))
        Track(10, "vehicle", (400.0, 300.0, 600.0, 410.0), 0.9),  # not a listed object
    ]
    (observation,) = monitor.observe(frame(0, tracks))
    assert observation.track_ids == (1, 9)


def test_machine_zone_and_metres() -> None:
    monitor = ProximityMonitor(
        _rule(objects=[], machine_zone="press", max_distance="1m"), Plane(CM), PRESS
    )
    inside, near, far = (
        person(1, (700.0, 200.0)),
        person(2, (500.0, 200.0)),
        person(3, (300.0, 200.0)),
    )
    observations = monitor.observe(frame(0, [inside, near, far]))
    assert [(o.subject, o.track_ids, o.zone_id, o.message) for o in observations] == [
        (1, (1,), "press", "person #1 0.0 m from machine zone press (min 1.0 m)"),
        (2, (2,), "press", "person #2 1.0 m from machine zone press (min 1.0 m)"),
    ]
    assert len(monitor) == 0, "no `approaching`: no closing speed, so no pair history is kept"


def test_approaching_needs_a_closing_speed() -> None:
    rule_ = _rule(max_distance="3m", approaching="1m/s")
    monitor = ProximityMonitor(rule_, Plane(CM))
    hits = []
    # A parked forklift 2 m away, then one driving at a person at 2 m/s from 6 m.
    for i in range(10):
        parked = [person(1, (100.0, 450.0)), forklift(9, 50.0, 150.0, 250.0)]
        hits.append(bool(monitor.observe(frame(i / FPS, parked))))
    assert not any(hits)
    monitor = ProximityMonitor(rule_, Plane(CM))
    messages = []
    for i in range(15):
        bottom = 450.0 - 600.0 + 40.0 * i  # 40 cm per frame = 2 m/s towards y 450
        tracks = [person(1, (100.0, 450.0)), forklift(9, 50.0, 150.0, min(bottom, 449.0))]
        messages += [o.message for o in monitor.observe(frame(i / FPS, tracks))]
    assert messages
    # 6 m - 0.4 m per frame: first within 3 m at 2.8 m, closing at the true 2 m/s.
    assert messages[0] == "person #1 2.8 m from forklift #9 (min 3.0 m), closing at 7.2 km/h"


@pytest.mark.parametrize("fps", [1.0, 2.0, 5.0])
def test_approaching_on_a_slow_camera(fps: float) -> None:
    # A forklift closing at 150 px/s from 800 px away; approaching 50px/s within 300 px, window
    # 1 s. At 1 fps the window holds two distances: the fit uses the last three instead.
    monitor = ProximityMonitor(_rule(max_distance="300px", approaching="50px/s"), Plane())
    closing = []
    for k in range(round(5 * fps)):
        t = k / fps
        fork = forklift(9, 850.0 - 150.0 * t, 950.0 - 150.0 * t, 400.0)
        gaps = monitor.gaps(frame(t, [person(1, (50.0, 400.0)), fork]), 300.0)
        closing += [gap.closing for gap in gaps if gap.closing is not None]
    assert closing, f"no closing speed at {fps} fps"
    assert closing == pytest.approx([150.0] * len(closing))


def test_a_pair_missed_for_one_frame_of_a_slow_camera_keeps_its_closing_speed() -> None:
    """Pair histories were dropped after max(window, configured grace): at 0.25 fps a forklift
    missed in one frame lost its closing speed for three frames. The grace in force is at least
    1.5 frame intervals, as episodes'."""
    monitor = ProximityMonitor(
        _rule(max_distance="1000px", approaching="10px/s", window="2s", grace="1s"), Plane()
    )
    closing = []
    for k in range(5):
        t = 4.0 * k
        tracks = [person(1, (50.0, 400.0))]
        if k != 3:  # missed in frame 3
            tracks.append(forklift(9, 700.0 - 20.0 * t, 800.0 - 20.0 * t, 400.0))
        gaps = monitor.gaps(frame(t, tracks), 1000.0)
        closing.append(gaps[0].closing if gaps else None)
    assert closing[4] == pytest.approx(20.0)  # from the history kept through the miss


def test_a_resolution_change_is_no_closing_speed_in_pixels() -> None:
    """A camera switched to half its resolution keeps its track ids (the tracker rescales), so a
    worker standing 120 px from a parked forklift became 60 px from it in one frame: a closing
    speed of tens of px/s and a false "approaching" incident."""
    monitor = ProximityMonitor(_rule(max_distance="150px", approaching="30px/s"), Plane())
    messages = []
    for i in range(20):
        t, s = i / FPS, (1.0 if i < 10 else 0.5)
        tracks = [
            Track(1, "person", (960 * s, 800 * s, 1000 * s, 900 * s), 0.9),
            Track(2, "forklift", (800 * s, 660 * s, 1200 * s, 780 * s), 0.9),
        ]
        tracked = dataclasses.replace(
            frame(t, tracks), width=round(1920 * s), height=round(1080 * s)
        )
        messages += [o.message for o in monitor.observe(tracked)]
    assert messages == []


def test_approaching_ignores_jitter() -> None:
    monitor = ProximityMonitor(_rule(max_distance="3m", approaching="1m/s"), Plane(CM))
    rng = np.random.default_rng(3)
    for i in range(40):  # a parked forklift 1.5 m away whose box jumps by +-15 cm
        bottom = 300.0 + float(rng.choice([-15.0, 15.0]))
        tracks = [person(1, (100.0, 450.0)), forklift(9, 50.0, 150.0, bottom)]
        assert monitor.observe(frame(i / FPS, tracks)) == []


def test_jitter_across_the_side_of_a_box_is_no_closing_speed() -> None:
    """Feet in the lower half of a box are at distance 0, and that 0 fed the closing-speed fit:
    a worker standing still by a parked forklift, whose box edge jitters by 2 px across their
    feet, jumped between 50 px and 0 and was "closing at 100 px/s". The fit uses the distance
    without the 0, which moves by a fraction of a pixel; the 0 still decides max_distance."""
    monitor = ProximityMonitor(_rule(approaching="50px/s"), Plane())
    sides = [298.0, 298.0, 302.0, 302.0, 298.0, 302.0, 302.0, 302.0, 298.0, 298.0, 298.0, 302.0]
    distances, closing = [], []
    for i, x1 in enumerate(sides * 2):  # feet at x 300, 50 px above the bottom edge (y 300)
        tracks = [person(1, (300.0, 250.0)), forklift(9, x1, x1 + 400.0, 300.0)]
        (gap,) = monitor.gaps(frame(i / FPS, tracks), 150.0)
        distances.append(gap.distance)
        closing += [] if gap.closing is None else [gap.closing]
    assert 0.0 in distances  # beside it in the frames its box takes the feet in
    assert closing
    assert max(abs(c) for c in closing) < 1.0
    engine = RuleEngine(rule_set([_rule(approaching="50px/s")]))
    for i, x1 in enumerate(sides * 2):
        tracks = [person(1, (300.0, 250.0)), forklift(9, x1, x1 + 400.0, 300.0)]
        assert engine.evaluate(frame(i / FPS, tracks)) == []


def test_scope_zones_and_engine_episode() -> None:
    near_dock = ((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0))
    rules = rule_set([_rule(zones=["dock"], min_duration="0.4s")], {"dock": near_dock})
    engine = RuleEngine(rules)
    events = []
    for i in range(5):
        tracks = [
            person(1, (400.0, 400.0)),
            person(2, (600.0, 400.0)),
            forklift(9, 300.0, 700.0, 300.0),
        ]
        events += engine.evaluate(frame(i * 0.2, tracks))
    assert [(e.phase, e.track_ids, e.started_at) for e in events if e.phase is Phase.STARTED] == [
        (Phase.STARTED, (1, 9), 0.0)  # person 2 is out of the dock zone
    ]


def test_pair_histories_are_bounded() -> None:
    monitor = ProximityMonitor(_rule(approaching="10px/s"), Plane())
    for i in range(60):
        monitor.gaps(frame(i * 0.2, [person(i, (500.0, 400.0)), forklift(1000 + i, 0, 100, 300)]))
        assert len(monitor) <= 6
    monitor.gaps(frame(100.0, []))
    assert len(monitor) == 0


def test_distance_helpers() -> None:
    a, b = np.array([0.0, 0.0]), np.array([10.0, 0.0])
    assert point_segment_distance(np.array([5.0, 3.0]), a, b) == pytest.approx(3.0)
    assert point_segment_distance(np.array([13.0, 4.0]), a, b) == pytest.approx(5.0)
    assert point_segment_distance(np.array([1.0, 1.0]), a, a) == pytest.approx(2**0.5)
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    assert point_polygon_distance(np.array([1.0, 1.0]), square) == 0.0
    assert point_polygon_distance(np.array([5.0, 1.0]), square) == pytest.approx(3.0)
    assert MACHINE == -1


@given(
    foot=st.tuples(st.floats(0, 1000), st.floats(0, 500)),
    box=st.tuples(st.floats(0, 900), st.floats(130, 500), st.floats(10, 100)),
)
@example(foot=(80.0, 390.0), box=(200.0, 500.0, 50.0))  # beside a cut box: 120 px, not 163
@settings(max_examples=80, deadline=None)
def test_nobody_farther_than_max_distance_triggers(
    foot: tuple[float, float], box: tuple[float, float, float]
) -> None:
    x1, bottom, width = box
    hazard = forklift(9, x1, x1 + width, bottom)
    nearest_x = min(max(foot[0], x1), x1 + width)
    top = bottom - 120.0
    if bottom >= 498.0:  # cut by the bottom of the picture: to the nearest point of the box
        nearest_y = min(max(foot[1], top), bottom)
    else:  # to the bottom edge, or 0 within the box
        nearest_y = foot[1] if top <= foot[1] <= bottom and nearest_x == foot[0] else bottom
    distance = float(np.hypot(foot[0] - nearest_x, foot[1] - nearest_y))
    observations = ProximityMonitor(_rule(), Plane()).observe(frame(0, [person(1, foot), hazard]))
    assert bool(observations) == (distance < 150.0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("metres", [False, True])
def test_each_subjects_nearest_hazard_is_the_smallest_gap(seed: int, metres: bool) -> None:
    """Without ``approaching`` the monitor picks nearest hazards with array operations; they must
    be what the pair-by-pair gaps say (ties to the first hazard, and to a vehicle over the
    machine zone), on crowded random frames with distances tied on a grid."""
    rng = np.random.default_rng(seed)
    tracks: list[Track] = [
        person(i, (float(x), float(y)))
        for i, (x, y) in enumerate(np.round(rng.uniform(0, 1000, (30, 2)) / 50) * 50)
    ]
    for k in range(6):
        x1, bottom = (
            np.round(rng.uniform(0, 900) / 50) * 50,
            np.round(rng.uniform(150, 500) / 50) * 50,
        )
        tracks.append(forklift(100 + k, float(x1), float(x1) + 100.0, float(bottom)))
    random.Random(seed).shuffle(tracks)
    plane = Plane(CM) if metres else Plane()
    limit = "1.5m" if metres else "150px"
    monitor = ProximityMonitor(_rule(max_distance=limit), plane, machine=PRESS)
    tracked = frame(0, tracks)
    nearest: dict[int, tuple[int, float]] = {}
    pairwise = ProximityMonitor(_rule(max_distance=limit), plane, machine=PRESS)
    for gap in pairwise.gaps(tracked, 1.5 if metres else 150.0):
        if gap.subject not in nearest or gap.distance < nearest[gap.subject][1]:
            nearest[gap.subject] = (gap.hazard, gap.distance)
    observations = monitor.observe(tracked)
    assert [o.subject for o in observations] == [
        t.track_id for t in tracks if t.track_id in nearest
    ]
    for observation in observations:
        hazard, _ = nearest[observation.subject]
        if hazard == MACHINE:
            assert observation.track_ids == (observation.subject,)
            assert observation.zone_id == "press"
        else:
            assert observation.track_ids == (observation.subject, hazard)
    assert len(observations) > 3, "the frame is crowded enough to test something"


def test_a_machine_zone_above_the_horizon_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A rule set built in code (no load-time check against the site): the press's top corners
    # (y = 0.1) are above the horizon of this calibration (y ~ 0.22), so the machine is ignored,
    # and the log says so once, not on every frame.
    steep = Calibration.from_points(
        [[0.1, 0.9], [0.9, 0.9], [0.6, 0.4], [0.4, 0.4]], [[0, 0], [8, 0], [8, 40], [0, 40]]
    )
    engine = RuleEngine(
        rule_set(
            [rule(id="press-distance", kind="proximity", machine_zone="press", max_distance="2m")],
            {"press": ((0.4, 0.1), (0.6, 0.1), (0.6, 0.6), (0.4, 0.6))},
        ),
        calibrations={"cam": steep},
    )
    for i in range(5):
        assert engine.evaluate(frame(i / FPS, [person(1, (500.0, 275.0))])) == []
    assert [r.getMessage() for r in caplog.records] == [
        "rule press-distance: machine zone press reaches above the horizon of camera cam's "
        "calibration; distances to it cannot be measured on the floor, so the rule ignores the "
        "machine (draw the zone round the machine's footprint on the floor)"
    ]
