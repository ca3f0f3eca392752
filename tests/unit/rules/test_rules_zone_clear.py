"""zone_clear: objects standing still in an exit or walkway, movement thresholds, zone episodes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_factories import RIGHT_HALF, frame, person, rule, rule_set

from safewatch.config.rules import ZoneClearRule
from safewatch.domain.events import Phase
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import Track
from safewatch.rules import Calibration, RuleEngine
from safewatch.rules.measure import Plane
from safewatch.rules.zone_clear import ZoneClearMonitor

EXIT = Zone("exit", "cam", RIGHT_HALF)
# 1 px = 1 cm on the floor (1000 x 500 px frame over a 10 m x 5 m floor).
CM_PER_PX = Calibration.from_points(
    [[0, 0], [1, 0], [1, 1], [0, 1]], [[0, 0], [10, 0], [10, 5], [0, 5]]
)


def _rule(**fields: object) -> ZoneClearRule:
    built = rule(id="exit-clear", kind="zone_clear", zone="exit", **{"max_time": "3s", **fields})
    assert isinstance(built, ZoneClearRule)
    return built


def _blocked_at(monitor: ZoneClearMonitor, xs: list[float], dt: float = 0.5) -> list[float]:
    """Feed track 1 (a 40 px wide box) with foot x positions; times the zone was blocked."""
    return [
        index * dt
        for index, x in enumerate(xs)
        if monitor.observe(frame(index * dt, [person(1, (x, 400.0))]))
    ]


@pytest.mark.parametrize(
    ("xs", "fields", "blocked"),
    [
        ([700.0] * 7, {}, []),  # 3.0 s still: exactly the maximum
        ([700.0] * 9, {}, [3.5, 4.0]),
        ([700.0, 710.0, 695.0, 712.0, 705.0, 690.0, 700.0, 708.0], {}, [3.5]),  # jitter < 20 px
        ([600.0 + 30 * i for i in range(12)], {}, []),  # walking along the walkway
        ([700.0] * 4 + [760.0] * 8, {}, [5.5]),  # moved 60 px: the clock restarts at 2 s
        ([300.0] * 12, {}, []),  # standing still outside the exit
        ([700.0, 730.0] * 6, {"max_movement": "40px"}, [3.5, 4.0, 4.5, 5.0, 5.5]),
        ([700.0, 730.0] * 6, {}, []),  # pacing 30 px > half the box width: moving
    ],
)
def test_zone_clear_paths(xs: list[float], fields: dict[str, object], blocked: list[float]) -> None:
    assert _blocked_at(ZoneClearMonitor(_rule(**fields), EXIT), xs) == blocked


def _pallet(fps: float) -> list[tuple[Phase, float, float]]:
    """A pallet set down in the exit until 50.5 s, its detection missed on one frame every
    20 s, filmed at ``fps``; non-ongoing events."""
    engine = RuleEngine(rule_set([_rule(max_time="30s", objects=["pallet"])], {"exit": RIGHT_HALF}))
    events = []
    for k in range(round(60 * fps)):
        t = k / fps
        missed = k > 0 and k % round(20 * fps) == 0
        seen = not missed and t < 50.5
        events += engine.evaluate(
            frame(t, [person(4, (700.0, 400.0), label="pallet")] if seen else [])
        )
    events += engine.finish("cam")
    return [(e.phase, e.started_at, e.at) for e in events if e.phase is not Phase.ONGOING]


def test_one_fps_and_five_fps_see_the_same_blocked_exit() -> None:
    # A missed detection is a frame without the pallet 1 s after it was last seen at 1 fps:
    # within grace, so its stillness goes on, as it does at 5 fps (a 0.4 s gap there).
    slow, fast = _pallet(1.0), _pallet(5.0)
    assert slow == [(Phase.STARTED, 31.0, 31.0), (Phase.ENDED, 31.0, 50.0)]
    assert fast == [(Phase.STARTED, 30.2, 30.2), (Phase.ENDED, 30.2, 50.4)]
    # At 0.5 fps a missed detection is 2 s after the pallet was last seen, more than the 1 s
    # grace: the grace in force is 1.5 frame intervals (3 s), so the stillness still goes on.
    assert _pallet(0.5) == [(Phase.STARTED, 32.0, 32.0), (Phase.ENDED, 32.0, 50.0)]


def test_a_resolution_change_keeps_the_stillness_timer() -> None:
    """Rest points were kept in the pixels of the frame they were taken in: a stream falling
    back from 1000x500 to 500x250 (track ids kept) put a pallet standing still 350 px from its
    rest point, restarting its timer on every switch, so a blocked exit was never reported."""
    monitor = ZoneClearMonitor(_rule(max_movement="20px"), EXIT)
    blocked = []
    for i in range(12):
        s = 1.0 if i % 4 < 2 else 0.5  # the resolution flips every second
        tracked = frame(i * 0.5, [Track(1, "pallet", (650 * s, 350 * s, 750 * s, 400 * s), 0.9)])
        tracked = dataclasses.replace(tracked, width=round(1000 * s), height=round(500 * s))
        if monitor.observe(tracked):
            blocked.append(i * 0.5)
    assert blocked == [3.5, 4.0, 4.5, 5.0, 5.5]  # still since 0 s, for longer than 3 s


def test_metres_on_a_calibrated_camera() -> None:
    rule_ = _rule(max_movement="0.5m")
    pacing = [700.0, 740.0] * 6  # 40 cm back and forth: still standing there
    assert _blocked_at(ZoneClearMonitor(rule_, EXIT, Plane(CM_PER_PX)), pacing) != []
    walking = [600.0 + 60 * i for i in range(7)]  # 60 cm per step
    assert _blocked_at(ZoneClearMonitor(rule_, EXIT, Plane(CM_PER_PX)), walking) == []


def test_the_zone_is_the_subject_and_lists_the_blockers() -> None:
    engine = RuleEngine(rule_set([_rule(objects=[])], {"exit": RIGHT_HALF}))
    events = []
    for index in range(9):
        tracks = [
            person(1, (700.0, 400.0), label="pallet", confidence=0.6),
            person(2, (800.0, 400.0), confidence=0.8),
            person(3, (620.0 + 50 * index, 300.0)),  # walking through
        ]
        events += engine.evaluate(frame(index * 0.5, tracks))
    (started, ongoing) = events
    assert (started.phase, started.track_ids, started.started_at) == (
        Phase.STARTED,
        (-1, 1, 2),
        3.5,
    )
    assert started.message == "zone exit blocked by pallet #1, person #2 (still for 4s, max 3s)"
    assert started.confidence == pytest.approx(0.8)
    assert ongoing.phase is Phase.ONGOING
    assert engine.finish("cam")[0].phase is Phase.ENDED


def test_labels_filter_and_state_is_bounded() -> None:
    monitor = ZoneClearMonitor(_rule(objects=["pallet"]), EXIT)
    assert _blocked_at(monitor, [700.0] * 10) == []  # a person, not a pallet
    for index in range(50):
        monitor.observe(
            frame(10 + index * 0.5, [person(10 + index, (700.0, 400.0), label="pallet")])
        )
        assert len(monitor) <= 4
    monitor.observe(frame(60.0, []))
    assert len(monitor) == 0


@given(
    step=st.floats(min_value=25.0, max_value=60.0),
    noise=st.lists(st.floats(min_value=-4.0, max_value=4.0), min_size=20, max_size=20),
)
@settings(max_examples=50, deadline=None)
def test_anything_that_keeps_moving_never_blocks(step: float, noise: list[float]) -> None:
    # Faster than half its box width (20 px) per frame, with jitter: never standing still.
    xs = list(510.0 + step * np.arange(20) % 480 + np.array(noise))
    assert _blocked_at(ZoneClearMonitor(_rule(max_time="1s"), EXIT), xs) == []
