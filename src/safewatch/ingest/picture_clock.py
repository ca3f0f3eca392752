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
Only the pictures before the first fault can be wrong (the second picture of the AVI above,
0.2 s early), which no decoder can tell without reading ahead.

A well-formed stream (MP4, MKV, RTSP) never trips the count: its PTS increase, and a camera that
restarts its clock sends PTS and DTS back together, a tie that keeps the PTS (and the caller's
handling of a restarted clock) as before.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Protocol

__all__ = ["PictureClock", "Stamped"]


class Stamped(Protocol):
    """What the clock reads of a decoded picture (:class:`av.VideoFrame` has it)."""

    @property
    def pts(self) -> int | None: ...

    @property
    def dts(self) -> int | None: ...

    @property
    def time_base(self) -> Fraction | None: ...


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
        pts, dts, base = picture.pts, picture.dts, picture.time_base
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
