"""Failed-login throttling: slow down password guessing without locking out the control room.

Failures are counted in a sliding window per user name and per client address. Once either count
reaches its limit, further attempts for that name (or from that address) are refused with the
seconds to wait, *before* the password is checked, so a guesser gets no signal and burns no
argon2 time. A successful login clears the name's failures. Per-name limits stop a slow
distributed guess at one account; per-address limits stop one machine trying many names.

State is in memory: one dashboard process serves a site. Behind several API processes each keeps
its own counts, which multiplies the allowance by the number of processes but never blocks a
legitimate user for long.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["LoginLimiter"]


class LoginLimiter:
    """Sliding-window counter of failed logins.

    Args:
        per_user: Failures allowed per user name within ``window`` seconds.
        per_client: Failures allowed per client address within ``window`` seconds.
        window: Window length in seconds.
        clock: Monotonic clock (injectable for tests).
        max_keys: Keys kept at most; the oldest are forgotten beyond it (bounded memory under a
            flood of random names).
    """

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_client: int = 20,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._limits = {"user": per_user, "client": per_client}
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, username: str, client: str) -> float:
        """Seconds to wait before another attempt is allowed (0 when allowed now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for kind, value in (("user", username.lower()), ("client", client)):
                times = self._recent((kind, value), now)
                if len(times) >= self._limits[kind]:
                    wait = max(wait, self._window - (now - times[-self._limits[kind]]))
        return wait

    def failed(self, username: str, client: str) -> None:
        """Count a failed attempt."""
        now = self._clock()
        with self._lock:
            for key in (("user", username.lower()), ("client", client)):
                self._recent(key, now)
                if key not in self._failures and len(self._failures) >= self._max_keys:
                    self._failures.pop(next(iter(self._failures)))
                self._failures.setdefault(key, deque(maxlen=256)).append(now)

    def succeeded(self, username: str) -> None:
        """Forget the name's failures (the address keeps its count)."""
        with self._lock:
            self._failures.pop(("user", username.lower()), None)
