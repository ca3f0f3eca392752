"""One MP4 of a camera's recording from ``since`` to ``until``, across segments, by packet copy.

The segments are the camera's own packets (:mod:`safewatch.recording.recorder`), so an export is
too: no decoding, no re-encoding, bit-exact footage, and it costs about what copying the bytes
costs. The price of packet copy is that a video can only start on a keyframe: the export starts
at the last keyframe at or before ``since`` (up to one keyframe interval early) and ends before
the first frame in decode order at or after ``until`` (the B-frames after it in decode order,
shown just before ``until``, are decoded from it: they go with it). Timestamps come from each
segment's wall-clock start, so a camera outage inside the range stays a gap in time instead of
being glued shut, and the export's first frame is at time 0.

An export says what it holds, since it may hold less than was asked: its first frame may be
later than ``since`` (the range starts in an outage), and outages inside it are gaps. The MP4's
``creation_time`` is the wall time of its first frame and its ``comment`` reads
``safewatch start=<epoch s> gaps=<start>-<end>,...``: the spans of more than
:data:`GAP_SECONDS` no segment covers (from the segments' names), which
:class:`ExportStats` holds too.

Segments may overlap in time: the recorder anchors a segment on the wall clock, and a clock that
stepped back (an NTP correction, a VM resumed) or a camera clock running fast stamps the next
segment before the end of the previous one (:mod:`safewatch.recording.recorder`). One timeline
cannot hold both: the export keeps the footage of the segment that starts first and goes on
with a later one from its first keyframe after what was written (copied as it came, the later
footage reached the muxer out of order and the whole export failed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from safewatch.recording.segments import Segment

__all__ = ["GAP_SECONDS", "ExportStats", "export_range", "format_gaps"]

_OUT_BASE = Fraction(1, 90_000)

_NAMED = 0.002
"""Seconds two segments' times may differ by and still meet: names carry milliseconds."""

GAP_SECONDS = 2.0
"""An export's gap: longer than this without footage (a reconnection: the 2 s wait, opening the
camera and its next keyframe). Segments of one connection meet to the millisecond."""


@dataclass(frozen=True, slots=True)
class ExportStats:
    """What an export holds.

    Attributes:
        start: Wall-clock seconds of its first frame (a keyframe at or before ``since``).
        end: Wall-clock seconds just after its last frame.
        packets: Frames copied.
        segments: Segments read.
        gaps: ``(start, end)`` wall-clock spans inside it longer than :data:`GAP_SECONDS`
            without footage (outages), oldest first.
    """

    start: float
    end: float
    packets: int
    segments: int
    gaps: tuple[tuple[float, float], ...] = ()


def format_gaps(gaps: Sequence[tuple[float, float]], limit: int | None = None) -> str:
    """``<start>-<end>,...`` in epoch seconds to the millisecond (``""``: none).

    Args:
        gaps: The spans, oldest first.
        limit: List at most this many, then ``,...(+N more)`` for the N left out (``None``: all,
            as the MP4 ``comment`` tag does: an MP4 atom holds 4 GB, and the 7,200 gaps a 4 h
            export can have at most are ~220 KB, which PyAV writes and reads back whole).
    """
    shown = gaps if limit is None else gaps[:limit]
    listed = ",".join(f"{start:.3f}-{end:.3f}" for start, end in shown)
    if len(gaps) > len(shown):
        listed += f",...(+{len(gaps) - len(shown)} more)"
    return listed


def _gaps(
    ordered: Sequence[Segment], start: float, until: float
) -> tuple[tuple[float, float], ...]:
    """The spans of more than :data:`GAP_SECONDS` between ``start`` and ``until`` that none of
    ``ordered`` (oldest first) covers, from their names."""
    gaps = []
    reach = start
    for segment in ordered:
        if segment.start >= until:
            break
        if segment.start - reach > GAP_SECONDS:
            gaps.append((reach, segment.start))
        reach = max(reach, segment.end)
    return tuple(gaps)


def _packets(segment: Segment) -> Iterator[tuple[Any, Fraction, float, float]]:
    """``(packet, time base, wall of its frame, wall of its decoding)`` of one segment, in decode
    order; the segment's name gives the wall time of its first packet. A packet flagged corrupt
    (the end of a file a crash or a full disk cut short mid-frame) is left out: copied, it was
    a frame the export could not decode, and players stopped there."""
    with av.open(str(segment.path)) as container:
        stream = container.streams.video[0]
        base = Fraction(stream.time_base or _OUT_BASE)
        first: int | None = None
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None or packet.dts is None or packet.is_corrupt:
                continue
            if first is None:
                first = packet.pts
            yield (
                packet,
                base,
                segment.start + float((packet.pts - first) * base),
                segment.start + float((packet.dts - first) * base),
            )


def export_range(
    segments: Sequence[Segment], since: float, until: float, target: Path
) -> ExportStats:
    """Write ``segments``' footage of ``[since, until]`` to ``target`` as one MP4.

    Args:
        segments: The camera's segments overlapping the range, oldest first.
        since: Wall-clock start.
        until: Wall-clock end (after ``since``).
        target: The MP4 to write (replaced).

    Raises:
        ValueError: An empty range, or no frame of the segments in it.
    """
    if not until > since:
        raise ValueError(f"the range must end after it starts ({since} .. {until})")
    ordered = sorted(segments, key=lambda s: s.start)
    gop: list[tuple[Any, float, float, Fraction]] = []  # packets of the GOP holding `since`
    output: Any = None
    out_stream: Any = None
    origin = 0.0
    last_dts = -1
    copied = 0
    used = 0
    first_wall = last_wall = 0.0
    finished = False
    gaps: tuple[tuple[float, float], ...] = ()
    try:
        for segment in ordered:
            used += 1
            # overlapping what was written (see the module docstring): from its next keyframe on
            resume = last_wall - _NAMED if output is not None else None
            if resume is not None and segment.start >= resume:
                resume = None
            for packet, base, wall, dts_wall in _packets(segment):
                if resume is not None:
                    if not (packet.is_keyframe and wall >= resume):
                        continue
                    resume = None
                if output is None:
                    if packet.is_keyframe and wall <= since:
                        gop = []  # a later keyframe still before `since`: start there
                    if packet.is_keyframe or gop:
                        gop.append((packet, wall, dts_wall, base))
                    if wall < since or not gop:
                        continue
                    # the first frame at or after `since`: open and write the GOP so far
                    origin = gop[0][1]
                    first_wall = origin
                    gaps = _gaps(ordered, origin, until)
                    output = av.open(str(target), "w", format="mp4")
                    output.metadata["creation_time"] = _iso(origin)
                    output.metadata["comment"] = (
                        f"safewatch start={origin:.3f} gaps={format_gaps(gaps)}"
                    )
                    out_stream = output.add_stream_from_template(packet.stream)
                    pending = gop
                    gop = []
                else:
                    if wall >= until:
                        # The end, for every later packet too: the B-frames that follow in
                        # decode order (shown before `until`) reference this frame, and copied
                        # without it they decoded as garbage.
                        finished = True
                        break
                    pending = [(packet, wall, dts_wall, base)]
                for item, at, decode_at, item_base in pending:
                    pts = round((at - origin) / _OUT_BASE)
                    dts = round((decode_at - origin) / _OUT_BASE)
                    dts = max(dts, last_dts + 1)  # strictly increasing across segment joins
                    step = float((item.duration or 0) * item_base)
                    item.pts, item.dts = max(pts, dts), dts
                    item.duration = round(step / _OUT_BASE)
                    item.time_base = _OUT_BASE
                    item.stream = out_stream
                    output.mux(item)
                    last_dts = dts
                    copied += 1
                    last_wall = max(last_wall, at + step)
            if finished or (segment.end >= until and output is not None):
                break
    finally:
        if output is not None:
            output.close()
    if output is None or copied == 0:
        with contextlib.suppress(OSError):
            target.unlink()
        raise ValueError(f"no recorded frame between {since} and {until}")
    return ExportStats(first_wall, max(last_wall, first_wall), copied, used, gaps)


def _iso(at: float) -> str:
    """``at`` as the ISO 8601 UTC time FFmpeg reads in a ``creation_time`` tag."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
