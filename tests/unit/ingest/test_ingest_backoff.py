"""Reconnect delays double up to the cap, jitter stays in bounds, and reset starts over."""

from __future__ import annotations

import random

import pytest

from safewatch.ingest.backoff import Backoff


def test_doubles_to_the_cap_without_jitter() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_jitter_stays_within_its_fraction_and_the_cap() -> None:
    backoff = Backoff(1.0, 8.0, jitter=0.25, rng=random.Random(7))
    for base in (1.0, 2.0, 4.0, 8.0, 8.0):
        delay = backoff.next_delay()
        assert base * 0.75 <= delay <= min(8.0, base * 1.25)


def test_jitter_spreads_cameras_apart() -> None:
    delays = {Backoff(rng=random.Random(seed)).next_delay() for seed in range(20)}
    assert len(delays) == 20


def test_reset_starts_again() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.0)
    for _ in range(5):
        backoff.next_delay()
    assert backoff.attempt == 5
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(2000)][-1] == 30.0


@pytest.mark.parametrize(("initial", "cap", "jitter"), [(0, 1, 0), (2, 1, 0), (1, 2, 1.0)])
def test_rejects_bad_settings(initial: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, cap, jitter)
