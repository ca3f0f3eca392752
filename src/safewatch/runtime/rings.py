"""The server's side of the shared-memory rings: attach on first use, close once retired.

The supervisor learns of rings from its workers' messages (:meth:`RingCache.announce`,
:meth:`RingCache.retire`, from the receiving thread); the inference lanes map and read them
(:meth:`RingCache.read`, :meth:`RingCache.collect`), under the cache's lock, so two lanes never map
one ring twice and a mapping is never closed under a read (a copy takes a fraction of a ms). A
retired ring (its worker exited or moved to a new resolution) stays mapped for ``linger`` seconds,
so frames it announced just before can still be read, e.g. while a stopping server drains; then it
is closed and unlinked, so a dead worker's block leaves ``/dev/shm`` seconds after the death.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from safewatch.domain.frame import Image
from safewatch.runtime.shm import RingSpec, SharedRing, SlotRef, unlink_ring

__all__ = ["RingCache"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    spec: RingSpec
    ring: SharedRing | None = None
    retired_at: float | None = None


class RingCache:
    """Rings known to the server, by name.

    Args:
        linger: Seconds a retired ring stays readable.
        clock: Monotonic clock.
    """

    def __init__(self, linger: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._linger = linger
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def announce(self, spec: RingSpec) -> None:
        """A worker created ``spec`` (any thread)."""
        with self._lock:
            self._entries.setdefault(spec.name, _Entry(spec))

    def retire(self, name: str) -> None:
        """The ring's writer is gone or moved on (any thread); close it after ``linger``."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.retired_at is None:
                entry.retired_at = self._clock()

    def read(self, ref: SlotRef) -> Image | None:
        """A copy of the referenced frame (inference lanes), ``None`` if gone or overwritten."""
        with self._lock:
            entry = self._entries.get(ref.ring)
            if entry is None:
                return None
            if entry.ring is None:
                try:
                    entry.ring = SharedRing.attach(entry.spec)
                except FileNotFoundError:
                    log.debug("ring %s vanished before it was read", ref.ring)
                    self._entries.pop(ref.ring, None)
                    return None
            return entry.ring.read(ref)

    def collect(self) -> int:
        """Close and unlink rings retired more than ``linger`` seconds ago (inference lanes).

        Unlinking is what frees the memory of a worker that died (``kill -9``, a crash, the
        watchdog): it never got to unlink its ring, and the block would stay in ``/dev/shm``
        until the server exits. A worker that exited cleanly already unlinked its own; then this
        finds nothing. Returns how many rings were released.
        """
        now = self._clock()
        with self._lock:
            expired = [
                name
                for name, entry in self._entries.items()
                if entry.retired_at is not None and now - entry.retired_at >= self._linger
            ]
            entries = [self._entries.pop(name) for name in expired]
            for entry in entries:
                if entry.ring is not None:
                    entry.ring.close()
        for entry in entries:
            if unlink_ring(entry.spec.name):
                log.info("released shared memory %s left by a worker that died", entry.spec.name)
        return len(entries)

    def names(self) -> list[str]:
        """Names of every ring known (retired ones included)."""
        with self._lock:
            return list(self._entries)

    def close(self) -> None:
        """Close every mapping (at shutdown, from the inference thread or after it ended)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            if entry.ring is not None:
                entry.ring.close()
