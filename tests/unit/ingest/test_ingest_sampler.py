"""PTS-slot sampling: even, deterministic, and lossless at or above the native rate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from safewatch.ingest.sampler import FrameSampler

NATIVE = 5900 / 239  # the construction clip: 24.69 fps


def kept(fps: float, pts: list[float]) -> list[int]:
    sampler = FrameSampler(fps)
    return [i for i, t in enumerate(pts) if sampler.keep(t)]


def test_24_69_to_5_fps_keeps_about_every_fifth_frame_evenly() -> None:
    pts = [i / NATIVE for i in range(598)]
    indices = kept(5.0, pts)
    assert len(indices) == 121  # floor(24.22 s * 5) + 1
    gaps = set(np.diff(indices).tolist())
    assert gaps <= {4, 5}


@pytest.mark.parametrize("fps", [NATIVE, 25.0, 30.0, 120.0])
def test_rate_at_or_above_native_keeps_every_frame(fps: float) -> None:
    pts = [i / NATIVE for i in range(598)]
    assert kept(fps, pts) == list(range(598))


def test_millisecond_rounded_pts_at_exact_rate_keeps_all() -> None:
    # 10 fps in a 1 ms time base: 0.3 / 0.1 is 2.9999999999999996 in floating point.
    pts = [round(i * 0.1, 3) for i in range(100)]
    assert kept(10.0, pts) == list(range(100))


def test_slots_count_from_the_first_frame() -> None:
    assert kept(1.0, [100.0, 100.5, 101.0, 101.9, 102.0]) == [0, 2, 4]


def test_gap_does_not_cause_a_burst() -> None:
    assert kept(1.0, [0.0, 5.0, 5.1, 5.5, 6.0]) == [0, 1, 4]


def test_backwards_pts_reanchors() -> None:
    assert kept(1.0, [0.0, 1.0, 2.0, 0.2, 0.5, 1.2]) == [0, 1, 2, 3, 5]


def test_reset_keeps_the_next_frame() -> None:
    sampler = FrameSampler(1.0)
    assert sampler.keep(0.0)
    assert not sampler.keep(0.5)
    sampler.reset()
    assert sampler.keep(0.6)


@pytest.mark.parametrize("fps", [0.0, -1.0])
def test_rejects_non_positive_fps(fps: float) -> None:
    with pytest.raises(ValueError, match="fps must be positive"):
        FrameSampler(fps)


@given(
    native=st.floats(min_value=1.0, max_value=60.0),
    fps=st.floats(min_value=0.5, max_value=60.0),
    n=st.integers(min_value=1, max_value=500),
)
def test_kept_count_matches_duration_times_rate(native: float, fps: float, n: int) -> None:
    pts = [i / native for i in range(n)]
    count = len(kept(fps, pts))
    duration = (n - 1) / native
    expected = min(n, int(duration * min(fps, native)) + 1)
    assert abs(count - expected) <= 1
