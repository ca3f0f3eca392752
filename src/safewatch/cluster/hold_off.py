"""Hysteresis for an analyzer whose database link keeps dropping (a flapping analyzer).

An analyzer that cannot renew drops its cameras before its leases expire; the others take them
over and close their open incidents as ``analyzer_lost``. Without hysteresis the analyzer was
live again at its first successful renewal, sticky placement handed its cameras back, and the
next drop repeated the cycle: every drop split every open incident of those cameras once more.

:class:`HoldOff` counts the *loss episodes* (camera losses within one lease of each other are
one: the watchdog drops every camera at once, a lease taken from under it a moment later is the
same drop). :data:`EPISODES` episodes within :data:`WINDOW_LEASES` leases start a hold-off of
:data:`FIRST_HOLD_OFF_LEASES` leases, during which the analyzer claims nothing and the others'
placement leaves it out (:class:`~safewatch.cluster.membership.ClusterMember` reports itself
``held_off``). A loss after a hold-off, before a calm window (:data:`WINDOW_LEASES` leases
without a loss, counted from the later of the last loss and the end of the hold-off) has
passed, starts the next one at once, twice as long, up to :data:`MAX_HOLD_OFF_LEASES` leases; a
calm window forgets it all. Pure (no I/O, an injectable clock), so it is tested on a fake clock.

A hold-off is waived where the analyzer is needed (:func:`needed_despite_hold_off`): a camera
no other analyzer may run. Analyzers held off together (one database outage hits them all) each
saw no other eligible analyzer, all waived, heartbeated active, saw one another, all un-waived,
and so on, so their cameras could stay unowned for the whole hold-off. Now held-off analyzers
heartbeat as ``held_off`` and count as able to run a camera when their id is lower: only the
lowest eligible one waives, whatever their phases.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from safewatch.cluster.placement import Analyzer, eligible

__all__ = [
    "EPISODES",
    "FIRST_HOLD_OFF_LEASES",
    "MAX_HOLD_OFF_LEASES",
    "WINDOW_LEASES",
    "HoldOff",
    "HoldOffStart",
    "needed_despite_hold_off",
]

EPISODES = 3
"""Loss episodes within :data:`WINDOW_LEASES` leases that start the first hold-off."""

WINDOW_LEASES = 30.0
"""Leases over which episodes are counted, and the calm window that resets the doubling."""

FIRST_HOLD_OFF_LEASES = 3.0
"""The first hold-off, in leases; each one started before a calm window lasts twice as long."""

MAX_HOLD_OFF_LEASES = 60.0
"""The longest hold-off, in leases."""


@dataclass(frozen=True)
class HoldOffStart:
    """A hold-off just started: how long, and the losses behind it (since the last calm)."""

    seconds: float
    losses: int
    within: float  # seconds from the first of those losses to the last


class HoldOff:
    """Counts an analyzer's loss episodes and says how long it holds off claims (see the
    module docstring). Not thread-safe: the member calls :meth:`lost` under its lock.

    Args:
        lease_seconds: The cluster's lease; every bound is a number of leases.
        clock: Monotonic seconds (a fake one in tests).
    """

    def __init__(
        self, lease_seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lease = float(lease_seconds)
        self._clock = clock
        self._window = WINDOW_LEASES * self.lease
        self._first = FIRST_HOLD_OFF_LEASES * self.lease
        self._next = self._first
        self._episodes: deque[float] = deque()  # episode starts within the window
        self._since_calm: list[float] = []  # episode starts since the last calm window
        self._last_loss: float | None = None
        self._repeat = False  # a hold-off started since the last calm window
        self.until = float("-inf")  # monotonic end of the current (or last) hold-off
        self.cause: HoldOffStart | None = None  # what started the current (or last) one

    def lost(self) -> HoldOffStart | None:
        """Note one camera lost (not stopped on purpose); returns the hold-off this starts."""
        now = self._clock()
        last, self._last_loss = self._last_loss, now
        if last is not None and now - last <= self.lease:
            return None  # the same episode
        if last is None or now - max(last, self.until) >= self._window:  # calm since
            self._next, self._repeat = self._first, False
            self._episodes.clear()
            self._since_calm.clear()
        self._episodes.append(now)
        self._since_calm.append(now)
        while self._episodes[0] < now - self._window:
            self._episodes.popleft()
        if now < self.until:
            return None  # already held off (a camera it was still handing over)
        if not self._repeat and len(self._episodes) < EPISODES:
            return None
        start = HoldOffStart(self._next, len(self._since_calm), now - self._since_calm[0])
        self.until, self.cause, self._repeat = now + self._next, start, True
        self._next = min(2 * self._next, MAX_HOLD_OFF_LEASES * self.lease)
        return start

    def remaining(self) -> float:
        """Seconds left of the current hold-off (0 when none)."""
        return max(0.0, self.until - self._clock())


def needed_despite_hold_off(
    cameras: Sequence[str],
    me: Analyzer,
    live: Sequence[Analyzer],
    held_off: Sequence[Analyzer],
    labels: Mapping[str, Mapping[str, str]],
) -> list[str]:
    """The cameras for which the held-off analyzer ``me`` waives its hold-off: those placement
    gives to nobody without it but to it with it (a flapping owner is better than none).

    Held-off analyzers (``held_off``, fresh heartbeats) with a lower id than ``me`` count as
    able to run a camera, since each of them decides the same way: of the held-off analyzers
    eligible for a camera only the lowest waives, and the others stay held off, rather than all
    of them waiving and un-waiving in turn as they see one another come and go (``live`` holds
    the active ones, a waived one included; ``me`` is left out of both lists wherever it is).

    Placement leaves a camera to nobody exactly when no analyzer is eligible for it, and gives
    it to ``me`` when ``me`` is the only eligible one, so eligibility alone answers: running
    :func:`~safewatch.cluster.placement.plan` twice here, at every round of every analyzer,
    cost 0.15 s of CPU per round at 2,000 cameras and 20 analyzers (equal on 300 random
    clusters).
    """
    others = [a for a in live if a.analyzer_id != me.analyzer_id]
    others += [a for a in held_off if a.analyzer_id < me.analyzer_id]
    return sorted(
        camera
        for camera in cameras
        if eligible(labels.get(camera, {}), me)
        and not any(eligible(labels.get(camera, {}), a) for a in others)
    )
