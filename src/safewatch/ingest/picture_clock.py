"""The presentation time of each decoded picture, even where a container's PTS are wrong.

Some containers carry no presentation times of their own: AVI stores one frame after another in
decode order, and FFmpeg's demuxer then stamps each packet with a PTS counted in that order. With
B-frames the decoder hands the pictures back in presentation order, still carrying those
decode-order stamps, so ``picture.time`` steps back and forth (PETS 2009 S2.L1's AVI: back 374
times in 795 pictures, 44 in the first 100). Everything downstream reads time from it: the
sampler restarts its slots at every step back (a 5 fps camera kept 787 of 795 pictures of a
10 fps file instead of about 398), and the tracker and rules see time run backwards.

FFmpeg's own answer is its *best-effort timestamp* (``guess_correct_pts`` in libavcodec), which
PyAV does not expose: count how often the PTS and the DTS each fail to increase, and use the PTS
unless it has failed more often than the DTS. :class:`PictureClock` does the same. A picture's
DTS is the decode stamp of the packet that released it, so it increases with presentation order
even in such a file. Each series is counted from the first picture's own value of it, so the
switch from one to the other does not shift the clock: after the switch the times are exact.
Read one by one, the pictures before the first fault can be wrong (the second picture of the
AVI above would be read at 0.3 s, not 0.1 s), so a file is read :data:`HOLD_PICTURES` pictures
ahead at its start (:meth:`PictureClock.note`, then :meth:`PictureClock.time_of`): by then the
fault has shown, and every picture of the AVI above gets its exact time. A live stream is not
held back (latency); it only ever sees such a file from a test or a demo.

:class:`SteadyTimes` makes a file's times always increase: a picture with no usable stamp, or
with the same stamp as the picture before it, goes one native frame after the previous one; one
still out of order a millisecond after it; and a file whose stamps jump far back (concatenated
recordings) goes on one frame after the previous picture with its own spacing. A repeated stamp
carries no time at all: a file whose every picture is stamped 0 (a broken muxer, or FFmpeg's
``setpts=0``) was read as 200 pictures a millisecond apart, and a 5 fps camera analysed one of
them. It is now played at its frame rate, and :attr:`SteadyTimes.guessed` counts such pictures
so the audit can say its times are the frame rate's, not the file's.

A well-formed stream (MP4, MKV, RTSP) never trips the count: its PTS increase, and a camera that
restarts its clock sends PTS and DTS back together, a tie that keeps the PTS (and the caller's
handling of a restarted clock) as before.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple, Protocol

__all__ = ["HOLD_PICTURES", "PictureClock", "Stamped", "Stamps", "SteadyTimes"]


class Stamped(Protocol):
    """What the clock reads of a decoded picture (:class:`av.VideoFrame` has it)."""

    @property
    def pts(self) -> int | None: ...

    @property
    def dts(self) -> int | None: ...

    @property
    def time_base(self) -> Fraction | None: ...


class Stamps(NamedTuple):
    """A decoded picture's stamps, as the clock noted them."""

    pts: int | None
    dts: int | None
    time_base: Fraction | None


class PictureClock:
    """Presentation times of one stream's decoded pictures, in seconds from its first picture.

    One clock per decoding pass (a new connection or a re-opened file gets a new one): the
    counts of failed stamps describe one stream.
    """

    def __init__(self) -> None:
        self._faulty_pts = 0
        self._faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._first_pts: int | None = None
        self._first_dts: int | None = None

    def seconds(self, picture: Stamped) -> float | None:
        """The picture's time in seconds since the first picture; ``None`` without a usable stamp.

        Args:
            picture: The next decoded picture of the stream, in the order the decoder gave it.
        """
        return self.time_of(self.note(picture))

    def note(self, picture: Stamped) -> Stamps:
        """Count the picture's stamps into the clock's judgement; its stamps for :meth:`time_of`.

        Args:
            picture: The next decoded picture of the stream, in the order the decoder gave it.
        """
        pts, dts = picture.pts, picture.dts
        if dts is not None:
            if self._last_dts is not None and dts <= self._last_dts:
                self._faulty_dts += 1
            self._last_dts = dts
            if self._first_dts is None:
                self._first_dts = dts
        if pts is not None:
            if self._last_pts is not None and pts <= self._last_pts:
                self._faulty_pts += 1
            self._last_pts = pts
            if self._first_pts is None:
                self._first_pts = pts
        return Stamps(pts, dts, picture.time_base)

    def time_of(self, stamps: Stamps) -> float | None:
        """A noted picture's time by the clock's judgement *now* (pictures noted ahead of it
        may have shown the PTS to be wrong); ``None`` without a usable stamp."""
        pts, dts, base = stamps
        if base is None:
            return None
        trust_pts = self._faulty_pts <= self._faulty_dts or self._first_dts is None
        if pts is not None and self._first_pts is not None and trust_pts:
            return float((pts - self._first_pts) * base)
        if dts is not None and self._first_dts is not None:
            return float((dts - self._first_dts) * base)
        # No stamp, or only a PTS of a series already caught stepping back (the pictures a
        # decoder flushes at the end carry no DTS): the caller puts it one frame on.
        return None


HOLD_PICTURES = 8
"""Pictures a file is read ahead at its start before their times are given: more than the
reorder of any common encoder's B-frames (x264's default pyramid reorders 4), where a container's
decode-order PTS show their first step back; 8 decoded 1080p pictures are about 25 MB."""

_MOVES_ON = 1e-3
"""Seconds a picture must come after the previous one to keep its own time (a millisecond: the
evidence clips' resolution, and far below any camera's frame interval)."""

_REORDER_FRAMES = 16
"""H.264's largest reorder depth: a step back within this many frames is a picture read out of
order, not a new segment."""


class SteadyTimes:
    """A file's picture times, from :meth:`PictureClock.seconds`, made to always increase.

    Args:
        step: One native frame interval in seconds (a guess where the file gives no rate).
    """

    def __init__(self, step: float) -> None:
        self._step = step
        self._far = max(1.0, _REORDER_FRAMES * step)
        self._shift = 0.0
        self._last: float | None = None
        self._last_seconds: float | None = None
        self.guessed = 0
        """Pictures after the first timed one native frame on: no usable stamp, or a repeat."""

    def next(self, seconds: float | None) -> float:
        """The next picture's time in seconds from the first picture (which is at 0.0).

        Args:
            seconds: Its clock time, ``None`` where it has no usable stamp.
        """
        last = self._last
        repeated = seconds is not None and seconds == self._last_seconds
        if seconds is not None:
            self._last_seconds = seconds
        if last is None:
            now = 0.0
            self._shift = -seconds if seconds is not None else 0.0
        elif seconds is None or repeated:
            now = last + self._step  # no stamp, or the same as before: one frame on
            self.guessed += 1
            if seconds is not None:
                self._shift = now - seconds  # the file's clock goes on from here
        else:
            now = seconds + self._shift
            if now < last - self._far:  # a new segment: one frame on, with its own spacing
                self._shift += last + self._step - now
                now = last + self._step
            elif now < last + _MOVES_ON:  # read out of order: just after the previous one
                now = last + _MOVES_ON
        self._last = now
        return now
