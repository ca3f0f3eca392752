"""The engine end to end: camera scoping, schedules, finish, reload, bounded state."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_factories import RIGHT_HALF, H, W, frame, person, rule, rule_set

from safewatch.domain.events import Phase, RuleEvent, Severity
from safewatch.domain.tracks import PPEState
from safewatch.errors import ConfigError
from safewatch.rules import RuleEngine

ABSENT = PPEState.ABSENT
HARDHAT = rule(id="hardhat", kind="ppe", require=["hardhat"], min_duration="1s", severity="high")
PRESS = rule(id="press", kind="zone_intrusion", zone="press", min_duration=0, grace="400ms")


def _summary(events: list[RuleEvent]) -> list[tuple[str, str, tuple[int, ...], float, float]]:
    return [(e.rule_id, e.phase.value, e.track_ids, e.started_at, e.at) for e in events]


def test_ppe_episode_from_frames() -> None:
    engine = RuleEngine(rule_set([HARDHAT]), "UTC")
    events = []
    for i in range(8):
        events += engine.evaluate(frame(round(i * 0.2, 6), [person(4, hardhat=ABSENT)]))
    events += engine.evaluate(frame(1.6, [person(4, hardhat=PPEState.PRESENT)]))
    events += engine.evaluate(frame(2.6, []))
    assert _summary(events) == [
        ("hardhat", "started", (4,), 0.0, 1.0),
        ("hardhat", "ongoing", (4,), 0.0, 1.2),
        ("hardhat", "ongoing", (4,), 0.0, 1.4),
        ("hardhat", "ended", (4,), 0.0, 1.4),
    ]
    started = events[0]
    assert started.message == "person #4 without hardhat"
    assert started.severity is Severity.HIGH
    assert started.rule_kind == "ppe"
    assert started.camera_id == "cam"
    assert started.seq == 10
    assert engine.open_state_count() == 0


def test_zone_intrusion_from_frames() -> None:
    engine = RuleEngine(rule_set([PRESS], {"press": RIGHT_HALF}))
    inside, outside = person(7, (700, 400)), person(7, (300, 400))
    events = []
    for t, track in [(0.0, outside), (0.2, inside), (0.4, inside), (0.6, outside), (1.2, outside)]:
        events += engine.evaluate(frame(t, [track]))
    assert _summary(events) == [
        ("press", "started", (7,), 0.2, 0.2),
        ("press", "ongoing", (7,), 0.2, 0.4),
        ("press", "ended", (7,), 0.2, 0.4),
    ]
    assert events[0].zone_id == "press"
    assert events[0].message == "person #7 in zone press"


@pytest.mark.parametrize(
    ("missed", "starts"),
    [((14.0,), [0.0]), ((14.0, 16.0), [0.0, 18.0])],
    ids=["one missed frame: one episode", "two missed frames: two episodes"],
)
def test_zone_intrusion_at_half_an_fps(missed: tuple[float, ...], starts: list[float]) -> None:
    # Default grace (1 s) on a 0.5 fps camera: a missed detection is 2 s after the last frame
    # that saw the track; the grace in force is 1.5 frame intervals (3 s), so only two do end it.
    engine = RuleEngine(rule_set([rule(id="in", kind="zone_intrusion", zone="press")],
                                 {"press": RIGHT_HALF}))  # fmt: skip
    events = []
    for k in range(15):
        t = 2.0 * k
        events += engine.evaluate(frame(t, [] if t in missed else [person(7, (700, 400))]))
    assert [e.started_at for e in events if e.phase is Phase.STARTED] == starts


def test_rules_run_only_on_their_cameras() -> None:
    only_dock = rule(
        id="dock-ppe", kind="ppe", require=["hardhat"], cameras=["dock"], min_duration=0
    )
    rules = rule_set([only_dock, PRESS], {"press": RIGHT_HALF})
    engine = RuleEngine(rules)
    track = person(1, (700, 400), hardhat=ABSENT)
    assert [e.rule_id for e in engine.evaluate(frame(0, [track], camera="dock"))] == ["dock-ppe"]
    assert [e.rule_id for e in engine.evaluate(frame(0, [track], camera="cam"))] == ["press"]


def test_disabled_rule_is_not_evaluated() -> None:
    disabled = rule(id="off", kind="ppe", require=["hardhat"], enabled=False, min_duration=0)
    engine = RuleEngine(rule_set([disabled]))
    assert engine.evaluate(frame(0, [person(1, hardhat=ABSENT)])) == []


def test_finish_ends_open_episodes_at_their_last_violating_frame() -> None:
    engine = RuleEngine(rule_set([PRESS], {"press": RIGHT_HALF, "dock:other": RIGHT_HALF}))
    engine.evaluate(frame(0.0, [person(1, (700, 400)), person(2, (700, 400))]))
    engine.evaluate(frame(0.2, [person(2, (700, 400))]))
    ended = engine.finish("cam", 0.2)
    assert _summary(ended) == [
        ("press", "ended", (1,), 0.0, 0.0),
        ("press", "ended", (2,), 0.0, 0.2),
    ]
    assert engine.finish("cam", 0.2) == []
    assert engine.open_state_count() == 0


def test_schedule_blocks_new_episodes_and_ends_open_ones() -> None:
    day = rule(
        id="day",
        kind="zone_intrusion",
        zone="press",
        schedule={"between": ["06:00", "22:00"]},
    )
    engine = RuleEngine(rule_set([day], {"press": RIGHT_HALF}), "Europe/Berlin")
    base = datetime.fromisoformat("2024-03-04T21:59:58+01:00").timestamp()
    inside = [person(1, (700, 400))]
    phases = [
        [e.phase for e in engine.evaluate(frame(base + dt, inside, seq=i))]
        for i, dt in enumerate([0.0, 1.0, 2.0, 3.0])
    ]
    assert phases == [[Phase.STARTED], [Phase.ONGOING], [Phase.ENDED], []]
    assert engine.open_state_count() == 0


def test_cooldown_suppresses_reentry() -> None:
    cooled = rule(id="c", kind="zone_intrusion", zone="press", grace=0, cooldown="5s")
    engine = RuleEngine(rule_set([cooled], {"press": RIGHT_HALF}))
    inside, outside = [person(1, (700, 400))], [person(1, (300, 400))]
    timeline = [(0, inside), (1, outside), (2, inside), (4.9, inside), (5.0, inside), (6, outside)]
    events = [e for t, tracks in timeline for e in engine.evaluate(frame(t, tracks))]
    # Back inside at 2 s, within the cooldown: reported once it is over (5 s), from 2 s.
    assert _summary(events) == [
        ("c", "started", (1,), 0, 0),
        ("c", "ended", (1,), 0, 0),
        ("c", "started", (1,), 2, 5.0),
        ("c", "ended", (1,), 2, 5.0),
    ]


def test_replace_rules_keeps_surviving_episodes() -> None:
    vest = rule(id="vest", kind="ppe", require=["vest"], min_duration=0)
    hardhat = rule(id="hardhat", kind="ppe", require=["hardhat"], min_duration=0)
    engine = RuleEngine(rule_set([vest, hardhat]))
    track = [person(3, hardhat=ABSENT, vest=ABSENT)]
    assert len(engine.evaluate(frame(0, track))) == 2
    stricter = rule(id="hardhat", kind="ppe", require=["hardhat"], severity="critical")
    ended = engine.replace_rules(rule_set([stricter]))
    assert _summary(ended) == [("vest", "ended", (3,), 0, 0)]
    (event,) = engine.evaluate(frame(0.2, track))
    assert (event.rule_id, event.phase, event.severity) == (
        "hardhat",
        Phase.ONGOING,
        Severity.CRITICAL,
    )


def test_unknown_time_zone() -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        RuleEngine(rule_set([]), "Mars/Olympus")


def test_state_stays_bounded_on_a_long_stream() -> None:
    engine = RuleEngine(rule_set([PRESS, HARDHAT], {"press": RIGHT_HALF}))
    for i in range(3000):
        t = i * 0.2
        # A new person every frame, each seen for three frames then gone forever.
        tracks = [person(j, (700, 400), hardhat=ABSENT) for j in range(max(0, i - 2), i + 1)]
        engine.evaluate(frame(t, tracks))
        assert engine.open_state_count() <= 20
    engine.evaluate(frame(3000 * 0.2 + 10, []))
    assert engine.open_state_count() == 0


def test_evaluation_is_deterministic() -> None:
    frames = [
        frame(
            i * 0.2, [person(k, (300 + 90 * ((i + k) % 6), 400), hardhat=ABSENT) for k in range(3)]
        )
        for i in range(60)
    ]

    def run() -> list[RuleEvent]:
        engine = RuleEngine(rule_set([PRESS, HARDHAT], {"press": RIGHT_HALF}))
        return [e for f in frames for e in engine.evaluate(f)] + engine.finish("cam", 12.0)

    assert run() == run()
    assert run()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.integers(1, 5), st.floats(0, 470), st.floats(20, 500)),
            max_size=5,
        ),
        max_size=40,
    )
)
def test_a_track_that_never_enters_never_triggers(
    frames: list[list[tuple[int, float, float]]],
) -> None:
    """Boxes wholly left of the zone (x < 500 px): no anchor can be inside, so no event."""
    zone_rules = [
        rule(id=a, kind="zone_intrusion", zone="press", anchor=a) for a in ("feet", "centre", "box")
    ]
    engine = RuleEngine(rule_set(zone_rules, {"press": RIGHT_HALF}))
    for i, tracks in enumerate(frames):
        people = [person(tid, (x, y), size=(min(2 * x, 40), 20)) for tid, x, y in tracks]
        assert all(p.xyxy[2] < W / 2 and p.xyxy[3] <= H for p in people)
        assert engine.evaluate(frame(i * 0.2, people)) == []
    assert engine.finish("cam", 0.0) == []
