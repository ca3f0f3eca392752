"""The shared episode lifecycle: min_duration, grace, cooldown, pruning."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safewatch.domain.events import Phase, RuleEvent, Severity
from safewatch.rules.episodes import EpisodeBook, EpisodePolicy, Observation


def _book(policy: EpisodePolicy) -> EpisodeBook:
    return EpisodeBook("r", "ppe", "cam", Severity.HIGH, policy)


def _obs(subject: int = 1) -> Observation:
    return Observation(subject, (subject,), 0.7, f"person #{subject} without hardhat")


def _run(policy: EpisodePolicy, timeline: Sequence[tuple[float, bool]]) -> list[str]:
    book = _book(policy)
    out = []
    for seq, (t, violating) in enumerate(timeline):
        for event in book.update(t, seq, [_obs()] if violating else []):
            out.append(f"{event.phase}@{event.at:g}({event.started_at:g})")
    for event in book.close_all():
        out.append(f"{event.phase}@{event.at:g}({event.started_at:g})+finish")
    return out


def _frames(
    start: float, stop: float, violating: bool, step: float = 0.2
) -> list[tuple[float, bool]]:
    n = round((stop - start) / step)
    return [(round(start + i * step, 6), violating) for i in range(n + 1)]


CASES = [
    pytest.param(
        EpisodePolicy(min_duration=1.0, grace=0.5),
        _frames(0, 1.0, True),
        ["started@1(0)", "ended@1(0)+finish"],
        id="min_duration exactly reached at the 6th frame",
    ),
    pytest.param(
        EpisodePolicy(min_duration=1.0, grace=0.5),
        _frames(0, 0.8, True) + _frames(1.0, 2.0, False),
        [],
        id="min_duration not reached: nothing",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.0, grace=0.0),
        [(0.0, True), (0.2, False)],
        ["started@0(0)", "ended@0(0)"],
        id="zero min_duration and grace: start and end immediately",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.4, grace=1.0),
        [*_frames(0, 0.4, True), *_frames(0.6, 1.0, False), *_frames(1.2, 1.4, True)],
        ["started@0.4(0)", "ongoing@1.2(0)", "ongoing@1.4(0)", "ended@1.4(0)+finish"],
        id="gap shorter than grace continues the episode",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.0, grace=0.6),
        [(0.0, True), (0.2, False), (0.4, False), (0.6, True)],
        ["started@0(0)", "ongoing@0.6(0)", "ended@0.6(0)+finish"],
        id="gap exactly equal to grace continues",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.0, grace=0.5),
        [(0.0, True), (0.2, False), (0.4, False), (0.6, False), (0.8, True)],
        ["started@0(0)", "ended@0(0)", "started@0.8(0.8)", "ended@0.8(0.8)+finish"],
        id="gap longer than grace: two episodes, ENDED at the last violating frame",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.0, grace=0.5),
        [(0.0, True), (2.0, True)],
        ["started@0(0)", "ongoing@2(0)", "ended@2(0)+finish"],
        id="sparse frames with no compliant frame between them: one episode",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.6, grace=0.5),
        [(0.0, True), (0.2, False), (0.4, True), (0.6, True)],
        ["started@0.6(0)", "ended@0.6(0)+finish"],
        id="pending violation survives a short gap and counts from its first frame",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.0, grace=0.0, cooldown=2.0),
        [(0.0, True), (0.2, False), (1.0, True), (1.8, True), (2.0, True), (2.2, True)],
        ["started@0(0)", "ended@0(0)", "started@2(1)", "ongoing@2.2(1)", "ended@2.2(1)+finish"],
        id="cooldown: reported no earlier than last violation + cooldown, from its true start",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.6, grace=0.5, cooldown=3.0),
        [*_frames(0, 0.6, True), *_frames(0.8, 1.4, False), *_frames(1.6, 4.0, True)],
        [
            "started@0.6(0)",
            "ended@0.6(0)",
            "started@3.6(1.6)",
            "ongoing@3.8(1.6)",
            "ongoing@4(1.6)",
            "ended@4(1.6)+finish",
        ],
        id="cooldown: a violation going on through its end counts from its first frame in it",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.6, grace=0.5, cooldown=3.0),
        [
            *_frames(0, 0.6, True),
            *_frames(0.8, 1.4, False),
            *_frames(1.6, 2.4, True),
            *_frames(2.6, 3.4, False),
            *_frames(3.6, 3.8, True),
        ],
        ["started@0.6(0)", "ended@0.6(0)"],
        id="cooldown: a violation that stops within it is never reported",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.6, grace=0.5, cooldown=3.0),
        [
            *_frames(0, 0.6, True),
            *_frames(0.8, 1.4, False),
            *_frames(1.6, 2.0, True),
            *_frames(2.2, 2.8, False),
            *_frames(3.0, 4.0, True),
        ],
        [
            "started@0.6(0)",
            "ended@0.6(0)",
            "started@3.6(3)",
            "ongoing@3.8(3)",
            "ongoing@4(3)",
            "ended@4(3)+finish",
        ],
        id="cooldown: a violation in it ends after grace; the next counts from its own start",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.0, grace=0.0, cooldown=1.0),
        [(0.0, True), (0.2, True), (0.4, False), (1.0, True), (1.2, True), (1.4, True)],
        [
            "started@0(0)",
            "ongoing@0.2(0)",
            "ended@0.2(0)",
            "started@1.2(1)",
            "ongoing@1.4(1)",
            "ended@1.4(1)+finish",
        ],
        id="cooldown counts from the last violating frame, inclusive end",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.0, grace=1.0),
        [(0.0, True), (2.0, True), (4.0, False), (6.0, True)],
        ["started@0(0)", "ongoing@2(0)", "ongoing@6(0)", "ended@6(0)+finish"],
        id="0.5 fps: one missed frame is within grace (1.5 frame intervals)",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.0, grace=1.0),
        [(0.0, True), (2.0, True), (4.0, False), (6.0, False), (8.0, True)],
        ["started@0(0)", "ongoing@2(0)", "ended@2(0)", "started@8(8)", "ended@8(8)+finish"],
        id="0.5 fps: two missed frames end the episode",
    ),
    pytest.param(
        EpisodePolicy(min_duration=0.0, grace=0.0),
        [(0.0, True), (2.0, True), (4.0, False), (6.0, True)],
        ["started@0(0)", "ongoing@2(0)", "ended@2(0)", "started@6(6)", "ended@6(6)+finish"],
        id="0.5 fps, zero grace: the first frame without the violation ends it",
    ),
]


@pytest.mark.parametrize(("policy", "timeline", "expected"), CASES)
def test_lifecycle(
    policy: EpisodePolicy, timeline: list[tuple[float, bool]], expected: list[str]
) -> None:
    assert _run(policy, timeline) == expected


def test_events_carry_rule_and_observation() -> None:
    book = _book(EpisodePolicy(min_duration=0.0))
    (event,) = book.update(5.0, 42, [_obs(4)])
    assert event.phase is Phase.STARTED
    assert (event.rule_id, event.rule_kind, event.camera_id) == ("r", "ppe", "cam")
    assert event.track_ids == (4,)
    assert event.severity is Severity.HIGH
    assert event.confidence == 0.7
    assert event.message == "person #4 without hardhat"
    assert event.seq == 42


def test_ended_uses_the_last_violating_frame() -> None:
    book = _book(EpisodePolicy(min_duration=0.0, grace=0.5))
    book.update(1.0, 10, [_obs()])
    book.update(1.2, 11, [_obs()])
    assert book.update(1.4, 12, []) == []
    (ended,) = book.update(1.8, 13, [])
    assert (ended.phase, ended.at, ended.seq, ended.started_at) == (Phase.ENDED, 1.2, 11, 1.0)


def test_subjects_are_independent_and_ordered() -> None:
    book = _book(EpisodePolicy(min_duration=0.0, grace=0.0))
    book.update(0.0, 0, [_obs(3), _obs(1)])
    events = book.update(0.2, 1, [_obs(2)])
    assert [(e.phase, e.track_ids) for e in events] == [
        (Phase.ENDED, (1,)),
        (Phase.ENDED, (3,)),
        (Phase.STARTED, (2,)),
    ]


def test_state_is_pruned_after_grace_and_cooldown() -> None:
    book = _book(EpisodePolicy(min_duration=0.0, grace=0.5, cooldown=1.0))
    for subject in range(200):
        book.update(subject * 0.1, subject, [_obs(subject)])
        assert len(book) <= 16  # subjects of the last grace + cooldown = 1.5 s (+ slack)
    book.update(100.0, 9999, [])
    assert len(book) == 0


@st.composite
def _flicker(draw: st.DrawFn) -> list[tuple[float, bool]]:
    """Frames 0.05-0.3 s apart; a gap without violation never lasts longer than grace (1 s)."""
    steps = draw(st.lists(st.floats(0.05, 0.3), min_size=1, max_size=80))
    flags = draw(st.lists(st.booleans(), min_size=len(steps), max_size=len(steps)))
    t, last, timeline = 0.0, 0.0, [(0.0, True)]
    for step, flag in zip(steps, flags, strict=True):
        t += step
        violating = flag or t - last > 1.0
        last = t if violating else last
        timeline.append((t, violating))
    return timeline


@settings(max_examples=200, deadline=None)
@given(_flicker(), st.floats(0.0, 3.0))
def test_flicker_shorter_than_grace_is_one_episode(
    timeline: list[tuple[float, bool]], min_duration: float
) -> None:
    events = _run(EpisodePolicy(min_duration=min_duration, grace=1.0), timeline)
    assert sum(e.startswith("started") for e in events) <= 1
    assert sum(e.startswith("ended") for e in events) == sum(
        e.startswith("started") for e in events
    )
    assert not [e for e in events if e.startswith("ended") and not e.endswith("+finish")]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.01, 2.0), st.booleans()), max_size=60),
    st.floats(0, 2),
    st.floats(0, 2),
    st.floats(0, 3),
)
def test_episodes_are_well_formed(
    steps: list[tuple[float, bool]], min_duration: float, grace: float, cooldown: float
) -> None:
    t, timeline = 0.0, []
    for step, flag in steps:
        t += step
        timeline.append((t, flag))
    book = _book(EpisodePolicy(min_duration, grace, cooldown))
    events = [
        e for i, (t, v) in enumerate(timeline) for e in book.update(t, i, [_obs()] if v else [])
    ]
    events += book.close_all()
    open_ = False
    last_end = float("-inf")
    for event in events:
        if event.phase is Phase.STARTED:
            assert not open_
            assert event.at - event.started_at >= min_duration - 1e-6
            # Reported no earlier than the end of the cooldown, but from the violation's true
            # first frame, which may be within the cooldown (after the previous episode ended).
            assert event.at >= last_end + cooldown - 1e-6
            assert event.started_at > last_end
            open_ = True
        elif event.phase is Phase.ONGOING:
            assert open_
        else:
            assert open_
            open_, last_end = False, event.at
    assert not open_


class _ScanningBook(EpisodeBook):
    """Looks for stale states on every frame, as the book did before it counted idle ones."""

    def _prune(self, at: float) -> None:
        self._idle += 1_000_000  # never "nothing idle"
        super()._prune(at)
        self._idle -= 1_000_000


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.01, 1.5), st.sets(st.integers(0, 4), max_size=4), st.booleans()),
        max_size=50,
    ),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0, 2),
    st.booleans(),
)
def test_skipping_the_pruning_scan_changes_nothing(
    steps: list[tuple[float, set[int], bool]],
    min_duration: float,
    grace: float,
    cooldown: float,
    instant: bool,
) -> None:
    policy = EpisodePolicy(min_duration, grace, cooldown)
    book, reference = _book(policy), _ScanningBook("r", "ppe", "cam", Severity.HIGH, policy)
    t = 0.0
    for seq, (step, subjects, closing) in enumerate(steps):
        t += step
        observations = [_obs(s) for s in sorted(subjects)]
        action = "close" if closing and seq % 3 == 0 else "instants" if instant else "update"
        expected = _advance(reference, action, t, seq, observations)
        assert _advance(book, action, t, seq, observations) == expected
        assert len(book) == len(reference)
        assert book.open_subjects == reference.open_subjects


def _advance(
    book: EpisodeBook, action: str, t: float, seq: int, observations: list[Observation]
) -> list[RuleEvent]:
    if action == "close":
        return book.close_all(t)
    if action == "instants":
        return book.instants(t, seq, observations)
    return book.update(t, seq, observations)
