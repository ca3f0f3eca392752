"""speed: floor speeds from the frame clock, smoothing against jitter, scope zones."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_factories import RIGHT_HALF, frame, person, rule, rule_set

from safewatch.config.rules import SpeedRule
from safewatch.domain.events import Phase
from safewatch.rules import Calibration, RuleEngine
from safewatch.rules.measure import Plane, Samples, SharedTimes, velocity
from safewatch.rules.speed import SpeedMonitor

# 1 px = 1 cm on the floor (1000 x 500 px frame over a 10 m x 5 m floor).
FLOOR = Plane(
    Calibration.from_points([[0, 0], [1, 0], [1, 1], [0, 1]], [[0, 0], [10, 0], [10, 5], [0, 5]])
)
FPS = 5.0


def _rule(**fields: object) -> SpeedRule:
    built = rule(id="yard-speed", kind="speed", **{"max_speed": "10km/h", **fields})
    assert isinstance(built, SpeedRule)
    return built


def _speeds(monitor: SpeedMonitor, xs: list[float], t0: float = 0.0) -> list[float | None]:
    out = []
    for index, x in enumerate(xs):
        tracked = frame(t0 + index / FPS, [person(2, (x, 400.0), label="vehicle")])
        out.append(monitor.speeds(tracked).get(2))
    return out


def test_a_steady_vehicle_reads_its_speed() -> None:
    # 60 px per frame at 5 fps = 300 px/s = 3 m/s = 10.8 km/h.
    speeds = _speeds(SpeedMonitor(_rule(), FLOOR), [100.0 + 60 * i for i in range(10)])
    assert speeds[:3] == [None, None, None]  # three samples over half a second first
    assert speeds[-1] == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("px_per_frame", "limit", "violates"),
    [
        (60.0, "10km/h", True),  # 10.8 km/h
        (50.0, "10km/h", False),  # 9.0 km/h
        (60.0, "3m/s", False),  # exactly the limit is allowed
        (0.0, "1km/h", False),
    ],
)
def test_limits(px_per_frame: float, limit: str, violates: bool) -> None:
    monitor = SpeedMonitor(_rule(max_speed=limit), FLOOR)
    hits = [
        monitor.observe(
            frame(i / FPS, [person(2, (100.0 + px_per_frame * i, 400.0), label="vehicle")])
        )
        for i in range(10)
    ]
    assert any(hits) == violates


def test_jitter_does_not_fake_speed() -> None:
    # A parked vehicle whose box jumps +-20 px every frame: a two-frame difference reads up to
    # 200 px/s = 7.2 km/h, the one-second fit stays well under a 5 km/h limit.
    rng = np.random.default_rng(7)
    xs = list(500.0 + rng.choice([-20.0, 20.0], size=50))
    naive = max(abs(b - a) * FPS for a, b in itertools.pairwise(xs)) / 100.0
    assert naive * 3.6 > 5.0
    monitor = SpeedMonitor(_rule(max_speed="5km/h"), FLOOR)
    assert all(
        monitor.observe(frame(i / FPS, [person(2, (x, 400.0), label="vehicle")])) == []
        for i, x in enumerate(xs)
    )


def test_scope_zones_message_and_episode() -> None:
    rules = rule_set([_rule(zones=["lane"], min_duration="0.4s")], {"lane": RIGHT_HALF})
    engine = RuleEngine(rules, calibrations={"cam": FLOOR.calibration})  # type: ignore[dict-item]
    events = []
    for i in range(14):  # 80 px/frame = 4 m/s = 14.4 km/h, crossing into the lane at 500 px
        events += engine.evaluate(
            frame(i / FPS, [person(2, (100.0 + 80 * i, 400.0), label="vehicle")])
        )
    started = [e for e in events if e.phase is Phase.STARTED]
    assert [(e.started_at, e.message, e.zone_id) for e in started] == [
        (1.0, "vehicle #2 at 14.4 km/h (limit 10.0 km/h) in zone lane", "lane")
    ]


@pytest.mark.parametrize("fps", [0.5, 1.0, 1.5, 2.0, 5.0])
def test_slow_cameras_measure_speed_too(fps: float) -> None:
    # A vehicle at 6 km/h against a 3 km/h limit, window 1 s, for 4 s of video. At 1.5 fps or
    # less the window never holds the three samples a fit needs: the last three are used.
    assert FLOOR.calibration is not None
    engine = RuleEngine(
        rule_set([_rule(max_speed="3km/h")]), calibrations={"cam": FLOOR.calibration}
    )
    messages = []
    for k in range(round(4 * fps) + 1):
        t = k / fps
        tracks = [person(2, (100.0 + 6 / 3.6 * 100 * t, 400.0), label="vehicle")]
        messages += [e.message for e in engine.evaluate(frame(t, tracks))]
    assert messages, f"no speed measured at {fps} fps"
    assert set(messages) == {"vehicle #2 at 6.0 km/h (limit 3.0 km/h)"}


def test_a_history_keeps_three_samples_on_a_slow_camera() -> None:
    samples = Samples(1.0)
    for t in range(6):  # 1 fps: the window alone would hold two
        samples.push1(float(t), 2.0 * t)
    assert len(samples) == 3
    assert samples.slopes() == pytest.approx((2.0,))


def test_a_track_missed_for_one_frame_of_a_slow_camera_keeps_its_history() -> None:
    """The history was dropped after max(window, configured grace): on a 0.25 fps camera a
    vehicle missed in one frame (4 s unseen > 2 s) lost its history and had no speed for the
    next three frames; the grace in force is at least 1.5 frame intervals (6 s), as episodes'."""
    monitor = SpeedMonitor(_rule(window="2s", grace="1s"), FLOOR)
    seen = {0, 1, 2, 4}  # missed in frame 3
    speeds = []
    for k in range(5):
        t = 4.0 * k
        tracks = [person(2, (100.0 + 50.0 * t, 400.0), label="vehicle")] if k in seen else []
        speeds.append(monitor.speeds(frame(t, tracks)).get(2))
    assert speeds[3] is None  # not seen
    assert speeds[4] == pytest.approx(0.5)  # 50 px/s = 0.5 m/s, from the kept history


def test_an_uncalibrated_camera_skips_rules_in_metres(caplog: pytest.LogCaptureFixture) -> None:
    engine = RuleEngine(rule_set([_rule()]))
    for i in range(10):
        assert (
            engine.evaluate(frame(i / FPS, [person(2, (100.0 + 200 * i, 400.0), label="vehicle")]))
            == []
        )
    assert [r.getMessage() for r in caplog.records] == [
        "rule yard-speed measures in metres but camera cam has no calibration; skipping it there"
    ]


def test_histories_are_bounded() -> None:
    monitor = SpeedMonitor(_rule(window="1s"), FLOOR)
    for i in range(100):
        monitor.speeds(frame(i / FPS, [person(i, (500.0, 400.0), label="vehicle")]))
        assert len(monitor) <= 7
    monitor.speeds(frame(100.0, []))
    assert len(monitor) == 0


@given(
    speed=st.floats(min_value=0.0, max_value=4.0),
    noise=st.lists(st.floats(min_value=-3.0, max_value=3.0), min_size=15, max_size=15),
)
@settings(max_examples=60, deadline=None)
def test_measured_speed_tracks_true_speed(speed: float, noise: list[float]) -> None:
    # speed in m/s; 1 px = 1 cm; +-3 cm of jitter moves a one-second fit by well under 0.2 m/s.
    xs = [100.0 + speed * 100.0 * i / FPS + n for i, n in enumerate(noise)]
    measured = _speeds(SpeedMonitor(_rule(), FLOOR), xs)[-1]
    assert measured is not None
    assert measured == pytest.approx(speed, abs=0.2)


def test_velocity_is_a_least_squares_slope() -> None:
    times = [0.0, 1.0, 2.0, 3.0]
    assert velocity(times, np.array([1.0, 3.0, 5.0, 7.0])) == pytest.approx(2.0)
    assert velocity([5.0, 5.0], np.array([1.0, 2.0])) == 0.0


def test_samples_take_numbers_tuples_and_arrays_alike() -> None:
    rng = np.random.default_rng(1)
    times = np.arange(12) / FPS
    points = rng.uniform(0, 10, (12, 2))
    by_add, by_push, by_array = Samples(1.0), Samples(1.0), Samples(1.0)
    distances, by_push1 = Samples(1.0), Samples(1.0)
    for t, (x, y) in zip(times.tolist(), points.tolist(), strict=True):
        by_add.add(t, [x, y])
        by_push.push(t, (x, y))
        by_array.add(t, np.array([x, y]))
        distances.add(t, x)
        by_push1.push1(t, x)
    assert len(by_add) == 6  # one second of history at 5 fps: 6 samples
    rate = by_add.rate()
    assert rate is not None
    assert rate.tolist() == list(by_push.slopes() or ()) == list(by_array.slopes() or ())
    assert rate == pytest.approx(velocity(times[-6:].tolist(), points[-6:]), abs=1e-9)
    assert distances.slopes() == by_push1.slopes() == pytest.approx((rate[0],))
    with pytest.raises(ValueError, match="a sample of 1 values in a history of 2"):
        by_add.add(3.0, 1.0)
    with pytest.raises(ValueError, match="a sample of 1 value in a history of 2"):
        by_push.push1(3.0, 1.0)
    assert len(by_add) == len(by_push) == 6, "a refused sample changes nothing"


def test_shared_time_sums_change_no_slope() -> None:
    rng = np.random.default_rng(2)
    histories = [Samples(1.0) for _ in range(4)]
    pushed: list[list[tuple[float, tuple[float, float]]]] = [[] for _ in histories]
    shared_at_least_once = False
    for frame_index in range(15):
        t = frame_index / FPS
        shared = SharedTimes()
        for k, samples in enumerate(histories):
            if k == 2 and frame_index % 4 == 1:
                continue  # a track missed now and then: fewer sample times
            at = t + 0.013 if k == 3 else t  # one from another clock: as many, other times
            x, y = rng.uniform(0, 10, 2).tolist()
            samples.push(at, (x, y))
            pushed[k].append((at, (x, y)))
            alone = Samples(1.0)
            for when, values in pushed[k]:
                alone.push(when, values)
            before = shared.times
            assert samples.slopes(shared) == alone.slopes()
            shared_at_least_once |= before is not None and shared.times is before
    assert shared_at_least_once
