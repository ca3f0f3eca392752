"""Shared-memory frame rings: round trip, laps refused, closed rings, cleanup."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.runtime.rings import RingCache
from safewatch.runtime.shm import SharedRing, SlotRef, unlink_ring


def frame(value: int) -> np.ndarray:
    data = np.full((4, 6, 3), value, np.uint8)
    data[0, 0] = (value, value + 1, value + 2)
    return data


def test_a_reader_gets_an_exact_private_copy() -> None:
    writer = SharedRing.create((4, 6, 3), slots=3)
    reader = SharedRing.attach(writer.spec)
    try:
        ref = writer.write(frame(7))
        copy = reader.read(ref)
        assert copy is not None
        assert np.array_equal(copy, frame(7))
        writer.write(frame(9))  # next slot: the copy is private and the first slot intact
        assert np.array_equal(copy, frame(7))
        assert np.array_equal(reader.read(ref), frame(7))
    finally:
        reader.close()
        writer.unlink()
        writer.close()


def test_an_overwritten_slot_is_refused_not_torn() -> None:
    writer = SharedRing.create((4, 6, 3), slots=2)
    reader = SharedRing.attach(writer.spec)
    try:
        first = writer.write(frame(1))
        writer.write(frame(2))
        lapped = writer.write(frame(3))  # same slot as the first, newer version
        assert lapped.slot == first.slot and lapped.version > first.version
        assert reader.read(first) is None
        assert np.array_equal(reader.read(lapped), frame(3))
        assert reader.read(SlotRef(writer.name, 5, 2)) is None  # no such slot
    finally:
        reader.close()
        writer.unlink()
        writer.close()


def test_wrong_shapes_and_closed_rings_are_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 slots"):
        SharedRing.create((4, 6, 3), slots=1)
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        SharedRing.create((4, 6), slots=2)  # type: ignore[arg-type]
    ring = SharedRing.create((4, 6, 3), slots=2)
    with pytest.raises(ValueError, match="does not fit"):
        ring.write(np.zeros((5, 6, 3), np.uint8))
    ring.unlink()
    ring.close()
    with pytest.raises(ValueError, match="closed"):
        ring.write(frame(1))


def test_unlink_ring_removes_a_dead_writers_ring_once() -> None:
    ring = SharedRing.create((4, 6, 3), slots=2)
    name = ring.name
    ring.close()  # the writer "died" without unlinking
    assert unlink_ring(name) is True
    assert unlink_ring(name) is False
    with pytest.raises(FileNotFoundError):
        SharedRing.attach(ring.spec)


def test_ring_cache_attaches_on_first_read_and_closes_retired_rings_later() -> None:
    now = [100.0]
    cache = RingCache(linger=5.0, clock=lambda: now[0])
    ring = SharedRing.create((4, 6, 3), slots=2)
    try:
        ref = ring.write(frame(4))
        assert cache.read(ref) is None  # not announced yet
        cache.announce(ring.spec)
        assert np.array_equal(cache.read(ref), frame(4))
        cache.retire(ring.name)
        now[0] += 4.9
        assert cache.collect() == 0
        assert np.array_equal(cache.read(ref), frame(4))  # still readable while it lingers
        now[0] += 0.2
        assert cache.collect() == 1
        assert cache.read(ref) is None
        assert cache.names() == []
    finally:
        ring.unlink()
        ring.close()


def test_ring_cache_unlinks_a_retired_ring_its_dead_writer_left() -> None:
    now = [100.0]
    cache = RingCache(linger=5.0, clock=lambda: now[0])
    ring = SharedRing.create((4, 6, 3), slots=2)
    ring.close()  # the writer died: mapping gone, name still in /dev/shm
    cache.announce(ring.spec)
    cache.retire(ring.name)
    now[0] += 5.0
    assert cache.collect() == 1
    with pytest.raises(FileNotFoundError):
        SharedRing.attach(ring.spec)
