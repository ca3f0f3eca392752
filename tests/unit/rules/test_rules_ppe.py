"""ppe beyond hard hats: any item list (gloves, goggles, mask), zone scoping, and its properties."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_factories import RIGHT_HALF, frame, person, rule, rule_set

from safewatch.config.rules import PPERule
from safewatch.config.site import TrackerConfig
from safewatch.domain import Detections, Frame
from safewatch.domain.events import Phase
from safewatch.domain.tracks import PPEState, Track
from safewatch.rules import RuleEngine
from safewatch.rules.ppe import observe_ppe
from safewatch.track import CameraTracker

ITEMS = ("hardhat", "vest", "gloves", "goggles", "mask")
LEFT_HALF = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))


def _rule(**fields: object) -> PPERule:
    built = rule(kind="ppe", **{"id": "ppe", "min_duration": 0, **fields})
    assert isinstance(built, PPERule)
    return built


@pytest.mark.parametrize(
    ("require", "states", "message"),
    [
        (["gloves"], {"gloves": "absent"}, "person #2 without gloves"),
        (
            ["goggles", "mask"],
            {"goggles": "absent", "mask": "absent"},
            "person #2 without goggles and mask",
        ),
        (["goggles", "mask"], {"goggles": "present", "mask": "absent"}, "person #2 without mask"),
        (["mask"], {"mask": "unknown"}, None),
        (["gloves", "goggles"], {"hardhat": "absent"}, None),  # not required here
    ],
)
def test_any_item_list(require: list[str], states: dict[str, str], message: str | None) -> None:
    engine = RuleEngine(rule_set([_rule(require=require)]))
    ppe = {item: PPEState(state) for item, state in states.items()}
    events = engine.evaluate(frame(0, [person(2, **ppe)]))
    assert [e.message for e in events] == ([message] if message else [])


@pytest.mark.parametrize(
    ("states", "message"),
    [
        ({"hardhat": "unknown"}, "person #2: hardhat not verifiable"),
        ({"hardhat": "absent"}, None),  # a violation, for the absent rule; verified
        ({"hardhat": "present"}, None),
        # Not reported (no labels: map, and the PPE model has not fired yet): unknown.
        ({}, "person #2: hardhat not verifiable"),
        ({"vest": "present"}, "person #2: hardhat not verifiable"),
    ],
)
def test_unverifiable_flags_unknown_only(states: dict[str, str], message: str | None) -> None:
    engine = RuleEngine(rule_set([_rule(require=["hardhat"], flag="unverifiable")]))
    ppe = {item: PPEState(state) for item, state in states.items()}
    events = engine.evaluate(frame(0, [person(2, **ppe)]))
    assert [e.message for e in events] == ([message] if message else [])


def test_an_item_no_model_reported_is_unverifiable_but_no_violation() -> None:
    """The tracker reports only the items it knows of (a ``labels:`` map, or seen so far): on
    a camera whose PPE model never fires, persons carry no item. That is "not verifiable", the
    case the flag exists for, and never a violation (missing is not absent)."""
    tracker = CameraTracker(TrackerConfig(), "cam")  # no labels: map, so no fixed items
    image = np.zeros((360, 480, 3), np.uint8)
    box = Detections(
        np.array([[100, 100, 140, 200]], np.float32), np.array([0.9]), np.array(["person"])
    )
    for seq in range(5):
        tracked = tracker.update(box, Frame("cam", seq, seq / 5, seq / 5, image))
    (track,) = tracked.tracks
    assert track.attributes == {} and not track.ppe_only
    check = _rule(require=["hardhat", "vest"], flag="unverifiable")
    assert [o.message for o in observe_ppe(check, tracked, [])] == [
        f"person #{track.track_id}: hardhat and vest not verifiable"
    ]
    assert observe_ppe(_rule(require=["hardhat", "vest"]), tracked, []) == []
    # A PPE-only subject without any item still opens no review item.
    lone = replace(tracked, tracks=(replace(track, ppe_only=True),))
    assert observe_ppe(check, lone, []) == []
    # Only people carry PPE states: a forklift the rule also names is no unverifiable hard hat.
    forklift = replace(track, label="forklift")
    both = _rule(require=["hardhat"], objects=["person", "forklift"], flag="unverifiable")
    assert observe_ppe(both, replace(tracked, tracks=(forklift,)), []) == []


def test_unverifiable_is_off_by_default() -> None:
    engine = RuleEngine(rule_set([_rule(require=["hardhat"])]))
    assert _rule(require=["hardhat"]).flag == "absent"
    assert engine.evaluate(frame(0, [person(2, hardhat=PPEState.UNKNOWN)])) == []


def test_ppe_only_subjects_reach_ppe_violation_rules_and_no_other_rule() -> None:
    """A weakly detected worker or a lone head (``Track.ppe_only``) carries a hard-hat verdict,
    but is no person to zone, counting, distance or dwell rules, nor a "not verifiable" item."""
    everywhere = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    rules = rule_set(
        [
            _rule(id="hat", require=["hardhat"]),
            _rule(id="hat-check", require=["hardhat"], flag="unverifiable"),
            rule(id="keep-out", kind="zone_intrusion", zone="all", min_duration=0),
            rule(id="crowd", kind="occupancy", zone="all", max_count=0, min_duration=0),
            rule(id="dwell", kind="dwell", zone="all", max_time="1s"),
            rule(
                id="near",
                kind="proximity",
                subjects=["person"],
                objects=["forklift"],
                max_distance="1000px",
                min_duration=0,
            ),
        ],
        {"all": everywhere},
    )
    forklift = person(9, (600, 400), label="forklift")
    bare = person(2, (500, 400), ppe_only=True, hardhat=PPEState.ABSENT)
    unknown = person(3, (400, 400), ppe_only=True, hardhat=PPEState.UNKNOWN)

    def started(tracks: list[Track]) -> set[tuple[str, tuple[int, ...]]]:
        engine = RuleEngine(rules)
        events = [e for t in (0.0, 0.5, 1.0, 1.5, 2.0) for e in engine.evaluate(frame(t, tracks))]
        return {(e.rule_id, e.track_ids) for e in events if e.phase is Phase.STARTED}

    assert started([bare, unknown, forklift]) == {("hat", (2,))}
    # The same two as ordinary person tracks: every rule sees them.
    as_persons = [replace(bare, ppe_only=False), replace(unknown, ppe_only=False), forklift]
    assert {r for r, _ in started(as_persons)} == {
        "hat",
        "hat-check",
        "keep-out",
        "crowd",
        "dwell",
        "near",
    }


def test_items_scoped_to_zones() -> None:
    rules = rule_set(
        [_rule(id="goggles-at-grinder", require=["goggles"], zones=["grinder", "lathe"])],
        {"grinder": RIGHT_HALF, "lathe": LEFT_HALF, "other:lathe2": LEFT_HALF},
    )
    engine = RuleEngine(rules)
    tracks = [
        person(1, (700.0, 400.0), goggles=PPEState.ABSENT),
        person(2, (200.0, 400.0), goggles=PPEState.ABSENT),
    ]
    events = engine.evaluate(frame(0, tracks))
    assert [(e.track_ids, e.zone_id, e.message) for e in events] == [
        ((1,), "grinder", "person #1 without goggles in zone grinder"),
        ((2,), "lathe", "person #2 without goggles in zone lathe"),
    ]
    # The rule runs only on the cameras of its zones.
    assert engine.evaluate(frame(0.2, tracks, camera="other")) == []


@given(
    states=st.lists(
        st.dictionaries(st.sampled_from(ITEMS), st.sampled_from(list(PPEState))), max_size=20
    ),
    require=st.lists(st.sampled_from(ITEMS), min_size=1, max_size=5, unique=True),
)
@settings(max_examples=80, deadline=None)
def test_only_a_required_absent_item_ever_starts_an_episode(
    states: list[dict[str, PPEState]], require: list[str]
) -> None:
    engine = RuleEngine(rule_set([_rule(require=require)]))
    for index, ppe in enumerate(states):
        events = engine.evaluate(frame(index * 0.2, [person(1, **ppe)]))
        violating = any(ppe.get(item) is PPEState.ABSENT for item in require)
        current = [e for e in events if e.phase is not Phase.ENDED]
        assert bool(current) == violating


def test_ppe_required_per_camera_follows_the_rule_set() -> None:
    """What the PPE coverage books as unknown when a track carries no state for it."""
    engine = RuleEngine(
        rule_set(
            [
                _rule(id="hat", require=["hardhat"], flag="unverifiable"),
                _rule(id="vest", require=["vest"], objects=["person", "visitor"], cameras=["dock"]),
                _rule(id="off", require=["gloves"], enabled=False),
                rule(id="keep-out", kind="zone_intrusion", zone="all", min_duration=0),
            ],
            {"all": LEFT_HALF},
        )
    )
    assert engine.ppe_required("cam") == {"person": {"hardhat"}}
    assert engine.ppe_required("dock") == {"person": {"hardhat", "vest"}, "visitor": {"vest"}}
    engine.replace_rules(rule_set([_rule(id="mask", require=["mask"])]))
    assert engine.ppe_required("cam") == {"person": {"mask"}}
