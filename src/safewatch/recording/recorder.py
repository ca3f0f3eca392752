"""Continuous recording of a camera's own stream: packets copied (PyAV remux, no decoding, no
re-encoding) into fragmented MP4 segments named by their wall-clock span
(:mod:`safewatch.recording.segments`).

Why remux: decoding and re-encoding a 1080p stream costs a core; copying its packets costs
almost nothing (the shared 24 s construction clip remuxes in about 10 ms of CPU), and the footage
is bit-exact what the camera sent, which is what evidence should be. The price is that a segment
can only start on a keyframe: :class:`SegmentWriter` cuts at the first keyframe after
``segment_seconds``, so segments are as long as the camera's keyframe interval at least.

Why fragmented MP4 (``frag_keyframe+empty_moov+default_base_moof``): a file cut short (camera
outage, crash, power loss) is playable up to its last fragment, so an outage loses at most the
fragment in flight, never a segment; and the same fragments suit Media Source Extensions.

Wall time comes from the stream's clock: the first keyframe written (a connection's first
segment starts there) is stamped with ``clock()`` when it arrives, later packets by their
presentation time from there, so a segment's span is video time, not the time the packets
happened to arrive. Stamps that run ahead of the wall clock by more than
:data:`~safewatch.ingest.live_source.AHEAD_LIMIT` (the analysis's limit: an encoder restart with
new RTP timestamps, a clock jump) would name segments hours long with seconds of video and the
next ones in the future: the segment is cut there and the times are anchored again on the wall
clock at the next keyframe, as at a reconnection. That anchor may be earlier than the end of the
footage already written (the wall clock stepped back, a camera clock running fast): the next
segment then overlaps the previous ones in time, which listing, playback and export allow
(:func:`~safewatch.recording.export.export_range` keeps the earlier-starting footage of an
overlap), rather than keeping the stamps ahead and cutting again at every packet. The wall
clock stepping forward by more than that limit between two packets (a box without a real-time
clock syncing NTP days after boot) left the stamps that far behind for good, and age-based
retention deleted each segment as it closed: the next keyframe then starts a segment anchored on
the clock again, with nothing dropped (the stream itself went on).

Decoding timestamps must increase for the MP4 muxer, which refuses anything else (EINVAL, once
taken for the camera going down: a wait, a reconnect, seconds of footage lost). A DTS that repeats
or goes back by up to one frame (a camera's glitch) is moved to just after the previous one; one
that goes back further (an encoder restart with lower RTP timestamps) cuts the segment and
anchors the times again at the next keyframe, as stamps running ahead do.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av

from safewatch.ingest.backoff import STABLE_SECONDS, Backoff
from safewatch.ingest.live_source import AHEAD_LIMIT
from safewatch.recording.segments import (
    PART_SUFFIX,
    Segment,
    part_path,
    read_segment,
    segment_path,
)

__all__ = ["RecordStats", "SegmentWriter", "close_orphans", "record"]

log = logging.getLogger(__name__)

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
"""Fragment at every keyframe; the header first, so a truncated file still plays."""

_CUT_SHORT = 0.1
"""Seconds a segment read back may end before the footage given to it and still be whole: the
file's last frame duration is the muxer's, not always the camera's."""


class _Packet(Protocol):
    pts: int | None
    dts: int | None
    duration: int | None
    size: int
    is_keyframe: bool
    stream: Any


@dataclass
class RecordStats:
    """What a recording run did.

    Attributes:
        segments: Segments closed.
        packets: Packets written.
        skipped: Packets dropped before the first keyframe of a connection (not playable alone)
            or without timestamps.
        connections: Times the input was opened.
        failures: Connections that ended with an error (outages), or with a segment that
            lost footage in writing (a full disk).
        writing: Whether the recorder is connected and writing packets now (read while it
            runs: ``safewatch_recording_up``).
        error: Why the latest connection ended or could not start, ``""`` if none did.
    """

    segments: int = 0
    packets: int = 0
    skipped: int = 0
    connections: int = 0
    failures: int = 0
    writing: bool = False
    error: str = ""


_WRITING: set[Path] = set()
"""The ``.part`` files this process is writing now: never anyone's orphans (:func:`close_orphans`).

Process-wide on purpose: what a process has open is a fact about the process. Under ``serve
--cluster`` the quiet test of :func:`close_orphans` compares a file's modification time, set by
the NFS server's clock, with this host's clock; a host running more than the quiet period ahead
of the server took its own open segment for a dead owner's and renamed it mid-write."""
_WRITING_LOCK = threading.Lock()


class SegmentWriter:
    """Remux the packets of one video stream into segments of at least ``segment_seconds``.

    Args:
        root: Recording folder.
        camera_id: The camera.
        template: The input video stream (its codec parameters are copied, not its frames).
        segment_seconds: Shortest segment; the cut happens at the next keyframe.
        clock: Wall clock: read when the first keyframe is written (the times' anchor) and at
            every packet (stamps running ahead of it by more than ``AHEAD_LIMIT`` cut the
            segment and anchor the times again at the next keyframe; it stepping forward by
            more than that between two packets re-anchors at the next keyframe).
        on_close: Called with every segment closed and named, whatever closed it. A cut returns
            the segment it closed, but when opening the next one then raised (a full disk),
            the closed one was never returned, so never counted nor passed to ``on_segment``.
    """

    def __init__(
        self,
        root: Path,
        camera_id: str,
        template: Any,
        *,
        segment_seconds: float,
        clock: Callable[[], float] = time.time,
        on_close: Callable[[Segment], None] | None = None,
    ) -> None:
        if not segment_seconds > 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        self._root = root
        self._camera = camera_id
        self._template = template
        self._base = Fraction(template.time_base or Fraction(1, 90_000))
        self._segment_seconds = segment_seconds
        self._clock = clock
        self._on_close = on_close
        self._wall_at_first = 0.0
        self._first_pts: int | None = None
        self._seen: tuple[int, float] | None = None  # the previous packet's DTS and arrival
        self._reanchor = False  # at the next keyframe: the wall clock stepped forward
        self._output: Any = None
        self._stream: Any = None
        self._path: Path | None = None
        self._start = 0.0
        self._end = 0.0
        self._offset = 0
        self._last_dts = 0  # of the packet muxed last, as received
        self._muxed = 0  # packets in the open segment
        self._bytes = 0  # their payload
        self.packets = 0
        self.skipped = 0
        self.error = ""
        """Why the segment closed last lost footage in writing, until :meth:`write` raises it
        (``""``: none did)."""

    def _wall(self, pts: int) -> float:
        assert self._first_pts is not None
        return self._wall_at_first + float((pts - self._first_pts) * self._base)

    def write(self, packet: _Packet) -> Segment | None:
        """Add one packet; returns the segment this closed, if it closed one."""
        if packet.pts is None or packet.dts is None:
            self.skipped += 1
            return None
        closed = None
        now = self._clock()
        if self._seen is not None and self._first_pts is not None:
            # The wall clock stepped forward (an RTC-less box syncing NTP days after boot): the
            # stamps, never ahead, were left behind for good, every later segment was named
            # that far in the past and age-based retention deleted it as soon as it closed. The
            # stream goes on, so nothing is cut now: the next keyframe starts a segment anchored
            # on the clock again (the analysis measures the same step the other way round).
            # (Stamps going back are the decoding-timestamp check's below.)
            seen_dts, seen_at = self._seen
            behind = (now - seen_at) - float((packet.dts - seen_dts) * self._base)
            if behind > AHEAD_LIMIT and packet.dts >= seen_dts:
                log.warning(
                    "recording %s: wall clock stepped %.0f s forward; new segment at the next "
                    "keyframe",
                    self._camera,
                    behind,
                )
                self._reanchor = True
        self._seen = (packet.dts, now)
        ahead = 0.0 if self._first_pts is None else self._wall(packet.pts) - now
        if ahead > AHEAD_LIMIT:
            log.warning(
                "recording %s: stream clock ran %.0f s ahead; new segment", self._camera, ahead
            )
            closed = self.close()
            self._first_pts = None  # anchored again at the next keyframe
        if self._output is not None and packet.dts <= self._last_dts:
            # The MP4 muxer refuses a DTS that does not increase (EINVAL), which ended the
            # connection like an outage: a 2 s wait, a reconnect and a keyframe lost seconds of
            # footage. A repeated or one-frame-back DTS (a camera's glitch) is moved to just
            # after the last one, as ffmpeg does; a longer step back (an encoder restart with
            # lower RTP timestamps) cuts the segment and anchors again at the next keyframe.
            back = self._last_dts - packet.dts
            if back <= max(packet.duration or 0, 1):
                packet.dts = self._last_dts + 1
                packet.pts = max(packet.pts, packet.dts)
            else:
                log.warning(
                    "recording %s: stream clock went %.1f s back; new segment",
                    self._camera,
                    float(back * self._base),
                )
                closed = self.close()
                self._first_pts = None
        if self._output is None and not packet.is_keyframe:
            self.skipped += 1  # a segment must start on a keyframe to be playable alone
            return closed
        if self._reanchor and packet.is_keyframe:
            closed = self.close() or closed
            self._first_pts = None
        if self._first_pts is None:
            # Anchored when the keyframe that opens the footage arrives (not the connection's
            # first packet, a GOP earlier at worst), on the clock even when that is before the
            # end of the footage already written: anchored at that end instead, stamps still
            # ahead (the wall clock stepped back, a camera clock running fast) cut again at the
            # next packet, and every GOP but its keyframe was dropped until the clock caught up
            # (a 300 s step back lost 240 s of footage). The segments may then overlap in time.
            self._first_pts = packet.pts
            self._wall_at_first = now
            self._reanchor = False
        at = self._wall(packet.pts)
        if (
            self._output is not None
            and packet.is_keyframe
            and at - self._start >= self._segment_seconds
        ):
            closed = self.close()
        if self.error:  # the segment just closed was cut short: not one more into the void
            error, self.error = self.error, ""
            raise OSError(errno.EIO, error)
        if self._output is None:
            self._open(at, packet.dts)
        self._last_dts = packet.dts
        packet.pts -= self._offset
        packet.dts -= self._offset
        packet.stream = self._stream
        self._output.mux(packet)
        self._muxed += 1
        self._bytes += packet.size
        step = float((packet.duration or 0) * self._base)
        self._end = max(self._end, at + step)
        self.packets += 1
        return closed

    def _open(self, at: float, dts: int) -> None:
        self._start = at
        self._end = at
        self._offset = dts  # every segment's timestamps start at 0
        self._muxed = self._bytes = 0
        self._path = part_path(self._root, self._camera, at)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with _WRITING_LOCK:
            _WRITING.add(self._path.resolve())
        try:
            self._output = av.open(
                str(self._path), "w", format="mp4", options={"movflags": MOVFLAGS}
            )
        except BaseException:
            _done_writing(self._path)
            self._path = None
            raise
        self._stream = self._output.add_stream_from_template(self._template)

    def close(self) -> Segment | None:
        """Finish the open segment (if any) and give it its final name.

        Never raises for the file system: it runs when a connection ends, whatever ended it,
        and an error here used to end the recorder's thread for good (a read-only remount, a
        stale NFS handle). A segment that cannot be renamed stays a ``.part`` file for
        :func:`close_orphans`; one that holds no frame is removed (a full disk leaves a header
        and nothing else, once per reconnection, which would be listed for playback).

        PyAV's ``mux()`` and ``close()`` swallow most write errors after the header (ENOSPC,
        EFBIG): the segment was named with all it had been given and the recorder reported
        itself up while writing into nothing. A file smaller than the packets given to it (or
        whose closing failed) is read back: named with the end of its last readable frame, and
        if that falls short of what was given, logged as an error and kept in :attr:`error`
        (:meth:`write` raises it, :func:`record` counts it as a failed connection).
        """
        if self._output is None or self._path is None:
            return None
        output, path = self._output, self._path
        self._output = self._stream = self._path = None
        given = max(self._end, self._start + 0.001)
        end: float | None = given
        short = False
        try:
            output.close()
        except (av.error.FFmpegError, OSError) as error:  # the fragments written stay playable
            log.warning("recording %s: closing %s: %s", self._camera, path.name, error)
            short = True
        if not short and self._muxed:
            with contextlib.suppress(OSError):  # gone: see FileNotFoundError below
                short = path.stat().st_size < self._bytes
        if short and self._muxed:
            try:
                end = _footage_end(path, self._start)  # what reached the disk: its real end
            except OSError as error:
                log.warning("recording %s: cannot read %s back: %s", self._camera, path.name, error)
                end = None
            kept = 0.0 if end is None else end - self._start
            if kept < given - self._start - _CUT_SHORT:
                self.error = (
                    f"writing {path.name} failed: {kept:.1f} s of "
                    f"{given - self._start:.1f} s of footage reached the disk"
                )
                log.error("recording %s: %s", self._camera, self.error)
        try:
            if not self._muxed:  # its first write failed (a full disk): a header at most
                # Debug only: the write error that left it empty is record()'s to report, once
                # for a disk that stays full (this was a warning at every reconnect).
                log.debug("recording %s: %s holds no frame; removed", self._camera, path.name)
                path.unlink(missing_ok=True)
                return None
            if end is None:  # nothing readable now: named once the storage answers again
                log.warning(
                    "recording %s: no readable frame in %s; left for close_orphans",
                    self._camera,
                    path.name,
                )
                return None
            target = segment_path(self._root, self._camera, self._start, end)
            path.replace(target)
        except FileNotFoundError:
            # Under serve --cluster, a camera's next owner names the segments of an owner that
            # stopped writing (close_orphans with quiet_seconds): this process was frozen past
            # its lease. The footage is in the file it named; nothing is lost.
            log.warning(
                "recording %s: %s was closed by the camera's next owner", self._camera, path.name
            )
            return None
        except OSError as error:
            log.warning(
                "recording %s: %s left as .part for close_orphans: %s",
                self._camera,
                path.name,
                error,
            )
            return None
        finally:
            _done_writing(path)  # no longer written: close_orphans may name it now
        segment = _named(self._camera, target)
        if self._on_close is not None:
            self._on_close(segment)
        return segment


def _done_writing(path: Path) -> None:
    with _WRITING_LOCK:
        _WRITING.discard(path.resolve())


def record(
    open_input: Callable[[], Any],
    root: Path,
    camera_id: str,
    *,
    stop: threading.Event,
    segment_seconds: float = 60.0,
    clock: Callable[[], float] = time.time,
    backoff: Backoff | None = None,
    reconnect: bool = True,
    on_segment: Callable[[Segment], None] | None = None,
    stats: RecordStats | None = None,
) -> RecordStats:
    """Record until ``stop`` is set: open the input, remux, and reopen after an outage.

    Args:
        open_input: Opens the camera (``av.open`` with the options of
            :func:`~safewatch.ingest.av_options.build_open_spec`), or a test double with
            ``streams.video``, ``demux`` and ``close``.
        root: Recording folder.
        camera_id: The camera.
        stop: Set to finish the open segment and return.
        segment_seconds: Shortest segment.
        clock: Wall clock (anchors each connection's times at its first keyframe).
        backoff: Waits before reopening after an error or the end of the stream; default
            0.5 s doubling to 30 s with jitter (the analysis side's delays, so a camera that
            is down is not reopened, nor logged, every 2 s for as long as it is down), started
            over once a connection has lasted :data:`~safewatch.ingest.backoff.STABLE_SECONDS`.
        reconnect: ``False`` to return at the end of the input (files, tests).
        on_segment: Called with every closed segment (retention, an index).
        stats: Filled as the run goes, for a caller that reports its state while it runs;
            a new one by default.

    Returns:
        What the run did (``stats`` when given).
    """
    stats = RecordStats() if stats is None else stats

    def closed(segment: Segment) -> None:
        stats.segments += 1
        if on_segment is not None:
            on_segment(segment)

    backoff = Backoff() if backoff is None else backoff
    down = 0  # connections in a row that failed: only the first is a warning
    cause = ""  # what the last of them failed on
    while not stop.is_set():
        stats.connections += 1
        writer: SegmentWriter | None = None
        container: Any = None
        failed = False
        writing = False  # in the writer's hands now: an error is the recording's, not the input's
        opened = time.monotonic()
        try:
            container = open_input()
            stream = container.streams.video[0]
            for packet in _packets(container, stream, stop):
                if writer is None:
                    writer = SegmentWriter(
                        root,
                        camera_id,
                        stream,
                        segment_seconds=segment_seconds,
                        clock=clock,
                        on_close=closed,
                    )
                writing = True
                writer.write(packet)
                writing = False
                stats.writing = writer.packets > 0
                if down and writer.packets:
                    # Back only once a packet was written: on a full disk every reconnect
                    # reads a packet from a camera that is fine and fails to write it, and
                    # "input back" then "input lost" were logged at each one (2,880 a day).
                    log.info("recording %s: recording again after %d failures", camera_id, down)
                    down, cause = 0, ""
        except (av.error.FFmpegError, OSError) as error:
            stats.failures += 1
            failed = True
            down += 1
            # A write error (ENOSPC, EIO, a segment cut short) is the recording folder's, not
            # the camera's: named so, and not taken for an outage by whoever reads the log.
            now = "cannot write the recording (folder full?)" if writing else "input lost"
            stats.error = f"{now}: {error}" if writing else str(error)
            # A camera that stays down, or a disk that stays full, fails every attempt: the
            # first says so (and a change of cause), the repeats (the state is in the
            # recorder's status meanwhile) would fill the log.
            log.log(
                logging.WARNING if down == 1 or now != cause else logging.DEBUG,
                "recording %s: %s: %s",
                camera_id,
                now,
                error,
            )
            cause = now
        finally:
            stats.writing = False
            if writer is not None:
                writer.close()
                stats.packets += writer.packets
                stats.skipped += writer.skipped
                if writer.error and not failed:  # the last segment lost footage in writing
                    stats.failures += 1
                    stats.error = writer.error
            if container is not None:
                with contextlib.suppress(av.error.FFmpegError, OSError):
                    container.close()
        if not reconnect:
            break
        if time.monotonic() - opened >= STABLE_SECONDS:
            # Only a connection that lasted starts the delays over: one that accepts, sends a
            # packet and drops is reopened later each time, not every 0.5 s.
            backoff.reset()
        stop.wait(backoff.next_delay())
    return stats


def _packets(container: Any, stream: Any, stop: threading.Event) -> Iterable[Any]:
    for packet in container.demux(stream):
        if stop.is_set():
            return
        if packet.size == 0:  # the demuxer's end-of-stream flush packet
            continue
        yield packet


def close_orphans(
    root: Path,
    camera_id: str,
    *,
    quiet_seconds: float | None = None,
    clock: Callable[[], float] = time.time,
) -> list[Segment]:
    """Name the ``.part`` segments a crash left behind, from the footage they hold.

    Their start is in their name; their end is the last readable packet. A file with no
    readable packet is removed (nothing was recorded in it).

    Args:
        root: Recording folder.
        camera_id: The camera.
        quiet_seconds: Only files nobody wrote to for this long (by their modification time).
            ``None`` takes every ``.part`` (one host: at start no recorder of the camera runs);
            under ``serve --cluster`` the folder is shared, and a ``.part`` still written to is
            another node's open segment (its owner is handing the camera over), not an orphan.
        clock: Wall clock (the same one as the file system's times).
    """
    closed: list[Segment] = []
    folder = root / camera_id
    if not folder.is_dir():
        return closed
    with _WRITING_LOCK:
        writing = set(_WRITING)
    for path in sorted(folder.glob(f"*/*{PART_SUFFIX}")):
        if path.resolve() in writing:
            continue  # this process's own open segment, whatever the clocks say
        if quiet_seconds is not None:
            try:
                if path.stat().st_mtime > clock() - quiet_seconds:
                    continue
            except FileNotFoundError:  # closed by its writer meanwhile
                continue
        start = int(path.name[: -len(PART_SUFFIX)]) / 1000
        try:
            end = _footage_end(path, start)
        except FileNotFoundError:  # its writer (or another node) closed it meanwhile
            continue
        except OSError as error:  # unreadable now (a flaky mount): kept, tried next round
            log.warning("recording %s: cannot read %s: %s; kept", camera_id, path.name, error)
            continue
        if end is None:
            path.unlink(missing_ok=True)
            continue
        target = segment_path(root, camera_id, start, end)
        try:
            path.replace(target)
        except FileNotFoundError:  # its writer (or another node) closed it meanwhile
            continue
        closed.append(_named(camera_id, target))
    return closed


def _named(camera_id: str, path: Path) -> Segment:
    segment = read_segment(camera_id, path)
    if segment is None:  # pragma: no cover - segment_path always makes a readable name
        raise ValueError(f"not a segment name: {path.name}")
    return segment


def _footage_end(path: Path, start: float) -> float | None:
    """Wall time just after the last whole frame of the segment starting at ``start``.

    ``start`` is the time of the segment's first packet, as :class:`SegmentWriter` names it and
    export reads it: times count from that packet's stamp, not from 0 (its stamp is the
    decoding delay of B-frames, 81 ms on the shared clip, and a crash's segment was named that
    much longer than its writer would have named it). A packet the demuxer flags corrupt is
    not footage: it is the one a crash or a full disk cut short (the file ends inside it), and
    counting it named the segment a frame later than what plays.

    Returns ``None`` for a file that holds no frame (empty, a header only, not media at all).

    Raises:
        OSError: The file could not be read (EIO, ESTALE, EACCES, gone): that says nothing about
            what it holds, and a caller that took it for "no frame" deleted footage on a
            flaky network mount (close_orphans runs every retention round).
    """
    first: int | None = None
    last: float | None = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            base = Fraction(stream.time_base or Fraction(1, 90_000))
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size and not packet.is_corrupt:
                    first = packet.pts if first is None else first
                    span = float((packet.pts - first + (packet.duration or 0)) * base)
                    last = span if last is None else max(last, span)
    except OSError:
        raise  # PyAV's I/O errors are OSErrors too: unreadable, not empty
    except (av.error.FFmpegError, IndexError):
        pass  # not media, or the stream ends in the middle: what was read so far stands
    return None if last is None else start + max(last, 0.001)
