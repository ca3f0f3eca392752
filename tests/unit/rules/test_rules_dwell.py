"""dwell: time in a zone per track, grace across flicker, start of the overstay, bounded clocks."""

from __future__ import annotations

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
    # Break every stay after at most four frames (1.5 s < max_time 2 s) with two frames out
    # (1 s > grace 0.5 s): no stay ever exceeds the maximum.
    broken = "".join(path).replace("IIIII", "IIIIOO")
    assert _run(_rule(grace="0.5s"), broken) == []


@given(st.lists(st.tuples(st.floats(0, 490), st.floats(0, 500)), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_a_track_that_never_enters_never_triggers(feet: list[tuple[float, float]]) -> None:
    monitor = DwellMonitor(_rule(max_time="0.1s"), ZONE)
    for index, foot in enumerate(feet):
        assert monitor.observe(frame(index * 0.5, [person(1, foot)])) == []
