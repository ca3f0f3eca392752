"""``RuleEngine.replace_rules``: which episodes survive a reload (rules compared by value)."""

from __future__ import annotations

from rules_factories import RIGHT_HALF, frame, person, rule, rule_set

from safewatch.domain.events import Phase
from safewatch.domain.tracks import PPEState
from safewatch.rules import RuleEngine

ABSENT = PPEState.ABSENT
LEFT_HALF = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
PRESS = rule(id="press", kind="zone_intrusion", zone="press", min_duration=0)
HARDHAT = rule(id="hardhat", kind="ppe", require=["hardhat"], min_duration=0)
INSIDE = [person(7, (700, 400), hardhat=ABSENT)]


def _running(engine: RuleEngine) -> RuleEngine:
    assert {e.rule_id for e in engine.evaluate(frame(0, INSIDE))} == {"press", "hardhat"}
    return engine


def test_an_identical_reload_ends_nothing_and_episodes_go_on() -> None:
    engine = _running(RuleEngine(rule_set([PRESS, HARDHAT], {"press": RIGHT_HALF})))
    # A freshly parsed copy: equal by value, not the same objects.
    again = rule_set(
        [rule(**PRESS.model_dump()), rule(**HARDHAT.model_dump())], {"press": RIGHT_HALF}
    )
    assert engine.replace_rules(again) == []
    events = engine.evaluate(frame(0.2, INSIDE))
    assert [(e.rule_id, e.phase, e.started_at) for e in events] == [
        ("press", Phase.ONGOING, 0.0),
        ("hardhat", Phase.ONGOING, 0.0),
    ]


def test_a_moved_zone_ends_the_episodes_of_rules_that_use_it() -> None:
    engine = _running(RuleEngine(rule_set([PRESS, HARDHAT], {"press": RIGHT_HALF})))
    ended = engine.replace_rules(rule_set([PRESS, HARDHAT], {"press": LEFT_HALF}))
    assert [(e.rule_id, e.phase) for e in ended] == [("press", Phase.ENDED)]
    # hardhat did not change: its episode continues; press no longer sees the track.
    events = engine.evaluate(frame(0.2, INSIDE))
    assert [(e.rule_id, e.phase) for e in events] == [("hardhat", Phase.ONGOING)]


def test_a_changed_test_restarts_the_rule() -> None:
    engine = _running(RuleEngine(rule_set([PRESS, HARDHAT], {"press": RIGHT_HALF})))
    both = rule(id="hardhat", kind="ppe", require=["hardhat", "vest"], min_duration=0)
    ended = engine.replace_rules(rule_set([PRESS, both], {"press": RIGHT_HALF}))
    assert [(e.rule_id, e.phase) for e in ended] == [("hardhat", Phase.ENDED)]
    events = engine.evaluate(frame(0.2, INSIDE))
    assert [(e.rule_id, e.phase, e.started_at) for e in events] == [
        ("press", Phase.ONGOING, 0.0),
        ("hardhat", Phase.STARTED, 0.2),
    ]


def test_reporting_changes_keep_the_episode() -> None:
    engine = _running(RuleEngine(rule_set([PRESS, HARDHAT], {"press": RIGHT_HALF})))
    reworded = rule(
        id="press",
        kind="zone_intrusion",
        zone="press",
        min_duration="2s",
        cooldown="1m",
        severity="critical",
        description="new words",
        schedule={"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
    )
    assert engine.replace_rules(rule_set([reworded, HARDHAT], {"press": RIGHT_HALF})) == []
    press = engine.evaluate(frame(0.2, INSIDE))[0]
    assert (press.rule_id, press.phase, press.severity.value) == ("press", "ongoing", "critical")


def test_another_cameras_zone_added_to_the_scope_keeps_the_episode() -> None:
    """The definition compared the rule's whole ``zones`` list: adding camera ``dock``'s zone to
    a hardhat rule scoped to a zone on ``cam`` closed and reopened the open incident on ``cam``,
    whose test had not changed. Taking a zone of ``cam`` out of the list still restarts it."""
    zones = {"bay": RIGHT_HALF, "dock:ramp": RIGHT_HALF, "aisle": LEFT_HALF}
    scoped = rule(id="hardhat", kind="ppe", require=["hardhat"], zones=["bay"], min_duration=0)
    engine = RuleEngine(rule_set([scoped], zones))
    assert [e.phase for e in engine.evaluate(frame(0, INSIDE))] == [Phase.STARTED]
    wider = rule(
        id="hardhat", kind="ppe", require=["hardhat"], zones=["bay", "ramp"], min_duration=0
    )
    assert engine.replace_rules(rule_set([wider], zones)) == []
    events = engine.evaluate(frame(0.2, INSIDE))
    assert [(e.phase, e.started_at) for e in events] == [(Phase.ONGOING, 0.0)]
    moved = rule(
        id="hardhat", kind="ppe", require=["hardhat"], zones=["aisle", "ramp"], min_duration=0
    )
    ended = engine.replace_rules(rule_set([moved], zones))
    assert [(e.rule_id, e.phase) for e in ended] == [("hardhat", Phase.ENDED)]
