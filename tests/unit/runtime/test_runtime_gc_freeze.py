"""The live server freezes its start-up objects, so full collections stop walking them.

``bench/runtime.py latency`` measures what that does to frame-to-incident p95
(docs/performance.md); here, what the freeze must and must not do.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from safewatch.heap import freeze_start_up_objects


class _Node:
    """A cyclic object, so only the cycle collector (not reference counting) frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    """Leave the interpreter as it was: the rest of the suite runs unfrozen."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_alive_at_start_up_leave_the_collectors_generations() -> None:
    kept = _Node()
    assert any(o is kept for o in gc.get_objects())
    freeze_start_up_objects()
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())


def test_start_up_garbage_is_collected_first_not_frozen_forever() -> None:
    lost = _Node()
    gone = weakref.ref(lost)
    del lost
    freeze_start_up_objects()
    assert gone() is None


def test_cycles_made_after_start_up_are_still_collected() -> None:
    freeze_start_up_objects()
    later = _Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None
