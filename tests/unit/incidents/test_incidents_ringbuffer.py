"""Frame ring buffer: bounded in seconds and bytes, JPEG or raw, restarts on a clock jump."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.domain import Frame, TrackedFrame
from safewatch.incidents.ringbuffer import FrameRing

T0 = 1_700_000_000.0


def frame(i: int, fps: float = 5.0) -> tuple[Frame, TrackedFrame]:
    h, w = 120, 160
    image = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[:, : w // 2] = (i * 7) % 256  # a flat half: JPEG keeps it almost exactly
    at = T0 + i / fps
    return Frame("cam", i, i / fps, at, image), TrackedFrame("cam", i, i / fps, at, w, h, ())


def fill(ring: FrameRing, n: int, fps: float = 5.0) -> None:
    for i in range(n):
        ring.push(*frame(i, fps))


def test_keeps_only_the_last_seconds() -> None:
    ring = FrameRing(seconds=2.0, max_bytes=1 << 30, fmt="raw")
    fill(ring, 50)  # 10 s at 5 fps
    assert len(ring) == 11  # t-2.0 .. t, both ends included
    assert ring.span == pytest.approx(2.0)
    assert [f.seq for f in ring.since(T0 + 9.0)] == [45, 46, 47, 48, 49]


def test_byte_cap_drops_oldest_first_and_counts_it() -> None:
    one = frame(0)[0].image.nbytes
    ring = FrameRing(seconds=100.0, max_bytes=one * 4, fmt="raw")
    fill(ring, 10)
    assert len(ring) == 4
    assert ring.nbytes == 4 * one <= ring.max_bytes
    assert ring.evicted_for_bytes == 6
    assert [f.seq for f in ring.since(0)] == [6, 7, 8, 9]


def test_raw_holds_the_frame_itself_without_a_copy() -> None:
    ring = FrameRing(seconds=5.0, max_bytes=1 << 30, fmt="raw")
    f, t = frame(3)
    entry = ring.push(f, t)
    assert entry.image() is f.image
    assert entry.tracked is t and (entry.width, entry.height) == (160, 120)


def test_jpeg_is_smaller_and_decodes_close_to_the_frame() -> None:
    raw = FrameRing(seconds=5.0, max_bytes=1 << 30, fmt="raw")
    jpeg = FrameRing(seconds=5.0, max_bytes=1 << 30, fmt="jpeg")
    for i in range(5):
        raw.push(*frame(i))
        jpeg.push(*frame(i))
    assert jpeg.nbytes < raw.nbytes
    entry = jpeg.since(0)[2]
    assert isinstance(entry.payload, bytes)
    decoded = entry.image()
    original = frame(2)[0].image
    assert decoded.shape == original.shape
    assert np.abs(decoded[:, :70].astype(int) - original[:, :70]).mean() < 3


def test_clock_going_back_starts_over() -> None:
    ring = FrameRing(seconds=10.0, max_bytes=1 << 30, fmt="raw")
    fill(ring, 10)
    f, t = frame(2)
    ring.push(f, t)
    assert [e.seq for e in ring.since(0)] == [2]
    assert ring.nbytes == f.image.nbytes


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        FrameRing(seconds=0, max_bytes=10)
