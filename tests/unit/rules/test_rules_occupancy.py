"""occupancy: crowding above max_count, lone workers below min_count, zone-level episodes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_factories import RIGHT_HALF, frame, person, rule, rule_set

from safewatch.config.rules import OccupancyRule
from safewatch.domain.events import Phase
from safewatch.domain.geometry import Zone
from safewatch.incidents.manager import NO_TRACK
from safewatch.rules import NO_SUBJECT, RuleEngine
from safewatch.rules.occupancy import CROWDED, LONE, observe_occupancy

ZONE = Zone("mezzanine", "cam", RIGHT_HALF)


def _rule(**fields: object) -> OccupancyRule:
    built = rule(id="mezzanine-load", kind="occupancy", zone="mezzanine", **fields)
    assert isinstance(built, OccupancyRule)
    return built


def _people(inside: int, outside: int = 0) -> list[object]:
    tracks = [
        person(i + 1, (600.0 + 30 * i, 400.0), confidence=0.9 - 0.1 * i) for i in range(inside)
    ]
    tracks += [person(100 + i, (100.0 + 30 * i, 400.0)) for i in range(outside)]
    return tracks


@pytest.mark.parametrize(
    ("bounds", "inside", "outside", "expected"),
    [
        ({"max_count": 2}, 2, 5, None),
        ({"max_count": 2}, 3, 0, (CROWDED, "3 persons in zone mezzanine (max 2)", 0.7)),
        ({"max_count": 0}, 1, 0, (CROWDED, "1 person in zone mezzanine (max 0)", 0.9)),
        ({"min_count": 2}, 0, 3, None),  # nobody in the zone: nobody at risk
        ({"min_count": 2}, 1, 3, (LONE, "1 person alone in zone mezzanine (min 2)", 0.9)),
        ({"min_count": 3}, 2, 0, (LONE, "2 persons in zone mezzanine (min 3)", 0.9)),
        ({"min_count": 2}, 2, 0, None),
        (
            {"min_count": 2, "max_count": 3},
            4,
            0,
            (CROWDED, "4 persons in zone mezzanine (max 3)", 0.6),
        ),
        ({"min_count": 2, "max_count": 3}, 3, 0, None),
    ],
)
def test_occupancy_bounds(
    bounds: dict[str, int], inside: int, outside: int, expected: tuple[int, str, float] | None
) -> None:
    observations = observe_occupancy(_rule(**bounds), frame(0, _people(inside, outside)), ZONE)
    if expected is None:
        assert observations == []
        return
    (observation,) = observations
    assert (observation.subject, observation.message) == expected[:2]
    assert observation.confidence == pytest.approx(expected[2])
    # The zone is the subject; the tracks counted follow it.
    assert observation.track_ids == (NO_SUBJECT, *range(1, inside + 1))
    assert observation.zone_id == "mezzanine"


def test_only_listed_objects_count() -> None:
    tracks = [*_people(2), person(50, (800.0, 400.0), label="forklift")]
    assert observe_occupancy(_rule(max_count=2), frame(0, tracks), ZONE) == []
    both = _rule(max_count=2, objects=["person", "forklift"])
    (observation,) = observe_occupancy(both, frame(0, tracks), ZONE)
    assert observation.message == "3 objects in zone mezzanine (max 2)"


def test_the_episode_belongs_to_the_zone_and_uses_incident_track_minus_one() -> None:
    assert NO_SUBJECT == NO_TRACK
    engine = RuleEngine(
        rule_set([_rule(max_count=1, min_duration="1s")], {"mezzanine": RIGHT_HALF})
    )
    events = []
    # Different people come and go, but the zone stays crowded from 0 s to 2 s.
    crowds = [[1, 2], [1, 2], [2, 3], [3, 4], [3, 4, 5]]
    for index, ids in enumerate(crowds):
        tracks = [person(i, (550.0 + 40 * i, 400.0)) for i in ids]
        events += engine.evaluate(frame(index * 0.5, tracks))
    events += engine.evaluate(frame(2.5, []))
    events += engine.evaluate(frame(4.0, []))
    assert [(e.phase, e.track_ids, e.started_at) for e in events] == [
        (Phase.STARTED, (-1, 2, 3), 0.0),
        (Phase.ONGOING, (-1, 3, 4), 0.0),
        (Phase.ONGOING, (-1, 3, 4, 5), 0.0),
        (Phase.ENDED, (-1, 3, 4, 5), 0.0),
    ]


def test_crowd_thinning_to_one_switches_episodes() -> None:
    rules = rule_set([_rule(max_count=2, min_count=2, min_duration=0)], {"mezzanine": RIGHT_HALF})
    engine = RuleEngine(rules)
    first = engine.evaluate(frame(0.0, _people(3)))
    assert [(e.phase, e.message) for e in first] == [
        (Phase.STARTED, "3 persons in zone mezzanine (max 2)")
    ]
    engine.evaluate(frame(1.0, _people(1)))
    later = engine.evaluate(frame(2.5, _people(1)))
    assert [(e.phase, e.message) for e in later] == [
        (Phase.ENDED, "3 persons in zone mezzanine (max 2)"),
        (Phase.ONGOING, "1 person alone in zone mezzanine (min 2)"),
    ]


@given(
    counts=st.lists(st.integers(min_value=0, max_value=6), max_size=30),
    low=st.integers(min_value=2, max_value=3),
    high=st.integers(min_value=3, max_value=6),
)
@settings(max_examples=60, deadline=None)
def test_counts_within_bounds_never_fire(counts: list[int], low: int, high: int) -> None:
    rules = rule_set(
        [_rule(min_count=low, max_count=high, min_duration=0)], {"mezzanine": RIGHT_HALF}
    )
    engine = RuleEngine(rules)
    for index, count in enumerate(counts):
        inside = min(max(count, low), high)  # clamp into the allowed range
        assert engine.evaluate(frame(index * 0.2, _people(inside, outside=count))) == []
