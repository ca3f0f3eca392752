"""Recording: the shared construction clip remuxed into fragmented MP4 segments (every packet kept,
bit-exact, segments back to back), an outage mid-segment, orphaned ``.part`` files, retention."""

from __future__ import annotations

import errno
import hashlib
import itertools
import logging
import threading
from pathlib import Path
from typing import Any

import av
import pytest

from assets import asset
from safewatch.ingest.backoff import Backoff
from safewatch.recording import (
    Protected,
    Segment,
    close_orphans,
    list_segments,
    prune,
    record,
    segments_between,
    to_delete,
)
from safewatch.recording.segments import PART_SUFFIX, part_path

CLIP = "video/construction_cctv_640x352_24s.mp4"
T0 = 1_750_000_000.0


def packet_digests(path: Path) -> list[tuple[bool, str]]:
    """(keyframe, sha256 of the payload) of every video packet in a file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (p.is_keyframe, hashlib.sha256(bytes(p)).hexdigest())
            for p in container.demux(stream)
            if p.size
        ]


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_remux_keeps_every_packet_bit_exact_in_back_to_back_segments(tmp_path: Path) -> None:
    clip = asset(CLIP)
    stats = record(
        lambda: av.open(str(clip)),
        tmp_path,
        "yard",
        stop=threading.Event(),
        segment_seconds=4,
        clock=lambda: T0,
        reconnect=False,
    )
    segments = list_segments(tmp_path, "yard")
    assert stats.segments == len(segments) >= 2
    assert (stats.connections, stats.failures, stats.skipped) == (1, 0, 0)
    source = packet_digests(clip)
    recorded = [d for s in segments for d in packet_digests(s.path)]
    assert recorded == source  # no packet lost, none re-encoded
    assert stats.packets == len(source)
    for segment in segments:
        assert packet_digests(segment.path)[0][0], "a segment starts on a keyframe"
        assert segment.end - segment.start >= 4 or segment is segments[-1]
    for before, after in itertools.pairwise(segments):
        assert after.start == pytest.approx(before.end, abs=0.002)  # no gap, no overlap
    assert segments[0].start == T0
    assert segments[-1].end == pytest.approx(T0 + 598 / 24.69, abs=0.1)
    assert sum(decoded_frames(s.path) for s in segments) == 598
    middle = T0 + 12
    assert [s.start for s in segments_between(tmp_path, "yard", middle, middle)] == [
        s.start for s in segments if s.start <= middle < s.end
    ]


class _Input:
    """The clip as a camera: it fails like a camera losing power after ``fail_after`` packets,
    or, played to its end, sets ``stop`` (the operator stops the server)."""

    def __init__(self, path: Path, fail_after: int | None, stop: threading.Event) -> None:
        self._container = av.open(str(path))
        self.streams = self._container.streams
        self._fail_after = fail_after
        self._stop = stop

    def demux(self, stream: Any) -> Any:
        for n, packet in enumerate(self._container.demux(stream)):
            if n == self._fail_after:
                raise av.error.FFmpegError(-5, "Input/output error (camera gone)")
            yield packet
        self._stop.set()

    def close(self) -> None:
        self._container.close()


def test_an_outage_loses_no_segment_and_recording_goes_on(tmp_path: Path) -> None:
    clip = asset(CLIP)
    opened: list[str] = []
    stop = threading.Event()

    def open_input() -> Any:
        opened.append("x")
        # The first connection dies mid-way through its first segment; the second plays on.
        return _Input(clip, 100 if len(opened) == 1 else None, stop)

    stats = record(
        open_input,
        tmp_path,
        "yard",
        stop=stop,
        segment_seconds=60,
        clock=lambda: T0 if len(opened) == 1 else T0 + 100,  # reconnected 100 s later
        backoff=Backoff(initial=0.001, cap=0.001),
    )
    assert (stats.connections, stats.failures) == (2, 1)
    segments = list_segments(tmp_path, "yard")
    assert [round(s.start) for s in segments] == [round(T0), round(T0 + 100)]
    cut, whole = segments
    assert decoded_frames(cut.path) == 100  # everything received before the outage plays
    assert cut.end == pytest.approx(T0 + 100 / 24.69, abs=0.1)
    assert decoded_frames(whole.path) == 598
    assert not list(tmp_path.glob("yard/*/*.part.mp4"))


class _Attempts(Backoff):
    """The default delays, noted and not waited; ``stop`` is set after ``limit`` of them."""

    def __init__(self, stop: threading.Event, limit: int) -> None:
        super().__init__(jitter=0)
        self.delays: list[float] = []
        self._stop = stop
        self._limit = limit

    def next_delay(self) -> float:
        self.delays.append(super().next_delay())
        if len(self.delays) == self._limit:
            self._stop.set()
        return 0.0


def test_a_camera_that_stays_down_is_retried_later_each_time_and_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stop = threading.Event()
    attempts = _Attempts(stop, 6)
    with caplog.at_level(logging.DEBUG, logger="safewatch.recording.recorder"):
        stats = record(
            lambda: av.open("rtsp://127.0.0.1:9/stream", options={"rtsp_transport": "tcp"}),
            tmp_path,
            "yard",
            stop=stop,
            backoff=attempts,
        )
    assert (stats.connections, stats.failures) == (6, 6)
    assert attempts.delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]  # was 2 s each, forever
    lost = [r for r in caplog.records if "input lost" in r.getMessage()]
    assert [r.levelno for r in lost] == [logging.WARNING] + [logging.DEBUG] * 5


class _LiveClip:
    """The clip as a camera sending in real time from packet ``start`` on: :meth:`clock` is the
    wall time of the packets delivered so far; from packet ``jump_at`` its stamps run ``jump``
    seconds ahead (an encoder restart with new RTP timestamps; behind if negative); packet
    ``repeat_at`` repeats the DTS of the one before (a camera's glitch)."""

    FPS = 24.69

    def __init__(
        self, path: Path, *, start: int = 0, jump_at: int = -1, jump: float = 0, repeat_at: int = -1
    ) -> None:
        self._container = av.open(str(path))
        self.streams = self._container.streams
        self._start, self._jump_at, self._jump = start, jump_at, jump
        self._repeat_at = repeat_at
        self.delivered = 0

    def clock(self) -> float:
        return T0 + self.delivered / self.FPS

    def demux(self, stream: Any) -> Any:
        shift = int(self._jump / stream.time_base)
        dts = None
        for n, packet in enumerate(self._container.demux(stream)):
            if n < self._start:
                continue
            if 0 <= self._jump_at <= n and packet.pts is not None:
                packet.pts += shift
                packet.dts += shift
            if n == self._repeat_at:
                packet.dts = dts
            dts = packet.dts
            self.delivered += 1
            yield packet

    def close(self) -> None:
        self._container.close()


def test_times_are_anchored_when_the_first_keyframe_arrives(tmp_path: Path) -> None:
    """Joining mid-GOP, the packets before the first keyframe are dropped: the footage starts
    at that keyframe, so its arrival is the anchor (the connection's first packet, 150 packets
    earlier here, stamped everything 6 s early)."""
    camera = _LiveClip(asset(CLIP), start=100)  # keyframes at packets 0, 250 and 500
    stats = record(
        lambda: camera, tmp_path, "yard", stop=threading.Event(), segment_seconds=60,
        clock=camera.clock, reconnect=False,
    )  # fmt: skip
    assert stats.skipped == 150
    (segment,) = list_segments(tmp_path, "yard")
    assert segment.start == pytest.approx(T0 + 151 / _LiveClip.FPS, abs=0.002)


def test_stamps_running_an_hour_ahead_cut_the_segment_and_anchor_again(tmp_path: Path) -> None:
    """An encoder restart mid-GOP: the segment was named 10 s -> 3620 s (an hour claimed by 2 s
    of video) and the next one an hour in the future. Now the segment ends at the jump and the
    next starts at the next keyframe, at its arrival (the packets between cannot start one)."""
    camera = _LiveClip(asset(CLIP), jump_at=300, jump=3600)
    stats = record(
        lambda: camera, tmp_path, "yard", stop=threading.Event(), segment_seconds=4,
        clock=camera.clock, reconnect=False,
    )  # fmt: skip
    segments = list_segments(tmp_path, "yard")
    assert stats.skipped == 200  # packets 300 to 499, before the keyframe at 500
    assert max(s.end for s in segments) <= camera.clock() + 0.1  # none in the future
    for before, after in itertools.pairwise(segments):
        assert after.start >= before.end - 0.002  # no overlap
    cut = next(s for s in segments if s.start > T0 + 10)
    assert cut.end == pytest.approx(T0 + 300 / _LiveClip.FPS, abs=0.1)  # its 50 packets
    resumed = next(s for s in segments if s.start > cut.start)
    assert resumed.start == pytest.approx(T0 + 501 / _LiveClip.FPS, abs=0.002)
    assert sum(decoded_frames(s.path) for s in segments) == 598 - 200


def test_stamps_stepping_back_cut_the_segment_and_anchor_again(tmp_path: Path) -> None:
    """An encoder restart with lower timestamps mid-GOP: the muxer refused the first packet
    (EINVAL), which ended the connection as an outage (a wait, a reconnect, a keyframe). Now
    the segment ends there and the next starts at the next keyframe, on the same connection."""
    camera = _LiveClip(asset(CLIP), jump_at=300, jump=-3600)
    stats = record(
        lambda: camera, tmp_path, "yard", stop=threading.Event(), segment_seconds=4,
        clock=camera.clock, reconnect=False,
    )  # fmt: skip
    assert (stats.connections, stats.failures, stats.skipped) == (1, 0, 200)
    segments = list_segments(tmp_path, "yard")
    resumed = next(s for s in segments if s.start > T0 + 15)
    assert resumed.start == pytest.approx(T0 + 501 / _LiveClip.FPS, abs=0.002)
    assert sum(decoded_frames(s.path) for s in segments) == 598 - 200


def test_a_repeated_dts_keeps_the_packet_and_the_connection(tmp_path: Path) -> None:
    """One packet with the DTS of the one before (a camera's glitch) ended the connection."""
    camera = _LiveClip(asset(CLIP), repeat_at=100)
    stats = record(
        lambda: camera, tmp_path, "yard", stop=threading.Event(), segment_seconds=4,
        clock=camera.clock, reconnect=False,
    )  # fmt: skip
    assert (stats.connections, stats.failures, stats.skipped, stats.packets) == (1, 0, 0, 598)
    segments = list_segments(tmp_path, "yard")
    assert sum(decoded_frames(s.path) for s in segments) == 598


class _LoopedClip:
    """The clip looped ``loops`` times (25 s apart) as a camera sending in real time, whose
    wall clock is ``wall(t)`` when the stream is ``t`` seconds in (a clock that steps back, one
    that runs slower than the camera's)."""

    GOP = 250  # packets from one keyframe to the next

    def __init__(self, path: Path, loops: int, wall: Any) -> None:
        self._container = av.open(str(path))
        self.streams = self._container.streams
        self._loops, self._wall = loops, wall
        self._at = 0.0
        self.sent = 0

    def clock(self) -> float:
        return T0 + float(self._wall(self._at))

    def demux(self, stream: Any) -> Any:
        for loop in range(self._loops):
            self._container.seek(0)
            shift = int(loop * 25 / stream.time_base)
            for packet in self._container.demux(stream):
                if packet.pts is None or packet.dts is None or not packet.size:
                    continue
                packet.pts += shift
                packet.dts += shift
                self._at = float(packet.pts * stream.time_base)
                self.sent += 1
                yield packet

    def close(self) -> None:
        self._container.close()


def _record_looped(
    tmp_path: Path, camera: _LoopedClip, caplog: pytest.LogCaptureFixture
) -> tuple[Any, int]:
    with caplog.at_level("WARNING", logger="safewatch.recording.recorder"):
        stats = record(
            lambda: camera, tmp_path, "yard", stop=threading.Event(), segment_seconds=4,
            clock=camera.clock, reconnect=False,
        )  # fmt: skip
    return stats, sum("ahead" in r.getMessage() for r in caplog.records)


def test_a_wall_clock_stepping_back_loses_at_most_one_gop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The wall clock steps back 300 s (an NTP correction, a VM resumed) 8 s in. Anchored again
    at the end of the footage written, the stamps stayed 300 s ahead and every packet cut the
    segment again: each GOP became a one-packet segment and the rest was dropped until the
    clock caught up (2,337 of 2,392 packets here). Now the next keyframe is anchored on the
    clock: one re-anchor, the rest of that GOP dropped, and the segments after it overlap the
    first in time."""
    camera = _LoopedClip(asset(CLIP), 4, lambda t: t - 300 if t > 8 else t)
    stats, reanchors = _record_looped(tmp_path, camera, caplog)
    assert reanchors == 1
    assert stats.skipped < _LoopedClip.GOP
    assert stats.packets + stats.skipped == camera.sent
    segments = list_segments(tmp_path, "yard")
    assert segments[0].start == pytest.approx(T0 + 10.13 - 300, abs=0.01)  # the next keyframe
    assert min(s.end - s.start for s in segments) > 3  # no GOP cut short


def test_a_camera_clock_running_fast_loses_at_most_one_gop_per_re_anchor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The camera's clock runs twice as fast as the wall clock: its stamps get a minute ahead
    every 2 minutes of video. Each time, one re-anchor and at most one GOP dropped (anchored at
    the end of the footage written, every packet after the first minute cut again)."""
    camera = _LoopedClip(asset(CLIP), 10, lambda t: t / 2)
    stats, reanchors = _record_looped(tmp_path, camera, caplog)
    assert 1 <= reanchors <= 2  # ~250 s of video
    assert stats.skipped < reanchors * _LoopedClip.GOP
    assert stats.packets + stats.skipped == camera.sent


def test_a_wall_clock_stepping_forward_anchors_again_at_the_next_keyframe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A box without a real-time clock syncs NTP 9.3 s in: the wall clock steps 3 days forward.
    The stamps were never re-anchored (only stamps ahead were), so every later segment was
    named 3 days in the past and age-based retention deleted it as it closed. Now the keyframe
    after the step starts a segment on the clock; the footage before it is kept."""
    day = 86_400
    camera = _LoopedClip(asset(CLIP), 2, lambda t: t + 3 * day if t > 9.3 else t)
    stats, _ = _record_looped(tmp_path, camera, caplog)
    assert sum("stepped" in r.getMessage() for r in caplog.records) == 1
    assert (stats.skipped, stats.failures) == (0, 0)
    segments = list_segments(tmp_path, "yard")
    assert segments[0].start == T0
    assert segments[1].start == pytest.approx(T0 + 3 * day + 10.13, abs=0.01)
    assert segments[-1].end == pytest.approx(camera.clock(), abs=0.1)


def test_a_segment_that_cannot_be_named_stays_a_part_file_and_recording_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing a segment runs at a cut and whenever a connection ends, whatever ended it; an
    error renaming it (the file system remounted read-only, a stale NFS handle) ended the
    connection at a cut, and at the end of a connection escaped ``record`` and ended the
    recorder's thread for good."""
    import errno

    rename = Path.replace
    calls: list[Path] = []

    def read_only(self: Path, target: Path) -> Path:
        calls.append(self)
        if len(calls) in (1, 3):  # the first cut, and the close at the end of the input
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return rename(self, target)

    monkeypatch.setattr(Path, "replace", read_only)
    stats = record(
        lambda: av.open(str(asset(CLIP))),
        tmp_path,
        "yard",
        stop=threading.Event(),
        segment_seconds=5,  # keyframes at 0, 10.13 and 20.25 s: three segments
        clock=lambda: T0,
        reconnect=False,
    )
    assert (stats.segments, stats.failures) == (1, 0)
    assert [round(s.start - T0) for s in list_segments(tmp_path, "yard")] == [10]
    kept = sorted(tmp_path.glob(f"yard/*/*{PART_SUFFIX}"))  # their footage is not lost
    assert len(kept) == 2
    monkeypatch.undo()
    named = close_orphans(tmp_path, "yard")
    assert [round(s.start - T0) for s in named] == [0, 20]
    segments = list_segments(tmp_path, "yard")
    for before, after in itertools.pairwise(segments):
        assert after.start == pytest.approx(before.end, abs=0.1)
    assert sum(decoded_frames(s.path) for s in segments) == 598
    assert not any(path.exists() for path in kept)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_segment_without_a_frame_is_not_kept(tmp_path: Path) -> None:
    """On a full disk the first write fails: the segment named ``<start>-<start+1ms>.mp4``
    held a header at most, was listed for playback, and one more was left at every reconnect."""
    part = part_path(tmp_path, "yard", T0)
    part.parent.mkdir(parents=True)
    part.symlink_to("/dev/full")  # every write: ENOSPC
    stats = record(
        lambda: av.open(str(asset(CLIP))),
        tmp_path,
        "yard",
        stop=threading.Event(),
        clock=lambda: T0,
        reconnect=False,
    )
    assert (stats.segments, stats.failures) == (0, 1)
    assert list_segments(tmp_path, "yard") == []
    assert list(part.parent.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_segment_closed_by_a_cut_is_reported_when_the_next_cannot_open(tmp_path: Path) -> None:
    """The cut closed and named the first segment, then opening the second raised (ENOSPC):
    the first was never counted nor passed to on_segment."""
    part = part_path(tmp_path, "yard", T0 + 10.127)  # the second segment's file
    part.parent.mkdir(parents=True)
    part.symlink_to("/dev/full")
    reported: list[Segment] = []
    stats = record(
        lambda: av.open(str(asset(CLIP))), tmp_path, "yard", stop=threading.Event(),
        segment_seconds=5, clock=lambda: T0, reconnect=False, on_segment=reported.append,
    )  # fmt: skip
    assert (stats.segments, stats.failures) == (1, 1)
    assert reported == list_segments(tmp_path, "yard") != []


class _FullDisk:
    """An output whose disk fills up after ``room`` packets: PyAV's ``mux()`` does not say so
    (ENOSPC and EFBIG after the header are swallowed), the packets just never reach the file."""

    def __init__(self, output: Any, room: int) -> None:
        self._output, self._room = output, room

    def add_stream_from_template(self, template: Any) -> Any:
        return self._output.add_stream_from_template(template)

    def mux(self, packet: Any) -> None:
        self._room -= 1
        if self._room >= 0:
            self._output.mux(packet)

    def close(self) -> None:
        self._output.close()


@pytest.mark.parametrize("segment_seconds", [5, 60])  # closed by a cut, by the end of the input
def test_a_segment_cut_short_in_writing_is_named_by_its_footage_and_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, segment_seconds: float
) -> None:
    """The segment was named with all it had been given (10 s for 4 s on disk) and the
    connection went on as if recording, ``safewatch_recording_up`` at 1."""
    real_open = av.open

    def open_(path: str, mode: str = "r", **options: Any) -> Any:
        opened = real_open(path, mode, **options)
        return _FullDisk(opened, 100) if mode == "w" else opened

    monkeypatch.setattr(av, "open", open_)
    stats = record(
        lambda: real_open(str(asset(CLIP))), tmp_path, "yard", stop=threading.Event(),
        segment_seconds=segment_seconds, clock=lambda: T0, reconnect=False,
    )  # fmt: skip
    assert (stats.segments, stats.failures) == (1, 1)
    assert "writing" in stats.error
    (segment,) = list_segments(tmp_path, "yard")
    assert segment.end == pytest.approx(T0 + 100 / 24.69, abs=0.2)


class _NoSpace:
    """An output on a disk with no room left: its first ``mux()`` (the header) raises ENOSPC."""

    def __init__(self, output: Any) -> None:
        self._output = output

    def add_stream_from_template(self, template: Any) -> Any:
        return self._output.add_stream_from_template(template)

    def mux(self, packet: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self._output.close()


def test_a_full_disk_is_warned_about_once_as_a_write_error_not_the_camera(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every reconnect read a packet from a camera that is fine and could not write it: "input
    back" was logged at the first packet, then a warning "input lost: No space left on device"
    and one "holds no frame" (about 2,880 warnings a camera a day, blaming the camera)."""
    real_open = av.open
    outputs: list[str] = []

    def open_(path: str, mode: str = "r", **options: Any) -> Any:
        opened = real_open(path, mode, **options)
        if mode != "w":
            return opened
        outputs.append(path)
        return _NoSpace(opened) if len(outputs) <= 4 else opened  # room again at the 5th

    monkeypatch.setattr(av, "open", open_)
    stop = threading.Event()
    with caplog.at_level(logging.DEBUG, logger="safewatch.recording.recorder"):
        stats = record(
            lambda: real_open(str(asset(CLIP))), tmp_path, "yard", stop=stop,
            clock=lambda: T0, backoff=_Attempts(stop, 5),
        )  # fmt: skip
    assert (stats.connections, stats.failures) == (5, 4)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "cannot write the recording" in warnings[0]
    assert "No space left" in warnings[0]
    assert not any("input" in r.getMessage() for r in caplog.records)
    back = [r.getMessage() for r in caplog.records if "again" in r.getMessage()]
    assert back == ["recording yard: recording again after 4 failures"]
    assert len(list_segments(tmp_path, "yard")) == 1


def test_orphaned_part_files_are_named_from_their_footage(tmp_path: Path) -> None:
    clip = asset(CLIP)
    part = part_path(tmp_path, "yard", T0)
    part.parent.mkdir(parents=True)
    part.write_bytes(clip.read_bytes())  # a crash left it behind
    empty = part_path(tmp_path, "yard", T0 + 500)
    empty.write_bytes(b"")
    closed = close_orphans(tmp_path, "yard")
    assert [s.start for s in closed] == [T0]
    assert closed[0].end == pytest.approx(T0 + 598 / 24.69, abs=0.1)
    assert not empty.exists()
    assert list_segments(tmp_path, "yard") == closed


def test_an_orphan_that_cannot_be_read_now_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read error (EIO, ESTALE on a network mount) was taken for "no frame" and the .part
    deleted; since retention names orphans every round, one flaky minute cost footage."""
    import errno

    part = part_path(tmp_path, "yard", T0)
    part.parent.mkdir(parents=True)
    part.write_bytes(asset(CLIP).read_bytes())
    real_open = av.open

    def flaky(*args: object, **kwargs: object) -> object:
        raise av.error.OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(av, "open", flaky)
    assert close_orphans(tmp_path, "yard") == []
    assert part.exists()  # kept for the next round
    monkeypatch.setattr(av, "open", real_open)
    (named,) = close_orphans(tmp_path, "yard")
    assert named.start == T0 and not part.exists()


def test_an_orphan_is_named_as_its_writer_would_have_named_it(tmp_path: Path) -> None:
    """Its end counted from the stamp 0 rather than from its first packet's, 81 ms (the clip's
    B-frame delay) later than the footage."""
    record(
        lambda: av.open(str(asset(CLIP))), tmp_path, "yard", stop=threading.Event(),
        segment_seconds=5, clock=lambda: T0, reconnect=False,
    )  # fmt: skip
    written = list_segments(tmp_path, "yard")
    for segment in written:
        segment.path.rename(part_path(tmp_path, "yard", segment.start))  # as a crash left them
    named = close_orphans(tmp_path, "yard")
    assert [s.path.name for s in named] == [s.path.name for s in written]


def test_in_a_shared_folder_only_quiet_part_files_are_orphans(tmp_path: Path) -> None:
    """Under serve --cluster the recording folder is shared: a ``.part`` another node still
    writes (its owner is handing the camera over) is not a dead owner's and stays open."""
    import os

    clip = asset(CLIP)
    dead = part_path(tmp_path, "yard", T0)
    dead.parent.mkdir(parents=True)
    dead.write_bytes(clip.read_bytes())
    os.utime(dead, (T0 + 100, T0 + 100))  # nobody wrote to it for 60 s at T0 + 160
    live = part_path(tmp_path, "yard", T0 + 120)
    live.write_bytes(clip.read_bytes())
    os.utime(live, (T0 + 150, T0 + 150))
    closed = close_orphans(tmp_path, "yard", quiet_seconds=30, clock=lambda: T0 + 160)
    assert [s.start for s in closed] == [T0]
    assert live.exists() and not dead.exists()
    # Its writer closes it later as usual; one that finds it already named by the camera's
    # next owner (it was frozen past its lease) logs it and loses nothing.
    assert close_orphans(tmp_path, "yard", quiet_seconds=5, clock=lambda: T0 + 160) != []
    assert not live.exists()


def test_a_segment_this_process_writes_is_never_an_orphan_whatever_the_clocks(
    tmp_path: Path,
) -> None:
    """The quiet test compares the NFS server's modification time with this host's clock: a
    host running ahead of the server took its own open segment for a dead owner's, renamed it
    mid-write, and logged that "the camera's next owner" had closed it."""
    import os

    from safewatch.recording import SegmentWriter

    with av.open(str(asset(CLIP))) as source:
        stream = source.streams.video[0]
        writer = SegmentWriter(tmp_path, "yard", stream, segment_seconds=60, clock=lambda: T0)
        for packet in itertools.islice(source.demux(stream), 50):
            writer.write(packet)
        (part,) = tmp_path.glob(f"yard/*/*{PART_SUFFIX}")
        os.utime(part, (T0 - 600, T0 - 600))  # the server's clock: ten minutes behind ours
        assert close_orphans(tmp_path, "yard", quiet_seconds=30, clock=lambda: T0) == []
        assert part.exists()
        closed = writer.close()
    assert closed is not None and closed.start == T0
    assert close_orphans(tmp_path, "yard", quiet_seconds=30, clock=lambda: T0) == []


def seg(start: float, size: int = 100) -> Segment:
    return Segment("yard", T0 + start, T0 + start + 60, Path(f"/nowhere/{start}.mp4"), size)


@pytest.mark.parametrize(
    ("max_age", "max_bytes", "protected", "deleted"),
    [
        (None, None, [], []),
        (3600, None, [], [0, 60]),  # ended more than an hour before now (T0 + 3730)
        (None, 300, [], [0, 60]),  # 5 segments of 100 bytes: down to 300
        (None, 300, [Protected(T0 + 10, T0 + 20)], [60, 120]),  # the first is evidence
        (3600, None, [Protected(T0 + 100, T0 + 3000)], [0]),  # 60 overlaps the incident
        (None, 0, [Protected(0, T0 + 10_000)], []),  # an open incident spanning everything
    ],
)
def test_retention_by_age_and_bytes_spares_what_open_incidents_need(
    max_age: float | None, max_bytes: int | None, protected: list[Protected], deleted: list[int]
) -> None:
    segments = [seg(s) for s in (0, 60, 120, 3500, 3600)]
    chosen = to_delete(
        segments, now=T0 + 3730, max_age=max_age, max_bytes=max_bytes, protected=protected
    )
    assert [round(s.start - T0) for s in chosen] == deleted


def test_prune_removes_the_files(tmp_path: Path) -> None:
    files = []
    for n in range(3):
        path = tmp_path / f"{n}.mp4"
        path.write_bytes(b"x" * 10)
        files.append(Segment("yard", T0 + 60 * n, T0 + 60 * n + 60, path, 10))
    removed = prune(files, now=T0 + 180, max_age=None, max_bytes=10)
    assert [s.path.name for s in removed] == ["0.mp4", "1.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2.mp4"]


def test_a_segment_that_cannot_be_deleted_is_kept_and_the_rest_still_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """unlink() refusing one segment (permissions, a read-only or stale mount; here a folder
    under its name) raised out of prune and stopped the camera's pruning, and every later
    camera's, every round. It is kept and logged; its bytes still count, so a younger segment
    goes in its place to meet max_bytes."""
    files = []
    for n in range(4):
        path = tmp_path / f"{n}.mp4"
        if n == 0:
            path.mkdir()
        else:
            path.write_bytes(b"x" * 10)
        files.append(Segment("yard", T0 + 60 * n, T0 + 60 * n + 60, path, 10))
    with caplog.at_level("WARNING", logger="safewatch.recording.retention"):
        removed = prune(files, now=T0 + 240, max_age=None, max_bytes=20)
    assert [s.path.name for s in removed] == ["1.mp4", "2.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.mp4", "3.mp4"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "1 segment(s) could not be deleted" in warning and str(files[0].path) in warning
