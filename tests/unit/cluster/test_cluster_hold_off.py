"""The hold-off of a flapping analyzer, on a fake clock: episodes, the first hold-off, doubling
up to the cap, and the calm window that forgets it."""

from __future__ import annotations

import random

from safewatch.cluster.hold_off import (
    FIRST_HOLD_OFF_LEASES,
    MAX_HOLD_OFF_LEASES,
    WINDOW_LEASES,
    HoldOff,
    needed_despite_hold_off,
)
from safewatch.cluster.placement import Analyzer, plan

LEASE = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flapping() -> tuple[HoldOff, Clock]:
    clock = Clock()
    return HoldOff(LEASE, clock=clock), clock


def test_three_episodes_within_the_window_start_a_hold_off_of_three_leases() -> None:
    hold, clock = flapping()
    assert hold.lost() is None
    clock.now += 5 * LEASE
    assert hold.lost() is None
    clock.now += 5 * LEASE
    start = hold.lost()
    assert start is not None
    assert start.seconds == FIRST_HOLD_OFF_LEASES * LEASE
    assert (start.losses, start.within) == (3, 10 * LEASE)
    assert hold.remaining() == FIRST_HOLD_OFF_LEASES * LEASE
    clock.now += FIRST_HOLD_OFF_LEASES * LEASE
    assert hold.remaining() == 0


def test_losses_within_a_lease_of_each_other_are_one_episode() -> None:
    hold, clock = flapping()
    for _ in range(10):  # every camera dropped, then leases found taken, 0.9 lease apart
        assert hold.lost() is None
        clock.now += 0.9 * LEASE
    assert hold.remaining() == 0


def test_episodes_further_apart_than_the_window_start_nothing() -> None:
    hold, clock = flapping()
    for _ in range(6):
        assert hold.lost() is None
        clock.now += WINDOW_LEASES * LEASE / 2 + 1
    assert hold.remaining() == 0


def test_a_loss_after_a_hold_off_starts_the_next_twice_as_long_up_to_the_cap() -> None:
    hold, clock = flapping()
    for _ in range(2):
        hold.lost()
        clock.now += 2 * LEASE
    seconds = []
    for _ in range(8):
        start = hold.lost()
        assert start is not None
        seconds.append(start.seconds / LEASE)
        clock.now = hold.until + 2 * LEASE  # rejoined, and lost its cameras again
    assert seconds == [3, 6, 12, 24, 48, 60, 60, 60]
    assert MAX_HOLD_OFF_LEASES == 60


def test_a_loss_during_a_hold_off_neither_extends_nor_doubles_it() -> None:
    hold, clock = flapping()
    for _ in range(3):
        hold.lost()
        clock.now += 2 * LEASE
    until = hold.until
    clock.now = until - 0.5 * LEASE  # a camera it was still handing over
    assert hold.lost() is None
    assert hold.until == until
    clock.now = until + 2 * LEASE
    start = hold.lost()
    assert start is not None and start.seconds == 2 * FIRST_HOLD_OFF_LEASES * LEASE


def test_a_calm_window_after_the_hold_off_forgets_it() -> None:
    hold, clock = flapping()
    for _ in range(2):  # two hold-offs: the next would be 12 leases
        for _ in range(3):
            hold.lost()
            clock.now += 2 * LEASE
        clock.now = hold.until + 2 * LEASE
    # A hold-off longer than the window is not itself calm: the window counts from its end.
    clock.now = hold.until + WINDOW_LEASES * LEASE - 1
    start = hold.lost()
    assert start is not None and start.seconds == 4 * FIRST_HOLD_OFF_LEASES * LEASE
    clock.now = hold.until + WINDOW_LEASES * LEASE
    assert hold.lost() is None  # calm: one episode is not enough any more
    clock.now += 2 * LEASE
    assert hold.lost() is None
    clock.now += 2 * LEASE
    start = hold.lost()
    assert start is not None and start.seconds == FIRST_HOLD_OFF_LEASES * LEASE
    assert (start.losses, start.within) == (3, 4 * LEASE)


CAMERAS = [f"cam-{n}" for n in range(4)]


def test_of_analyzers_held_off_together_only_the_lowest_id_waives() -> None:
    """One database outage holds a and b off at once, neither active: each saw no other
    eligible analyzer, both waived, heartbeated active, saw each other, both un-waived...;
    now only a waives, whatever order they look in, and b stays held off once a is active."""
    a, b = Analyzer("a"), Analyzer("b")
    assert needed_despite_hold_off(CAMERAS, a, [], [a, b], {}) == CAMERAS
    assert needed_despite_hold_off(CAMERAS, b, [], [a, b], {}) == []
    # a waived (active again), b still held off: the same answers, so nobody flips back
    assert needed_despite_hold_off(CAMERAS, a, [a], [b], {}) == CAMERAS
    assert needed_despite_hold_off(CAMERAS, b, [a], [b], {}) == []


def test_heartbeats_in_phase_settle_on_one_waiving_analyzer() -> None:
    """Both decide from the same rows at every round, then heartbeat what they decided (the
    phases that kept both flipping before): after the first round a is active, b held off."""
    analyzers = [Analyzer("b"), Analyzer("a"), Analyzer("c")]
    held = {x.analyzer_id: True for x in analyzers}  # every row says held_off
    for _ in range(5):
        live = [x for x in analyzers if not held[x.analyzer_id]]
        off = [x for x in analyzers if held[x.analyzer_id]]
        held = {
            x.analyzer_id: not needed_despite_hold_off(CAMERAS, x, live, off, {}) for x in analyzers
        }
        assert held == {"a": False, "b": True, "c": True}


def test_the_lowest_id_among_the_eligible_waives_per_camera() -> None:
    """A camera only b's labels allow is b's to run despite a's lower id; a keeps the rest."""
    a, b = Analyzer("a"), Analyzer("b", labels={"gpu": "true"})
    labels = {"cam-0": {"gpu": "true"}}
    assert needed_despite_hold_off(CAMERAS, a, [], [a, b], labels) == CAMERAS[1:]
    assert needed_despite_hold_off(CAMERAS, b, [], [a, b], labels) == ["cam-0"]


def test_no_waiver_while_an_active_analyzer_may_run_every_camera() -> None:
    a, b, c = Analyzer("a"), Analyzer("b"), Analyzer("c")
    assert needed_despite_hold_off(CAMERAS, a, [c], [a, b], {}) == []
    assert needed_despite_hold_off(CAMERAS, b, [c], [a, b], {}) == []
    assert needed_despite_hold_off(CAMERAS, a, [], [a], {}) == CAMERAS  # alone


def test_the_waiver_is_what_placement_would_leave_to_nobody_but_me() -> None:
    """Eligibility alone gives the waiver (it ran placement twice per round before: 0.15 s of
    CPU at 2,000 cameras and 20 analyzers); it must agree with placement's own answer."""
    rng = random.Random(7)
    for _ in range(300):
        pool = [
            Analyzer(
                f"a{i}",
                rng.randint(1, 3),
                {"gpu": rng.choice(["true", "false"])} if rng.random() < 0.7 else {},
            )
            for i in range(rng.randint(1, 5))
        ]
        me = pool[0]
        live = [a for a in pool[1:] if rng.random() < 0.5]
        off = [a for a in pool[1:] if a not in live and rng.random() < 0.5]
        cameras = [f"c{i}" for i in range(rng.randint(0, 30))]
        labels = {c: {"gpu": rng.choice(["true", "false"])} for c in cameras if rng.random() < 0.5}
        owners = {c: rng.choice([None, *(a.analyzer_id for a in pool)]) for c in cameras}
        others = [*live, *(a for a in off if a.analyzer_id < me.analyzer_id)]
        without = plan(cameras, others, owners, labels)
        with_me = plan(cameras, [*others, me], owners, labels)
        expected = sorted(c for c in cameras if without[c] is None and with_me[c] == "a0")
        assert needed_despite_hold_off(cameras, me, live, off, labels) == expected
