"""Recent rates from cumulative counters (decode fps, analysed fps) for gauges and ``/readyz``.

Prometheus computes rates itself from the counters; these gauges are for a human reading
``/readyz`` or ``/metrics`` directly, who wants "5.0 fps now", not a counter.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RateMeter"]


class RateMeter:
    """Rate of a cumulative counter over the last ``window`` seconds.

    Args:
        window: Seconds of history kept.
        clock: Monotonic clock.
    """

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, total: int) -> None:
        """Record the counter's current value."""
        now = self._clock()
        with self._lock:
            self._samples.append((now, total))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
                self._samples.popleft()

    def rate(self) -> float:
        """Increase per second over the window; 0 without two samples or when samples are old."""
        now = self._clock()
        with self._lock:
            if len(self._samples) < 2:
                return 0.0
            (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        if now - t1 > self._window or t1 <= t0:
            return 0.0
        return max(0, v1 - v0) / (t1 - t0)

    def reset(self) -> None:
        """Forget the history (the counter restarted)."""
        with self._lock:
            self._samples.clear()
