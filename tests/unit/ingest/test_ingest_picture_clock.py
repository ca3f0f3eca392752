"""PictureClock: the PTS of a well-formed stream, the DTS once a container's PTS step back;
SteadyTimes: a file's times always increase."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import pytest

from safewatch.ingest.picture_clock import PictureClock, SteadyTimes

TENTH = Fraction(1, 10)


@dataclass(frozen=True)
class Picture:
    pts: int | None
    dts: int | None
    time_base: Fraction | None = TENTH


def times(clock: PictureClock, stamps: list[tuple[int | None, int | None]]) -> list[float | None]:
    return [clock.seconds(Picture(pts, dts)) for pts, dts in stamps]


def test_well_formed_b_frame_stream_keeps_its_pts() -> None:
    # MP4 with B-frames: the pictures come out in presentation order with increasing PTS, their
    # DTS (the releasing packet's) lag behind; the PTS never fail, so they are used as they are.
    stamps = [(0, -2), (1, -1), (2, 0), (3, 1), (5, 2), (6, 3)]
    assert times(PictureClock(), stamps) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.5, 0.6])


def test_avi_decode_order_pts_switch_to_the_dts() -> None:
    # PETS09's AVI, first pictures as PyAV decodes them: (pts, dts) with the PTS in decode order.
    stamps = [(1, 2), (4, 3), (3, 4), (5, 5), (2, 6), (8, 7), (7, 8), (9, 9), (6, 10), (12, 11)]
    got = times(PictureClock(), stamps)
    # The first two pictures can only be read from their PTS (nothing has failed yet); from the
    # first step back on, the DTS series counted from the first picture's DTS: exact times.
    assert got[:2] == pytest.approx([0.0, 0.3])
    assert got[2:] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_read_ahead_times_every_avi_picture_exactly() -> None:
    # Noted first, timed after: the PTS's first step back (third picture) has shown by then.
    stamps = [(1, 2), (4, 3), (3, 4), (5, 5), (2, 6), (8, 7), (7, 8), (9, 9)]
    clock = PictureClock()
    noted = [clock.note(Picture(pts, dts)) for pts, dts in stamps]
    got = [clock.time_of(n) for n in noted]
    assert got == pytest.approx([0.1 * k for k in range(8)])


def test_a_restarted_camera_clock_keeps_the_pts_that_show_it() -> None:
    # PTS and DTS jump back together: a tie, so the PTS stay in use and the caller sees the
    # step back it re-anchors on.
    got = times(PictureClock(), [(100, 99), (101, 100), (5, 4), (6, 5)])
    assert got == pytest.approx([0.0, 0.1, -9.5, -9.4])


def test_missing_stamps() -> None:
    clock = PictureClock()
    assert clock.seconds(Picture(None, None)) is None
    assert clock.seconds(Picture(10, None)) == 0.0
    assert clock.seconds(Picture(11, None)) == pytest.approx(0.1)  # no DTS: the PTS, whatever
    assert PictureClock().seconds(Picture(3, 2, time_base=None)) is None
    # Flushed at the end of an AVI: a PTS of a series caught stepping back, and no DTS.
    avi = PictureClock()
    assert times(avi, [(1, 2), (4, 3), (3, 4), (5, 5)]) == pytest.approx([0, 0.3, 0.2, 0.3])
    assert avi.seconds(Picture(9, None)) is None
    only_dts = PictureClock()
    assert [only_dts.seconds(Picture(None, d)) for d in (7, 8, 9)] == pytest.approx([0, 0.1, 0.2])


def test_steady_times_start_at_zero_and_keep_exact_stamps() -> None:
    steady = SteadyTimes(0.1)
    assert [steady.next(t) for t in (5.0, 5.1, 5.25, 5.3)] == pytest.approx([0, 0.1, 0.25, 0.3])


def test_steady_times_put_a_picture_without_stamp_one_frame_on() -> None:
    steady = SteadyTimes(0.1)
    assert [steady.next(t) for t in (0.0, None, None, 0.3)] == pytest.approx([0, 0.1, 0.2, 0.3])


def test_steady_times_put_a_repeated_stamp_one_frame_on_and_count_it() -> None:
    flat = SteadyTimes(0.1)
    assert [flat.next(0.0) for _ in range(4)] == pytest.approx([0, 0.1, 0.2, 0.3])
    assert flat.guessed == 3
    stuck = SteadyTimes(0.1)  # stuck at the start, then the clock moves: it goes on from there
    got = [stuck.next(t) for t in (0.0, 0.0, 0.0, 0.1, 0.2)]
    assert got == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert stuck.guessed == 2
    exact = SteadyTimes(0.1)
    [exact.next(t) for t in (0.0, None, 0.2)]
    assert exact.guessed == 1


def test_steady_times_put_a_picture_a_little_out_of_order_just_after() -> None:
    steady = SteadyTimes(0.1)
    got = [steady.next(t) for t in (0.0, 0.3, 0.2, 0.4)]
    assert got == pytest.approx([0, 0.3, 0.301, 0.4])


def test_steady_times_go_on_after_a_far_jump_back_with_the_segments_own_spacing() -> None:
    # Two recordings concatenated: the second starts its stamps again at 0 (far more than 16
    # frames back); its pictures follow the first's, spaced as they were (0.1 then 0.5 s).
    steady = SteadyTimes(0.1)
    got = [steady.next(t) for t in (0.0, 0.1, 0.2, 12.0, 12.1, 0.0, 0.1, 0.6)]
    assert got == pytest.approx([0, 0.1, 0.2, 12.0, 12.1, 12.2, 12.3, 12.8])
