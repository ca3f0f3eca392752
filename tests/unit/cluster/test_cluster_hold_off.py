"""The hold-off of a flapping analyzer, on a fake clock: episodes, the first hold-off, doubling
up to the cap, and the calm window that forgets it."""

from __future__ import annotations

from safewatch.cluster.hold_off import (
    FIRST_HOLD_OFF_LEASES,
    MAX_HOLD_OFF_LEASES,
    WINDOW_LEASES,
    HoldOff,
)

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
