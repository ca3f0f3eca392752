"""dwell: time in a zone per track, grace across flicker, start of the overstay, bounded clocks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_factories import RIGHT_HALF, frame, person, rule, rule_set

from safewatch.config.rules import DwellRule
from safewatch.domain.events import Phase
from safewatch.domain.geometry import Zone
from safewatch.rules import RuleEngine
from safewatch.rules.dwell import DwellMonitor

ZONE = Zone("bay", "cam", RIGHT_HALF)
IN, OUT = (700.0, 400.0), (300.0, 400.0)


def _rule(**fields: object) -> DwellRule:
    built = rule(id="bay-dwell", kind="dwell", zone="bay", **{"max_time": "2s", **fields})
    assert isinstance(built, DwellRule)
    return built


def _run(rule_: DwellRule, path: str, dt: float = 0.5) -> list[tuple[Phase, float, float]]:
    """Feed one track along ``path`` (``I`` in the zone, ``O`` out, ``.`` unseen); events."""
    engine = RuleEngine(rule_set([rule_], {"bay": RIGHT_HALF}))
    events = []
    for index, code in enumerate(path):
        tracks = [] if code == "." else [person(3, IN if code == "I" else OUT)]
        events += engine.evaluate(frame(index * dt, tracks))
    events += engine.finish("cam")
    return [(e.phase, e.started_at, e.at) for e in events if e.phase is not Phase.ONGOING]


@pytest.mark.parametrize(
    ("path", "fields", "expected"),
    [
        ("IIIII", {}, []),  # 2.0 s: exactly the maximum is allowed
        ("IIIIII", {}, [(Phase.STARTED, 2.5, 2.5), (Phase.ENDED, 2.5, 2.5)]),
        ("OOOOOOOOOO", {}, []),
        ("IIIOIIII", {}, [(Phase.STARTED, 2.5, 2.5), (Phase.ENDED, 2.5, 3.5)]),  # 0.5 s out
        ("III.IIII", {}, [(Phase.STARTED, 2.5, 2.5), (Phase.ENDED, 2.5, 3.5)]),  # 1 s unseen
        ("III...IIII", {}, []),  # unseen for 2 s: a new stay from 3 s
        ("IIIOOOIIII", {}, []),  # out for 1.5 s > grace: the clock restarts
        # Out for 2 s with a 2 s grace: the stay goes on; the first frame over 2 s is back in.
        ("IIIOOOIIII", {"grace": "2s"}, [(Phase.STARTED, 3.0, 3.0), (Phase.ENDED, 3.0, 4.5)]),
        ("IIIIIIII", {"min_duration": "1s"}, [(Phase.STARTED, 2.5, 3.5), (Phase.ENDED, 2.5, 3.5)]),
    ],
)
def test_dwell_paths(path: str, fields: dict[str, object], expected: list[object]) -> None:
    assert _run(_rule(**fields), path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # 0.5 fps, missing from the one frame at 14 s: the stay goes on (one episode, not an
        # ENDED at 14 s and a second STARTED at 28 s).
        ("IIIIIII.IIIIIII", [(Phase.STARTED, 12.0, 12.0), (Phase.ENDED, 12.0, 28.0)]),
        # Missing from two frames (14 s and 16 s): 4 s after the last frame in, the stay ends.
        ("IIIIIII..IIIIIIIIII", [(Phase.STARTED, 12.0, 12.0), (Phase.ENDED, 12.0, 12.0),
                                 (Phase.STARTED, 30.0, 30.0), (Phase.ENDED, 30.0, 36.0)]),
    ],
)  # fmt: skip
def test_half_an_fps_one_missed_frame_keeps_the_clock(path: str, expected: list[object]) -> None:
    assert _run(_rule(max_time="10s"), path, dt=2.0) == expected


def _walk(t: float) -> str:
    """A worker's real movements: ``I`` in the bay, ``O`` out of it, ``.`` hidden."""
    if 2.5 <= t < 3.3 or 8.9 <= t < 11.9:
        return "O"  # steps out for 0.8 s, later leaves for 3 s
    return "." if 5.9 <= t < 6.7 else "I"  # behind a pallet for 0.8 s


def _filmed(fps: float) -> list[tuple[Phase, float, float]]:
    return _run(
        _rule(max_time="3s"), "".join(_walk(k / fps) for k in range(14 * round(fps))), 1 / fps
    )


def test_one_fps_and_five_fps_see_the_same_stay() -> None:
    # Out of the bay, or hidden, for at most grace (1 s) does not restart the clock at any frame
    # rate: at 1 fps one frame out is a 2 s gap between frames in, yet the worker was out for
    # less than a second. The episodes agree to within one frame of the slower camera.
    slow, fast = _filmed(1.0), _filmed(5.0)
    assert slow == [(Phase.STARTED, 4.0, 4.0), (Phase.ENDED, 4.0, 8.0)]
    assert [phase for phase, _, _ in slow] == [phase for phase, _, _ in fast]
    for (_, start_slow, at_slow), (_, start_fast, at_fast) in zip(slow, fast, strict=True):
        assert abs(start_slow - start_fast) <= 1.0
        assert abs(at_slow - at_fast) <= 1.0


def test_one_frame_out_at_one_fps_keeps_an_open_episode() -> None:
    # max_time 5 s at 1 fps, out of the bay on the frame at 10 s only: one episode, not two.
    path = "IIIIIIIIII" + "O" + "IIIII"
    assert _run(_rule(max_time="5s"), path, 1.0) == [
        (Phase.STARTED, 6.0, 6.0),
        (Phase.ENDED, 6.0, 15.0),
    ]


def test_message_and_labels() -> None:
    monitor = DwellMonitor(_rule(objects=["forklift"]), ZONE)
    for t in (0.0, 1.0, 2.0):
        assert monitor.observe(frame(t, [person(1, IN, label="forklift"), person(2, IN)])) == []
    (observation,) = monitor.observe(frame(3.0, [person(1, IN, label="forklift"), person(2, IN)]))
    assert observation.message == "forklift #1 in zone bay for 3s (max 2s)"
    assert (observation.subject, observation.zone_id) == (1, "bay")


def test_clocks_are_forgotten() -> None:
    monitor = DwellMonitor(_rule(), ZONE)
    for index in range(100):  # a stream of people passing through, each seen once
        monitor.observe(frame(index * 0.5, [person(index, IN)]))
        assert len(monitor) <= 4
    monitor.observe(frame(100.0, []))
    assert len(monitor) == 0


def test_a_severity_change_on_reload_keeps_the_clock() -> None:
    engine = RuleEngine(rule_set([_rule()], {"bay": RIGHT_HALF}))
    for index in range(4):  # 1.5 s in the zone
        assert engine.evaluate(frame(index * 0.5, [person(3, IN)])) == []
    assert engine.replace_rules(rule_set([_rule(severity="high")], {"bay": RIGHT_HALF})) == []
    events = engine.evaluate(frame(2.5, [person(3, IN)]))
    assert [(e.phase, e.severity) for e in events] == [(Phase.STARTED, "high")]
    # A new max_time is a new test: the clock starts again.
    engine.replace_rules(rule_set([_rule(max_time="10s")], {"bay": RIGHT_HALF}))
    assert [e.phase for e in engine.evaluate(frame(3.0, [person(3, IN)]))] == []


@given(st.lists(st.sampled_from("IO."), max_size=40))
@settings(max_examples=60, deadline=None)
def test_short_stays_never_trigger(path: list[str]) -> None:
    # Break every stay after at most four frames (1.5 s < max_time 2 s) with two frames out,
    # and widen every single frame out (0.5 s after the last one in: within grace, the stay
    # goes on) to two: the second comes 1 s > grace 0.5 s after the track was last in, which
    # ends its stay. No stay ever exceeds the maximum.
    widened = re.sub(r"(?<=I)[O.](?=I)", lambda gap: gap.group() * 2, "".join(path))
    broken = widened.replace("IIIII", "IIIIOO")
    assert _run(_rule(grace="0.5s"), broken) == []


@given(st.lists(st.tuples(st.floats(0, 490), st.floats(0, 500)), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_a_track_that_never_enters_never_triggers(feet: list[tuple[float, float]]) -> None:
    monitor = DwellMonitor(_rule(max_time="0.1s"), ZONE)
    for index, foot in enumerate(feet):
        assert monitor.observe(frame(index * 0.5, [person(1, foot)])) == []
