"""Reconnect delays: capped exponential with jitter.

Doubling keeps a dead camera from being hammered, the cap keeps a recovered camera from waiting
long, and jitter keeps fifty cameras behind one switch from reconnecting in lockstep after it
reboots.
"""

from __future__ import annotations

import random

__all__ = ["STABLE_SECONDS", "Backoff"]

STABLE_SECONDS = 30.0
"""Seconds a connection (or a worker) must have run before its end starts the delays over: one
that ends sooner is retried later each time, so a camera that accepts, sends a frame and drops
(or a worker that crashes at once) is not hammered every ``initial`` seconds forever."""


class Backoff:
    """Delay sequence ``initial, 2*initial, ... , cap``, each scaled by a random jitter factor.

    Args:
        initial: First delay in seconds.
        cap: Largest delay in seconds.
        jitter: Fraction of each delay that is randomised: the delay is multiplied by a factor drawn
            uniformly from ``[1 - jitter, 1 + jitter]`` (and still capped).
        rng: Random source; tests pass a seeded one.
    """

    def __init__(
        self,
        initial: float = 0.5,
        cap: float = 30.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial <= cap:
            raise ValueError(f"need 0 < initial <= cap, got initial={initial}, cap={cap}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.initial = initial
        self.cap = cap
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Delays handed out since the last reset."""
        return self._attempt

    def reset(self) -> None:
        """Start again from ``initial``; called once a connection has run for
        :data:`STABLE_SECONDS`."""
        self._attempt = 0

    def next_delay(self) -> float:
        """Return the next delay in seconds and advance the sequence."""
        base = min(self.cap, self.initial * 2.0 ** min(self._attempt, 63))
        self._attempt += 1
        factor = 1.0 + self._rng.uniform(-self.jitter, self.jitter)
        return min(self.cap, base * factor)
