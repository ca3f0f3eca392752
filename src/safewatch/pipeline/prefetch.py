"""Decode ahead of inference on a background thread.

PyAV and ONNX Runtime both release the GIL while they work, so decoding the next frames while the
detector runs the current batch hides most of the decode time. The queue is bounded (principle 5:
everything bounded): for a file the producer simply waits, so no frame is dropped and a file run
stays deterministic.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Prefetcher"]

T = TypeVar("T")


class _End:
    """Marks the end of the stream in the queue."""


class _Failure:
    """Carries the producer's exception to the consumer thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Iterate ``items`` on a daemon thread, ``depth`` items ahead of the consumer.

    Exceptions raised by the producer are re-raised in the consumer at the point they occurred.
    :meth:`close` stops the producer early (e.g. on Ctrl-C) without leaking the thread.
    """

    def __init__(self, items: Iterator[T], depth: int = 8, name: str = "prefetch") -> None:
        self._items = items
        self._queue: queue.Queue[T | _End | _Failure] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: T | _End | _Failure) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(_Failure(exc))
            return
        self._put(_End())

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Ask the producer to stop and wait briefly for it."""
        self._stop.set()
        self._thread.join(timeout=2.0)
