"""The swapping half of hot reload: RuleSetHolder and ReloadingEngine, without files."""

from __future__ import annotations

from rules_factories import RIGHT_HALF, frame, person, rule, rule_set

from safewatch.domain.events import Phase
from safewatch.domain.tracks import PPEState, TrackedFrame
from safewatch.rules.calibration import Calibration
from safewatch.rules.reload import ReloadingEngine, RuleSetHolder

ABSENT = PPEState.ABSENT
PRESS = rule(id="press", kind="zone_intrusion", zone="press", min_duration=0)
HARDHAT = rule(id="hardhat", kind="ppe", require=["hardhat"], min_duration=0)
VEST = rule(id="vest", kind="ppe", require=["vest"], min_duration=0)
INSIDE = [person(7, (700, 400), hardhat=ABSENT, vest=ABSENT)]


def test_holder_publishes_new_sets_and_ignores_equal_ones() -> None:
    holder = RuleSetHolder(rule_set([PRESS], {"press": RIGHT_HALF}))
    first = holder.current()
    assert (first.number, holder.status.ok, holder.status.generation) == (1, True, 1)
    status = holder.offer(rule_set([rule(**PRESS.model_dump())], {"press": RIGHT_HALF}))
    assert holder.current() is first, "an equal set is not a new generation"
    assert status.ok and status.message.startswith("unchanged")
    status = holder.offer(rule_set([PRESS, HARDHAT], {"press": RIGHT_HALF}))
    assert holder.current().number == status.generation == 2
    assert [r.id for r in holder.current().rules.rules] == ["press", "hardhat"]
    assert (status.attempts, status.failures) == (2, 0)


def test_holder_keeps_the_last_good_set_on_rejection() -> None:
    holder = RuleSetHolder(rule_set([PRESS], {"press": RIGHT_HALF}))
    good = holder.current()
    errors = ["rules/a.yaml:4: rules[0].kind: unknown kind", "rules/b.yaml:9: rules[2].zone: x"]
    status = holder.reject(errors)
    assert holder.current() is good
    assert not status.ok
    assert status.generation == 1
    assert status.errors == tuple(errors)
    assert status.message == (
        "kept generation 1: rules/a.yaml:4: rules[0].kind: unknown kind (and 1 more)"
    )
    assert (status.attempts, status.failures) == (1, 1)
    # A later good set clears the error but keeps the count.
    status = holder.offer(rule_set([HARDHAT]))
    assert status.ok and status.errors == () and status.failures == 1


def test_engine_switches_between_frames_and_keeps_unchanged_rules() -> None:
    holder = RuleSetHolder(rule_set([PRESS, HARDHAT], {"press": RIGHT_HALF}))
    engine = ReloadingEngine(holder)
    first = engine.evaluate(frame(0.0, INSIDE))
    assert [(e.rule_id, e.phase) for e in first] == [
        ("press", Phase.STARTED),
        ("hardhat", Phase.STARTED),
    ]
    assert engine.generation.number == 1
    holder.offer(rule_set([HARDHAT, VEST]))
    # Nothing changes until the next frame: the engine only switches at a frame's start.
    assert engine.generation.number == 1
    events = engine.evaluate(frame(0.2, INSIDE))
    assert engine.generation.number == 2
    assert [(e.rule_id, e.phase, e.started_at) for e in events] == [
        ("press", Phase.ENDED, 0.0),  # removed: its episode ends, first in the list
        ("hardhat", Phase.ONGOING, 0.0),  # unchanged: the same episode goes on
        ("vest", Phase.STARTED, 0.2),  # new
    ]
    assert engine.rules is holder.current().rules


def test_engines_on_different_cameras_share_one_holder() -> None:
    holder = RuleSetHolder(rule_set([HARDHAT]))
    north, south = ReloadingEngine(holder), ReloadingEngine(holder)
    north.evaluate(frame(0.0, INSIDE, camera="north"))
    south.evaluate(frame(0.0, INSIDE, camera="south"))
    holder.offer(rule_set([VEST]))
    (ended, started) = north.evaluate(frame(0.2, INSIDE, camera="north"))
    assert (ended.camera_id, ended.rule_id, ended.phase) == ("north", "hardhat", Phase.ENDED)
    assert (started.rule_id, started.phase) == ("vest", Phase.STARTED)
    assert south.generation.number == 1, "south has seen no frame since"
    assert [e.rule_id for e in south.finish("south")] == ["hardhat"]


def test_engine_applies_offered_calibrations_between_frames_to_rules_in_metres_only() -> None:
    """A site reload's calibrations reach the engine at the next frame's start; only the rules
    that measure in metres on the recalibrated camera start afresh (their floor positions came
    from the old mapping), a rule in pixels there keeps its episode."""
    square = [[0, 0], [1, 0], [1, 1], [0, 1]]
    cm = Calibration.from_points(square, [[0, 0], [10, 0], [10, 5], [0, 5]])  # 1 px = 1 cm
    half = Calibration.from_points(square, [[0, 0], [5, 0], [5, 2.5], [0, 2.5]])
    speed = rule(id="speed", kind="speed", objects=["person"], max_speed="10km/h", min_duration=0)
    holder = RuleSetHolder(rule_set([HARDHAT, speed]))
    engine = ReloadingEngine(holder, calibrations={"cam": cm})

    def walking(index: int) -> TrackedFrame:  # 60 px a frame at 5 fps: 10.8 km/h at 1 px = 1 cm
        return frame(index / 5, [person(7, (100 + 60 * index, 400), hardhat=ABSENT)])

    events = [e for i in range(5) for e in engine.evaluate(walking(i))]
    assert {(e.rule_id, e.phase) for e in events} >= {
        ("hardhat", Phase.STARTED),
        ("speed", Phase.STARTED),
    }
    engine.offer_calibrations({"cam": half})
    assert [(e.rule_id, e.phase) for e in engine.evaluate(walking(5))] == [
        ("speed", Phase.ENDED),  # measured with the old calibration: ends, first in the list
        ("hardhat", Phase.ONGOING),  # in pixels: the same episode goes on
    ]
    # 5.4 km/h with the new calibration: under the limit, once the new history fills.
    assert all(e.rule_id == "hardhat" for i in range(6, 12) for e in engine.evaluate(walking(i)))
    engine.offer_calibrations({"cam": half})  # the same calibration again changes nothing
    assert [(e.rule_id, e.phase) for e in engine.evaluate(walking(12))] == [
        ("hardhat", Phase.ONGOING)
    ]
