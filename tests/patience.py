"""Waiting in tests: :func:`poll`, the one polling loop every test helper calls, and how long a
test waits for something to *happen* (a server ready, a camera streaming), scaled by how busy
the machine is (:func:`stretch`).

These waits are liveness bounds, not measurements: a server that becomes ready after 70 s on a
host running twenty runnable processes on two cores is not broken, and failing the test then
only says the machine was busy (CI run a1 of 2026-12-06: four serve tests timed out at start-up
at load 15-20). So a wait is stretched by the run-queue length per core, up to 4x; a quiet
machine waits exactly what the test asked. Checks that *are* the claim (a failover within 15 s,
a drain gap within 2 s) must not use this: they keep their bound whatever the load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["MAX_STRETCH", "poll", "stretch"]

T = TypeVar("T")

MAX_STRETCH = 4.0


def stretch(seconds: float) -> float:
    """``seconds`` scaled by the load: 1x up to one runnable process per core, then the
    one-minute load average per core, capped at :data:`MAX_STRETCH`."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return seconds
    per_core = load / (os.cpu_count() or 1)
    return seconds * min(MAX_STRETCH, max(1.0, per_core))


def poll(
    condition: Callable[[], T],
    timeout: float,
    what: str = "the condition",
    period: float = 0.05,
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` every ``period`` seconds until it returns something truthy, and return
    that; ``AssertionError`` naming ``what`` and the last value seen after ``timeout`` seconds.

    The condition is tried once more after the deadline, so a slow last call that succeeds is
    not reported as a timeout. Exceptions in ``errors`` (a server not up yet) count as "not
    yet" and are shown as the last value.
    """
    deadline = time.monotonic() + timeout
    seen: object = None
    while True:
        late = time.monotonic() >= deadline
        try:
            value = condition()
        except errors as error:
            seen = error
        else:
            if value:
                return value
            seen = value
        if late:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what} (last: {seen!r})"
            )
        time.sleep(period)
