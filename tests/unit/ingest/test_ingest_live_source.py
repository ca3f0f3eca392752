"""LiveSource over a real local HTTP server (MPEG-TS), and against a port nobody listens on.

HTTP serves the whole clip as fast as the socket allows, so these tests also exercise the bounded
drop-oldest buffer, and the end of each download is an interruption the source recovers from.
"""

from __future__ import annotations

import functools
import http.server
import itertools
import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from ingest_media import remux

from assets import asset
from safewatch.ingest import Backoff, LiveSource, SourceState, StateChange
from safewatch.ingest.live_source import AHEAD_LIMIT
from safewatch.ingest.picture_clock import PictureClock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_folder(folder: Path) -> http.server.ThreadingHTTPServer:
    """A local HTTP server over ``folder``, serving on its own thread until shut down."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def http_clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("http")
    remux(asset("video/construction_cctv_640x352_24s.mp4"), folder / "clip.ts", fmt="mpegts")
    server = serve_folder(folder)
    yield f"http://127.0.0.1:{server.server_address[1]}/clip.ts"
    server.shutdown()
    server.server_close()


def test_http_stream_frames_stay_monotonic_across_reconnects(http_clip: str) -> None:
    changes: list[StateChange] = []
    source = LiveSource(
        "dock",
        http_clip,
        fps=1000,
        max_buffered=2,
        backoff=Backoff(0.05, 0.1),
        on_state=changes.append,
    )
    frames = []
    for frame in source.frames():
        frames.append(frame)
        time.sleep(0.01)  # a consumer slower than the download: frames are dropped, not queued
        if source.stats.reconnects >= 1 and len(frames) >= 20:
            break
    source.close()
    stats = source.stats
    assert stats.reconnects >= 1
    assert stats.dropped > 0
    assert stats.sampled >= stats.dropped + len(frames)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    assert frames[0].image.shape == (352, 640, 3)
    assert source.info.width == 640
    states = [c.state for c in changes]
    assert states[0] is SourceState.STREAMING
    assert SourceState.RECONNECTING in states
    assert states[-1] is SourceState.ENDED


def test_avi_stream_with_b_frames_keeps_presentation_time(tmp_path: Path) -> None:
    # An AVI's PTS are in decode order (they step back 374 times in PETS09's 795 pictures): read
    # as they were, the source re-anchored or dropped a picture at each step back.
    shutil.copyfile(asset("video/pets09_s2l1_480x360.avi"), tmp_path / "road.avi")
    server = serve_folder(tmp_path)
    ticks = itertools.count()
    source = LiveSource(
        "road",
        f"http://127.0.0.1:{server.server_address[1]}/road.avi",
        fps=1000,
        max_buffered=1000,  # a consumer that falls behind loses nothing
        backoff=Backoff(0.05, 0.1),
        clock=lambda: 1_700_000_000.0 + next(ticks) * 1e-3,  # arrivals never outrun the stamps
    )
    frames = []
    try:
        for frame in source.frames():
            frames.append(frame)
            if len(frames) == 795:  # the whole file, over the first connection
                break
    finally:
        source.close()
        server.shutdown()
        server.server_close()
    assert source.stats.reconnects == 0
    steps = np.diff([f.timestamp for f in frames])
    assert np.all(steps > 0)
    # A live stream is not read ahead: only the second picture, timed before the first failed
    # PTS, is off (0.2 s late; the source re-anchors one frame after it and goes on exactly).
    assert np.count_nonzero(np.abs(steps - 0.1) > 1e-3) == 1


def test_dead_port_reports_state_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://viewer:hunter22@127.0.0.1:{free_port()}/video.mjpg?token=abcdef"
    changes: list[StateChange] = []
    source = LiveSource(
        "gate", url, fps=5, backoff=Backoff(0.01, 0.02), max_attempts=3, on_state=changes.append
    )
    with caplog.at_level(logging.DEBUG, logger="safewatch.ingest"):
        frames = list(source.frames())  # ends when the source gives up; never raises
    assert frames == []
    assert source.state is SourceState.FAILED
    assert [c.state for c in changes] == [SourceState.RECONNECTING, SourceState.FAILED]
    assert "after 3 attempts" in source.message
    assert "refused" in source.message.lower()
    assert source.stats.reconnects == 2
    text = caplog.text + " ".join(c.message for c in changes)
    assert "hunter22" not in text
    assert "abcdef" not in text
    assert "***:***@127.0.0.1" in text


def test_close_ends_a_blocked_consumer() -> None:
    source = LiveSource("gate", f"http://127.0.0.1:{free_port()}/x", fps=5, io_timeout=0.5)
    got: list[object] = []
    consumer = threading.Thread(target=lambda: got.extend(source.frames()))
    consumer.start()
    time.sleep(0.3)
    source.close()
    consumer.join(timeout=5)
    assert not consumer.is_alive()
    assert source.state is SourceState.ENDED


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"max_buffered": 0}, "max_buffered"), ({"stall_timeout": 0}, "stall")]
)
def test_rejects_bad_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LiveSource("cam", "rtsp://cam/s", fps=5, **kwargs)  # type: ignore[arg-type]


def test_never_started_source_closes_cleanly() -> None:
    source = LiveSource("cam", "rtsp://cam/s", fps=5)
    assert source.info.width == 0
    source.close()
    assert source.state is SourceState.ENDED


_BLANK = np.zeros((4, 4, 3), np.uint8)


class _Picture:
    """What the decode loop reads of a decoded picture: its stamps, in a 90 kHz time base."""

    def __init__(self, pts: int, key_frame: bool = True) -> None:
        self.pts = pts
        self.dts = pts
        self.time_base = Fraction(1, 90_000)
        self.key_frame = key_frame


def test_a_camera_clock_that_jumps_ahead_does_not_move_incident_times() -> None:
    """An encoder restart can move RTP stamps an hour ahead; every later frame (and incident,
    and clip) was stamped an hour in the future, even after a reconnect."""
    now = [1_700_000_000.0]
    source = LiveSource(
        "cam", "rtsp://127.0.0.1:1/x", fps=5.0, max_buffered=1000, clock=lambda: now[0]
    )
    stamps = PictureClock()
    session = None
    pts = 0
    for i in range(60):  # 12 s at 5 fps; the camera's clock jumps +1 h at frame 30
        if i == 30:
            pts += 3600 * 90_000
        session = source._deliver(_Picture(pts), session, 5.0, lambda _p: _BLANK, stamps)
        pts += 18_000
        now[0] += 0.2
    frames = list(source._buffer)
    assert len(frames) == 60
    offsets = [f.timestamp - (1_700_000_000.0 + 0.2 * i) for i, f in enumerate(frames)]
    assert max(abs(o) for o in offsets) < 0.5, offsets[25:35]
    assert all(b.timestamp > a.timestamp for a, b in itertools.pairwise(frames))


def _drift(rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Stamps and wall times of 12 h at 1 fps from a camera whose clock runs at ``rate``."""
    now = [1_700_000_000.0]
    source = LiveSource("cam", "rtsp://127.0.0.1:1/x", fps=1.0, clock=lambda: now[0])
    stamps = PictureClock()
    session = None
    pts = 0
    walls, times = [], []
    for _ in range(12 * 3600):  # 12 h at 1 fps
        session = source._deliver(_Picture(pts), session, 1.0, lambda _p: _BLANK, stamps)
        walls.append(now[0])
        times.append(source._last_timestamp)
        pts += round(90_000 * rate)
        now[0] += 1.0
    return np.asarray(times), np.asarray(walls)


def test_a_fast_camera_clock_is_held_at_the_limit() -> None:
    """A camera clock 0.2 % fast never jumps, but its stamps ran 42 s ahead after 6 h and
    168 s after 24 h: only one frame's step was checked."""
    times, walls = _drift(1.002)
    offsets = times - walls
    # Within the limit (one frame's step at most past it), and never moving backwards.
    assert np.max(offsets) <= AHEAD_LIMIT + 1.0, offsets.max()
    assert np.all(np.diff(times) > 0)


def test_a_slow_camera_clock_falls_behind_without_a_jump() -> None:
    """Re-review: re-anchoring a clock 0.2 % slow stepped its stamps 61 s forward at once after
    8 h, a gap that ended every track and open incident (reopened as new ones), while the
    recorder, which leaves slow clocks alone, then disagreed by 60 s. No step is larger than a
    frame's."""
    times, walls = _drift(0.998)
    assert np.max(np.diff(times)) < 1.01
    assert np.all(np.diff(times) > 0)
    assert (times - walls)[-1] < -AHEAD_LIMIT  # behind, as the recorder's segments are


def _on_test_clocks() -> tuple[LiveSource, list[float], list[float]]:
    """A source whose wall and monotonic clocks are the lists returned (move them by hand)."""
    wall, mono = [1_700_000_000.0], [1000.0]
    source = LiveSource(
        "cam",
        "rtsp://127.0.0.1:1/x",
        fps=5.0,
        max_buffered=10**6,
        clock=lambda: wall[0],
        monotonic=lambda: mono[0],
    )
    return source, wall, mono


@pytest.mark.parametrize("real_fps", [25.0, 12.5])
def test_a_host_clock_stepped_back_keeps_the_camera_pace(
    real_fps: float, caplog: pytest.LogCaptureFixture
) -> None:
    """Re-review: after the host clock stepped back 1 h, every frame read as running an hour
    ahead and was re-anchored one announced interval (1/25 s) after the last, for good: a camera
    sending 12.5 fps of an announced 25 had its stamps at half speed. Time still never goes back,
    so the stamps stay an hour ahead of the host clock, at the camera's pace; logged once."""
    source, wall, mono = _on_test_clocks()
    stamps = PictureClock()
    session = None
    pts = 0
    times = []
    with caplog.at_level(logging.WARNING, logger="safewatch.ingest.live_source"):
        for i in range(int(120 * real_fps)):  # 2 min; the host clock steps back 1 h at 10 s
            if i == int(10 * real_fps):
                wall[0] -= 3600.0
            session = source._deliver(_Picture(pts), session, 25.0, lambda _p: _BLANK, stamps)
            times.append(source._last_timestamp)
            pts += round(90_000 / real_fps)
            wall[0] += 1 / real_fps
            mono[0] += 1 / real_fps
    steps = np.diff(np.asarray(times))
    assert np.allclose(steps, 1 / real_fps), (steps.min(), steps.max())  # the camera's pace
    assert caplog.text.count("host clock stepped 3600 s back") == 1


@pytest.mark.parametrize("by_arrival", [False, True], ids=["media clock", "by arrival"])
def test_a_host_clock_stepped_back_then_forward_again_is_followed(
    by_arrival: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Re-review: the shift a step back added was never taken back. A wrong step back of 1 h,
    corrected a minute later, left a stream without a media clock stamped an hour ahead of the
    (right again) host clock at once, and an RTSP camera from its next reconnect on, for good."""
    source, wall, mono = _on_test_clocks()
    fps = 25.0
    stamps, session, pts = PictureClock(), None, 0
    times, ahead = [], []
    with caplog.at_level(logging.WARNING, logger="safewatch.ingest.live_source"):
        for i in range(int(120 * fps)):
            if i == int(10 * fps):
                wall[0] -= 3600.0  # a wrong step back
            if i == int(30 * fps):
                wall[0] += 3600.0  # corrected
            if i == int(60 * fps):
                session, stamps = None, PictureClock()  # the camera reconnects
            session = source._deliver(
                _Picture(pts), session, fps, lambda _p: _BLANK, stamps, by_arrival=by_arrival
            )
            times.append(source._last_timestamp)
            ahead.append(source._last_timestamp - wall[0])
            pts += round(90_000 / fps)
            wall[0] += 1 / fps
            mono[0] += 1 / fps
    assert np.all(np.diff(np.asarray(times)) > 0)
    # Right after the correction, and after the reconnect: on the host clock again.
    assert abs(ahead[int(30 * fps)]) < 1.0, ahead[int(30 * fps)]
    assert max(abs(a) for a in ahead[int(60 * fps) :]) < 1.0
    assert caplog.text.count("host clock stepped 3600 s back") == 1
    assert caplog.text.count("host clock stepped 3600 s forward") == 1


class _FakeStream:
    """A video stream whose ``decode`` hands back the packet it is given: the packets are the
    pictures (real ``av.VideoFrame`` objects, so they convert to BGR)."""

    def __init__(self, guessed_rate: Fraction | None = None) -> None:
        self.average_rate: Fraction | None = None
        self.guessed_rate = guessed_rate
        self.thread_type = "AUTO"
        self.codec_context = SimpleNamespace(width=16, height=16)

    def decode(self, packet: av.VideoFrame) -> list[av.VideoFrame]:
        return [packet]


class _FakeContainer:
    """An opened input of demuxer ``format_name`` yielding ``pictures``; ``tick`` runs before each
    (the test's clocks move there)."""

    def __init__(
        self,
        format_name: str,
        pictures: Iterable[av.VideoFrame],
        tick: Callable[[], None],
        *,
        guessed_rate: Fraction | None = None,
    ) -> None:
        self.format = SimpleNamespace(name=format_name)
        self.streams = SimpleNamespace(video=[_FakeStream(guessed_rate)])
        self._pictures = pictures
        self._tick = tick

    def demux(self, _stream: object) -> Iterator[av.VideoFrame]:
        for picture in self._pictures:
            self._tick()
            yield picture

    def close(self) -> None:
        pass


def _video_frame(pts: int, time_base: Fraction) -> av.VideoFrame:
    picture = av.VideoFrame(16, 16, "yuv420p")
    picture.pts = picture.dts = pts
    picture.time_base = time_base
    return picture


def test_an_mjpeg_camera_is_stamped_by_arrival() -> None:
    """FFmpeg's mpjpeg demuxer counts pictures at 25 fps whatever the camera sends: a 10 fps
    camera was analysed at 2 fps instead of 5, its stamps 0.6 s behind more every second."""
    now = [1_700_000_000.0]

    def tick() -> None:
        now[0] += 0.1  # the camera sends 10 pictures a second

    source = LiveSource(
        "gate", "http://127.0.0.1:1/video.mjpg", fps=5.0, max_buffered=1000, clock=lambda: now[0]
    )
    pictures = (_video_frame(i, Fraction(1, 25)) for i in range(100))  # what FFmpeg invents
    container = _FakeContainer("mpjpeg", pictures, tick, guessed_rate=Fraction(25))
    delivered, reason = source._decode(container)  # type: ignore[arg-type]
    assert (delivered, reason) == (True, "stream ended")
    frames = list(source._buffer)
    assert 48 <= len(frames) <= 52  # 5 a second over 10 s
    times = np.array([f.timestamp for f in frames])
    assert np.allclose(np.diff(times), 0.2)  # every second picture, on the wall clock
    assert times[-1] == pytest.approx(now[0], abs=0.15)  # not behind it
    assert source.info.fps is None  # 25 fps is FFmpeg's invention, not the camera's rate


class _RecordingBackoff(Backoff):
    def __init__(self) -> None:
        super().__init__(0.001, 1.0, jitter=0.0)
        self.delays: list[float] = []

    def next_delay(self) -> float:
        self.delays.append(super().next_delay())
        return self.delays[-1]


def test_a_camera_that_drops_after_one_frame_is_retried_later_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The delays started over at every connection's first picture: a camera that accepts,
    sends one and drops was retried every 0.5 s forever. Only one that lasted starts them over."""
    now = [0.0]
    backoff = _RecordingBackoff()
    source = LiveSource(
        "gate",
        "rtsp://127.0.0.1:1/x",
        fps=5.0,
        backoff=backoff,
        clock=lambda: 1_700_000_000.0 + now[0],
        monotonic=lambda: now[0],
    )
    lengths = iter([1, 1, 1, 40, 1])  # pictures per connection, 1 s apart; then closed

    def tick() -> None:
        now[0] += 1.0

    def pictures(count: int) -> Iterator[av.VideoFrame]:
        for i in range(count):
            yield _video_frame(i * 90_000, Fraction(1, 90_000))
        raise av.error.EOFError(541478725, "End of file")  # the camera hung up

    def fake_open(*_args: object, **_kwargs: object) -> _FakeContainer:
        count = next(lengths, None)
        if count is None:
            source.close()
            raise av.error.EOFError(541478725, "End of file")
        return _FakeContainer("rtsp", pictures(count), tick)

    monkeypatch.setattr(av, "open", fake_open)
    source._run()  # on this thread, until the source closes
    assert backoff.delays == [0.001, 0.002, 0.004, 0.001, 0.002]
    assert source.stats.reconnects == 5


def test_a_stream_whose_stamps_stop_advancing_stalls() -> None:
    """Pictures thrown away for a stamp that did not advance still refreshed the stall clock: a
    stream whose PTS froze showed streaming, delivered nothing and never reconnected."""
    now = [0.0]

    def tick() -> None:
        now[0] += 1.0

    source = LiveSource(
        "gate",
        "rtsp://127.0.0.1:1/x",
        fps=5.0,
        stall_timeout=5.0,
        clock=lambda: 1_700_000_000.0 + now[0],
        monotonic=lambda: now[0],
    )
    pictures = (_video_frame(90_000, Fraction(1, 90_000)) for _ in range(30))  # 30 s, one PTS
    delivered, reason = source._decode(_FakeContainer("rtsp", pictures, tick))  # type: ignore[arg-type]
    assert (delivered, reason) == (True, "no frame for 5 s")
    assert source.state is SourceState.STALLED
    assert now[0] < 10.0  # noticed at the first packet past the stall timeout


def test_a_frozen_picture_is_withheld_until_it_moves_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A camera that repeats its last picture kept "streaming": the stall clock was fed, and a
    person caught in a zone dwelt for ever on the repeated picture. The same picture for
    ``freeze_timeout`` seconds is ``frozen`` (frames withheld and counted); a reconnect to the
    same picture stays frozen (no streaming flap); a moving picture streams again."""
    now = [0.0]
    rng = np.random.default_rng(7)

    def noisy() -> np.ndarray:
        return rng.integers(90, 110, (64, 64, 3), dtype=np.uint8)  # a quiet scene's noise

    still = noisy()
    changes: list[StateChange] = []
    source = _frozen_source(5.0, changes, now, freeze_timeout=30.0)
    connections = [
        [noisy() for _ in range(20)] + [still] * 60,  # moving, then 59 s of one picture
        [still] * 10 + [noisy() for _ in range(5)],  # back on the same picture; then moves
    ]
    keyframes = [[(image, True) for image in images] for images in connections]
    _run_connections(monkeypatch, source, keyframes, now, 1.0)
    states = [c.state for c in changes]
    assert states == [
        SourceState.STREAMING,
        SourceState.FROZEN,
        SourceState.RECONNECTING,
        SourceState.FROZEN,
        SourceState.STREAMING,
        SourceState.RECONNECTING,
        SourceState.ENDED,
    ]
    assert "has not changed for 30 s" in changes[1].message
    frames = list(source._buffer)
    # 20 moving + 30 of the still picture (unchanged for 0-29 s) + the 5 moving ones at the end
    assert len(frames) == 20 + 30 + 5
    assert source.stats.frozen == 30 + 10
    assert [f.seq for f in frames] == list(range(len(frames)))  # no hole in the sequence


def test_a_quiet_scene_never_counts_as_frozen() -> None:
    """Sensor noise of one grey level on a still scene is a live camera, however long."""
    rng = np.random.default_rng(3)
    base = np.full((64, 64, 3), 40, np.uint8)
    images = iter(base + rng.integers(0, 2, (600, 64, 64, 3), dtype=np.uint8))
    now = [1_700_000_000.0]
    source = LiveSource(
        "cam",
        "rtsp://127.0.0.1:1/x",
        fps=5.0,
        max_buffered=1000,
        freeze_timeout=30.0,
        clock=lambda: now[0],
    )
    stamps = PictureClock()
    session = None
    for i in range(600):  # 10 min at 1 fps
        session = source._deliver(
            _Picture(i * 90_000), session, 1.0, lambda _p: next(images), stamps
        )
        now[0] += 1.0
    assert len(source._buffer) == 600
    assert source.stats.frozen == 0


def _run_connections(
    monkeypatch: pytest.MonkeyPatch,
    source: LiveSource,
    connections: list[list[tuple[np.ndarray, bool]]],
    now: list[float],
    step: float,
) -> None:
    """Run ``source`` over fake connections of (image, key_frame) pictures ``step`` s apart."""
    remaining = iter(connections)
    index = itertools.count()

    def tick() -> None:
        now[0] += step

    def pictures(items: list[tuple[np.ndarray, bool]]) -> Iterator[av.VideoFrame]:
        for image, key in items:
            picture = av.VideoFrame.from_ndarray(image, format="bgr24")
            picture.pts = picture.dts = round(next(index) * step * 90_000)
            picture.time_base = Fraction(1, 90_000)
            picture.key_frame = key
            yield picture
        raise av.error.EOFError(541478725, "End of file")

    def fake_open(*_args: object, **_kwargs: object) -> _FakeContainer:
        items = next(remaining, None)
        if items is None:
            source.close()
            raise av.error.EOFError(541478725, "End of file")
        return _FakeContainer("rtsp", pictures(items), tick)

    monkeypatch.setattr(av, "open", fake_open)
    source._run()


def _frozen_source(
    fps: float, changes: list[StateChange], now: list[float], *, freeze_timeout: float = 10.0
) -> LiveSource:
    return LiveSource(
        "gate",
        "rtsp://127.0.0.1:1/x",
        fps=fps,
        max_buffered=1000,
        freeze_timeout=freeze_timeout,
        backoff=Backoff(0.001, 0.001, jitter=0.0),
        on_state=changes.append,
        clock=lambda: 1_700_000_000.0 + now[0],
        monotonic=lambda: now[0],
    )


def test_a_long_gop_over_a_still_scene_is_not_frozen_until_a_keyframe_repeats_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between keyframes an encoder may repeat a still scene exactly (a smart codec's GOP of a
    minute or more): that is no frozen camera. Only the same picture after a keyframe is."""
    rng = np.random.default_rng(5)
    scene = rng.integers(90, 110, (64, 64, 3), dtype=np.uint8)
    now = [0.0]
    changes: list[StateChange] = []
    source = _frozen_source(1.0, changes, now)
    gop = [(scene, True)] + [(scene, False)] * 40  # 40 s of all-skip frames, 1 fps
    repeated = [(scene, True)] + [(scene, False)] * 5  # a keyframe with the very same picture
    _run_connections(monkeypatch, source, [gop + repeated], now, 1.0)
    states = [c.state for c in changes]
    assert states[:2] == [SourceState.STREAMING, SourceState.FROZEN]
    assert len(source._buffer) == 41  # everything up to the repeating keyframe was analysed


def test_a_reconnect_to_a_frozen_picture_does_not_flash_streaming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 1 fps analysis of a 5 fps camera, a reconnect's first picture is often not sampled
    (so not checked): it set streaming between two frozen (a false recovery in the log)."""
    rng = np.random.default_rng(7)
    still = rng.integers(90, 110, (64, 64, 3), dtype=np.uint8)
    moving = [(rng.integers(90, 110, (64, 64, 3), dtype=np.uint8), True) for _ in range(10)]
    now = [0.0]
    changes: list[StateChange] = []
    source = _frozen_source(1.0, changes, now)
    first = moving + [(still, i % 10 == 0) for i in range(101)]
    second = [(still, i % 10 == 0) for i in range(20)]
    _run_connections(monkeypatch, source, [first, second], now, 0.2)
    assert [c.state for c in changes] == [
        SourceState.STREAMING,
        SourceState.FROZEN,
        SourceState.RECONNECTING,
        SourceState.FROZEN,
        SourceState.RECONNECTING,
        SourceState.ENDED,
    ]
