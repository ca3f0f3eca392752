"""How much of the time people spend in front of a camera their PPE could actually be checked.

A PPE rule fires only on a person whose item is voted *absent*; a person who stays *unknown*
(too small, hidden, turned away, never detected well enough to be tracked) raises nothing. On a
camera where most people stay unknown the rule is silent, which must not read as "everybody
complies". This module keeps, per camera and item, the person-seconds by voted state over a
sliding window (and since the camera started), so ``/readyz``, the Live page and Analytics can
show the *verifiable share*: (present + absent) / all person-seconds.

The window is kept in fixed buckets (``bucket`` seconds each), so memory is bounded by
``window / bucket`` entries per camera and item whatever the traffic, and old time drops out
without a timer. The Prometheus counter ``safewatch_camera_ppe_person_seconds`` has the same
figures as running totals for scrapers that compute their own rates.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["ItemCoverage", "PPECoverage"]


@dataclass(frozen=True, slots=True)
class ItemCoverage:
    """Person-seconds of one item on one camera: checked (present or absent) and all."""

    item: str
    window_seconds: float
    verified_seconds: float
    person_seconds: float
    total_verified_seconds: float
    total_person_seconds: float

    @property
    def share(self) -> float | None:
        """Verifiable share over the window; ``None`` when nobody was in view."""
        if self.person_seconds <= 0:
            return None
        return self.verified_seconds / self.person_seconds


@dataclass(slots=True)
class _Item:
    buckets: deque[tuple[int, float, float]] = field(default_factory=deque)
    """``(bucket index, verified seconds, person seconds)``, oldest first."""
    total_verified: float = 0.0
    total: float = 0.0


class PPECoverage:
    """Person-seconds per item of one camera, by whether the item's state was known.

    Not thread-safe: the rules stage adds and reads under its own lock; :meth:`items` returns
    immutable snapshots for readers on other threads.

    Args:
        window: Seconds the share is taken over.
        bucket: Resolution of the window in seconds.
    """

    def __init__(self, window: float = 600.0, bucket: float = 10.0) -> None:
        if window <= 0 or bucket <= 0 or bucket > window:
            raise ValueError(f"need 0 < bucket <= window, got window={window}, bucket={bucket}")
        self.window = window
        self._bucket = bucket
        self._items: dict[str, _Item] = {}

    def add(self, item: str, verified: bool, seconds: float, now: float) -> None:
        """Book ``seconds`` of one person's ``item`` at wall time ``now``."""
        if seconds <= 0 or not math.isfinite(seconds):
            return
        entry = self._items.setdefault(item, _Item())
        index = int(now // self._bucket)
        checked = seconds if verified else 0.0
        if entry.buckets and entry.buckets[-1][0] == index:
            _, v, t = entry.buckets[-1]
            entry.buckets[-1] = (index, v + checked, t + seconds)
        else:
            entry.buckets.append((index, checked, seconds))
        entry.total_verified += checked
        entry.total += seconds
        self._expire(entry, now)

    def items(self, now: float) -> list[ItemCoverage]:
        """Every item seen, sorted by name, with its window and since-start figures."""
        out: list[ItemCoverage] = []
        for name in sorted(self._items):
            entry = self._items[name]
            self._expire(entry, now)
            out.append(
                ItemCoverage(
                    item=name,
                    window_seconds=self.window,
                    verified_seconds=round(sum(b[1] for b in entry.buckets), 3),
                    person_seconds=round(sum(b[2] for b in entry.buckets), 3),
                    total_verified_seconds=round(entry.total_verified, 3),
                    total_person_seconds=round(entry.total, 3),
                )
            )
        return out

    def _expire(self, entry: _Item, now: float) -> None:
        oldest = int((now - self.window) // self._bucket) + 1
        while entry.buckets and entry.buckets[0][0] < oldest:
            entry.buckets.popleft()
