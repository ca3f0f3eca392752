"""Decode workers under the supervisor: files played live, endings, reloads, crashes, stalls."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from runtime_fakes import moving_square_video

from patience import poll
from safewatch.config.runtime import MotionConfig, WatchdogConfig
from safewatch.config.site import CameraConfig
from safewatch.domain.frame import Frame
from safewatch.ingest.paced_file_source import PacedFileSource
from safewatch.ingest.state import SourceInfo, SourceState, SourceStats, StateChange
from safewatch.runtime import camera_worker
from safewatch.runtime.camera_worker import ThreadWorker, WorkerSpec
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.rings import RingCache
from safewatch.runtime.supervisor import Supervisor, WorkerState


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    return moving_square_video(folder / "square.mp4", seconds=0.5, fps=20)


def spec(camera: str, source: Path | str, *, loop: bool = True, fps: float = 10.0) -> WorkerSpec:
    return WorkerSpec(
        camera_id=camera,
        camera=CameraConfig(source=str(source), fps=fps, models=["m"], loop=loop),
        base_dir=Path("."),
        motion=MotionConfig(),
        stats_interval=0.05,
    )


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    poll(condition, timeout, period=0.02)


class Running:
    def __init__(self, mode: str, watchdog: WatchdogConfig | None = None) -> None:
        self.mailbox = FrameMailbox()
        self.rings = RingCache()
        self.stopped: list[str] = []
        self.ended: list[tuple[str, int]] = []  # camera, incarnation of the worker that ended
        self.supervisor = Supervisor(
            mode=mode,  # type: ignore[arg-type]
            mailbox=self.mailbox,
            rings=self.rings,
            watchdog=watchdog
            or WatchdogConfig(stall_seconds=2, progress_seconds=5, restart_backoff_seconds=0.1),
            on_camera_stopped=self.stopped.append,
            on_camera_ended=lambda camera, incarnation: self.ended.append((camera, incarnation)),
        )
        self.supervisor.start()

    def state(self, camera: str) -> WorkerState:
        (status,) = [s for s in self.supervisor.statuses() if s.camera_id == camera]
        return status.state

    def frames(self, count: int, timeout: float = 10.0) -> list[tuple[str, int, np.ndarray]]:
        got: list[tuple[str, int, np.ndarray]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for pending in self.mailbox.take_batch(8, 0.0, timeout=0.2):
                ready = pending.frame
                image = ready.image if ready.image is not None else None
                if image is None and ready.ref is not None:
                    image = self.rings.read(ready.ref)
                if image is not None:
                    got.append((ready.camera_id, ready.seq, image))
        return got


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def make(mode: str = "thread", watchdog: WatchdogConfig | None = None) -> Running:
        made.append(Running(mode, watchdog))
        return made[-1]

    yield make
    for item in made:
        item.supervisor.stop(timeout=5.0)
        item.rings.close()


def test_a_file_plays_live_and_loops_with_continuous_time(clip: Path) -> None:
    source = PacedFileSource("cam", clip, fps=20, loop=True)
    started = time.time()
    frames = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) == 15:  # 10 frames per pass: crosses the loop
            break
    source.close()
    assert [f.seq for f in frames] == list(range(15))
    assert np.all(np.diff([f.pts for f in frames]) > 0.04)
    assert np.allclose(np.diff([f.timestamp for f in frames]), 0.05, atol=0.002)
    assert frames[-1].timestamp <= time.time() + 0.01  # released at their time, not ahead
    assert time.time() - started >= 0.65
    assert source.stats.sampled == 15
    assert source.stats.decoded >= 15
    assert source.state.value == "ended"


def test_loop_is_for_files_only() -> None:
    # Refused when the site file loads (check-config), not when serve starts the camera.
    with pytest.raises(ValidationError, match="loop applies to video files only"):
        spec("cam", "rtsp://user:secret@10.0.0.1/s", loop=True)


def test_thread_workers_feed_the_mailbox_and_report(
    clip: Path, running: Callable[..., Running]
) -> None:
    r = running("thread")
    plan = r.supervisor.apply({"a": spec("a", clip), "b": spec("b", clip)})
    assert plan.added == ("a", "b")
    got = r.frames(8)
    assert {camera for camera, _, _ in got} == {"a", "b"}
    assert all(image.shape == (64, 96, 3) for _, _, image in got)
    wait_for(lambda: r.state("a") is WorkerState.RUNNING)
    (status,) = [s for s in r.supervisor.statuses() if s.camera_id == "a"]
    assert status.source_state == "streaming"
    assert status.stats.decoded > 0 and status.last_frame_at is not None
    assert set(r.supervisor.plans()) == {"a", "b"}


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_file_without_loop_ends_and_is_not_restarted(
    clip: Path, running: Callable[..., Running], mode: str
) -> None:
    r = running(mode)
    r.supervisor.apply({"once": spec("once", clip, loop=False)})
    wait_for(lambda: r.state("once") is WorkerState.ENDED, timeout=30)
    time.sleep(0.3)
    (status,) = r.supervisor.statuses()
    assert status.state is WorkerState.ENDED and status.restarts == 0
    # Its episodes are finished after the last frame of the worker that ended.
    assert r.ended == [("once", r.supervisor.plans()["once"].incarnation)]


def test_a_missing_file_fails_with_its_name(
    tmp_path: Path, running: Callable[..., Running]
) -> None:
    r = running("thread")
    r.supervisor.apply({"gone": spec("gone", tmp_path / "nope.mp4")})
    wait_for(lambda: r.state("gone") is WorkerState.FAILED)
    (status,) = r.supervisor.statuses()
    assert "nope.mp4" in status.message and status.restarts == 0


def test_reload_touches_only_the_cameras_that_changed(
    clip: Path, running: Callable[..., Running]
) -> None:
    r = running("thread")
    r.supervisor.apply({"a": spec("a", clip), "b": spec("b", clip)})
    wait_for(lambda: r.state("a") is WorkerState.RUNNING)
    before = {s.camera_id: s.incarnation for s in r.supervisor.statuses()}
    plan = r.supervisor.apply(
        {"a": spec("a", clip), "b": spec("b", clip, fps=5), "c": spec("c", clip)}
    )
    assert (plan.added, plan.removed, plan.changed, plan.unchanged) == (("c",), (), ("b",), ("a",))
    after = {s.camera_id: s.incarnation for s in r.supervisor.statuses()}
    assert after["a"] == before["a"]
    assert after["b"] > max(before.values())  # a new worker, never mistaken for the old
    assert r.stopped == ["b"]  # its episodes were finished before it restarted
    plan = r.supervisor.apply({"a": spec("a", clip)})
    assert plan.removed == ("b", "c")
    assert r.supervisor.camera_ids() == ["a"]
    assert r.stopped == ["b", "b", "c"]
    assert {s.camera_id: s.incarnation for s in r.supervisor.statuses()} == {"a": before["a"]}


def test_a_renamed_camera_keeps_its_worker_and_shows_its_new_name(
    clip: Path, running: Callable[..., Running]
) -> None:
    """A display name is no concern of the worker: a rename restarted the camera, which closed
    its open incidents (``on_camera_stopped``) and reset its tracks."""
    r = running("thread")
    r.supervisor.apply({"a": spec("a", clip)})
    wait_for(lambda: r.state("a") is WorkerState.RUNNING)
    (before,) = r.supervisor.statuses()
    assert before.name == "a"
    plan = r.supervisor.apply({"a": dataclasses.replace(spec("a", clip), name="Gate A")})
    assert plan.unchanged == ("a",) and r.stopped == []
    (after,) = r.supervisor.statuses()
    assert (after.name, after.incarnation) == ("Gate A", before.incarnation)


@pytest.mark.slow
def test_a_killed_or_frozen_decode_process_is_restarted(
    clip: Path, running: Callable[..., Running]
) -> None:
    # Thresholds well above what a busy CI host can delay a healthy worker (a restarted worker
    # spawning and opening the clip took over 2.5 s at load average 47, and over 6 s under nice 10
    # at load 6, where a 6 s progress limit killed healthy restarted workers in a loop), below the
    # 30 s waits for a frozen worker's restart. A fresh process's first frames wait up to 30 s.
    r = running(
        "process",
        WatchdogConfig(stall_seconds=3, progress_seconds=12, restart_backoff_seconds=0.2),
    )
    r.supervisor.apply({"cam": spec("cam", clip)})
    assert r.frames(3, timeout=30)  # frames arrive through shared memory
    first = r.supervisor.pid("cam")
    assert first is not None and first != os.getpid()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: r.supervisor.pid("cam") not in (None, first), timeout=15)
    second = r.supervisor.pid("cam")
    wait_for(lambda: r.state("cam") is WorkerState.RUNNING, timeout=15)
    assert r.frames(3, timeout=30)
    os.kill(second, signal.SIGSTOP)  # alive but making no progress
    try:
        wait_for(lambda: r.supervisor.pid("cam") not in (None, second), timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed by the supervisor already
            os.kill(second, signal.SIGCONT)
    (status,) = r.supervisor.statuses()
    assert status.restarts == 2
    wait_for(lambda: r.state("cam") is WorkerState.RUNNING, timeout=15)
    assert r.frames(3, timeout=30)


@pytest.mark.slow
def test_a_decode_process_stopped_from_outside_is_restarted_not_ended(
    clip: Path, running: Callable[..., Running]
) -> None:
    """An operator's ``kill PID`` or systemd's control-group stop sends the decode process
    SIGTERM: it closes its source (which reports ``ended``) and exits 0. That was taken for
    the camera's end: never restarted, its incidents finished, left out of /readyz. Only the
    worker's own final exit (a file played to its end) ends a camera; this is a crash."""
    r = running(
        "process",
        WatchdogConfig(stall_seconds=3, progress_seconds=12, restart_backoff_seconds=0.2),
    )
    r.supervisor.apply({"cam": spec("cam", clip)})
    assert r.frames(3, timeout=30)
    first = r.supervisor.pid("cam")
    assert first is not None and first != os.getpid()
    os.kill(first, signal.SIGTERM)
    wait_for(lambda: r.supervisor.pid("cam") not in (None, first), timeout=30)
    wait_for(lambda: r.state("cam") is WorkerState.RUNNING, timeout=30)
    (status,) = r.supervisor.statuses()
    assert status.restarts == 1 and r.ended == []
    assert r.frames(3, timeout=30)


@pytest.mark.slow
def test_a_crashed_worker_waiting_to_restart_is_not_streaming(
    clip: Path, running: Callable[..., Running]
) -> None:
    """Between a crash and its restart nothing decodes. The handle kept the dead worker's last
    report, ``streaming``, so ``safewatch_camera_up`` (1 while the source state is streaming)
    stayed 1 through a crash loop and SafewatchCameraDown never fired, while /readyz and the
    Live page said the camera was down. (A long backoff holds it there for the assertions.)"""
    r = running(
        "process",
        WatchdogConfig(stall_seconds=3, progress_seconds=12, restart_backoff_seconds=600),
    )
    r.supervisor.apply({"cam": spec("cam", clip)})
    assert r.frames(3, timeout=30)
    wait_for(lambda: r.supervisor.statuses()[0].source_state == "streaming", timeout=30)
    pid = r.supervisor.pid("cam")
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: r.state("cam") is WorkerState.BACKOFF, timeout=30)
    (status,) = r.supervisor.statuses()
    assert status.source_state == "reconnecting", status
    assert "killed by signal 9" in status.message


class FlakyCamera:
    """A live camera that streams until ``drop`` is set, reconnects until ``back`` is, then
    streams until closed (a network outage, driven by the test)."""

    def __init__(self, camera_id: str, on_state: Callable[[StateChange], None] | None) -> None:
        self.camera_id = camera_id
        self._on_state = on_state
        self.state = SourceState.CONNECTING
        self.info = SourceInfo(96, 64, 10.0)
        self.stats = SourceStats()
        self.drop, self.back, self._closed = threading.Event(), threading.Event(), threading.Event()

    def _set(self, state: SourceState) -> None:
        previous, self.state = self.state, state
        if self._on_state is not None:
            self._on_state(StateChange(self.camera_id, previous, state, str(state), time.time()))

    def frames(self) -> Iterator[Frame]:
        image = np.zeros((64, 96, 3), np.uint8)
        self._set(SourceState.STREAMING)
        for seq in itertools.count():
            if self.drop.is_set() and not self.back.is_set():
                self._set(SourceState.RECONNECTING)
                while not self.back.wait(0.05):
                    if self._closed.is_set():
                        return
                self._set(SourceState.STREAMING)
            if self._closed.wait(0.05):
                return
            self.stats = SourceStats(decoded=seq + 1, sampled=seq + 1)
            yield Frame(self.camera_id, seq, seq * 0.1, time.time(), image)

    def close(self) -> None:
        self._closed.set()
        self._set(SourceState.ENDED)


def test_a_camera_streaming_again_is_logged_once_per_recovery(
    running: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The decode process logs a camera's trouble as a WARNING but its ``-> streaming`` at
    INFO, and decode processes log at WARNING: a camera coming back after an outage or a
    restart went unlogged. The supervisor says so once per recovery, at INFO, which serve
    shows for ``safewatch.runtime`` (``cli/serve.py``)."""
    cameras: list[FlakyCamera] = []

    def build(spec: WorkerSpec, on_state: Callable[[StateChange], None] | None) -> FlakyCamera:
        cameras.append(FlakyCamera(spec.camera_id, on_state))
        return cameras[-1]

    monkeypatch.setattr(camera_worker, "build_camera_source", build)
    caplog.set_level(logging.INFO, logger="safewatch.runtime.supervisor")

    def source_state() -> str:
        return r.supervisor.statuses()[0].source_state

    def again() -> list[str]:
        return [r.getMessage() for r in caplog.records if "streaming again" in r.getMessage()]

    r = running("thread")
    r.supervisor.apply({"cam": spec("cam", "rtsp://10.0.0.1/stream", loop=False)})
    wait_for(lambda: source_state() == "streaming")
    assert r.frames(2) and again() == [], "the first start is no recovery"
    cameras[0].drop.set()  # the network goes
    wait_for(lambda: source_state() == "reconnecting")
    cameras[0].back.set()  # and comes back
    wait_for(lambda: source_state() == "streaming")
    assert r.frames(2)
    (message,) = again()
    assert re.fullmatch(r"camera cam: streaming again after \d+\.\d s", message), message
    r.supervisor.restart_camera("cam")  # a worker restart is an outage too
    wait_for(lambda: r.supervisor.statuses()[0].restarts == 1)
    wait_for(lambda: source_state() == "streaming")
    assert r.frames(2)
    assert len(again()) == 2, again()


def test_no_worker_is_mistaken_for_dead_while_it_starts(
    clip: Path, running: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spawning a process takes 50-100 ms (more on a busy host): a worker the monitor could see
    # before it started looked dead, was "restarted", and the first one ran on unsupervised.
    original = ThreadWorker.start

    def slow_start(self: ThreadWorker) -> None:
        time.sleep(0.5)
        original(self)

    monkeypatch.setattr(ThreadWorker, "start", slow_start)
    r = running("thread")
    r.supervisor.apply({f"c{i}": spec(f"c{i}", clip) for i in range(2)})
    wait_for(lambda: all(s.state is WorkerState.RUNNING for s in r.supervisor.statuses()))
    time.sleep(0.3)
    assert [s.restarts for s in r.supervisor.statuses()] == [0, 0]
    r.supervisor.stop(timeout=5.0)
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("decode")])


class HeldStart:
    """Holds every worker start after :meth:`arm` until :meth:`release`: the spawn of a restart
    (tens of ms, seconds on a loaded host) made as long as a test needs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.starting, self.started = threading.Event(), threading.Event()
        self._go, self._armed = threading.Event(), False
        original = ThreadWorker.start

        def start(worker: ThreadWorker) -> None:
            if self._armed:
                self.starting.set()
                self._go.wait(30)
            original(worker)
            if self._armed:
                self.started.set()

        monkeypatch.setattr(ThreadWorker, "start", start)

    def arm(self) -> None:
        self._armed = True

    def release(self) -> None:
        self._go.set()


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("decode")]


def restarting_held(
    clip: Path, running: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> tuple[Running, HeldStart]:
    """A running camera whose worker was killed, its restart held while it spawns."""
    held = HeldStart(monkeypatch)
    r = running("thread")
    r.supervisor.apply({"cam": spec("cam", clip)})
    wait_for(lambda: r.state("cam") is WorkerState.RUNNING)
    held.arm()
    r.supervisor.restart_camera("cam")
    assert held.starting.wait(10), "the monitor is starting the new worker"
    return r, held


def test_a_camera_removed_while_its_worker_restarts_leaves_no_worker_running(
    clip: Path, running: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monitor restarts a crashed worker; a reload removes the camera while the new one
    spawns. The removal stopped the old, dead worker and the new one ran on unsupervised (with
    its RTSP session and shared-memory ring) until the server exited."""
    r, held = restarting_held(clip, running, monkeypatch)
    r.supervisor.apply({})
    held.release()
    assert held.started.wait(10)
    wait_for(lambda: not decode_threads())
    assert r.supervisor.camera_ids() == [] and "cam" not in r.supervisor.plans()


def test_a_supervisor_stopped_while_a_worker_restarts_leaves_no_worker_running(
    clip: Path, running: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    r, held = restarting_held(clip, running, monkeypatch)
    stopping = threading.Thread(target=r.supervisor.stop, args=(5.0,))
    stopping.start()
    wait_for(lambda: r.state("cam") is WorkerState.STOPPED)
    held.release()
    stopping.join(30)
    wait_for(lambda: not decode_threads())


def test_a_worker_that_dies_while_the_supervisor_stops_is_not_restarted(
    clip: Path, running: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monitor saw a running camera's worker dead while stop() marked it stopped: its
    restart turned STOPPED into BACKOFF, and the monitor would launch a worker nobody stops.
    The monitor is held in its look at the worker until stop() has marked the camera."""
    looking, go = threading.Event(), threading.Event()
    held = [False]
    alive = ThreadWorker.alive

    def seen_dead(worker: ThreadWorker) -> bool:
        if held[0] and threading.current_thread().name == "supervisor":
            held[0] = False
            looking.set()
            go.wait(30)
            return False  # it died meanwhile
        return alive(worker)

    monkeypatch.setattr(ThreadWorker, "alive", seen_dead)
    r = running("thread")
    r.supervisor.apply({"cam": spec("cam", clip)})
    wait_for(lambda: r.state("cam") is WorkerState.RUNNING)
    held[0] = True
    assert looking.wait(10), "the monitor looks at the worker"
    stopping = threading.Thread(target=r.supervisor.stop, args=(5.0,))
    stopping.start()
    wait_for(lambda: r.state("cam") is WorkerState.STOPPED)
    go.set()
    stopping.join(30)
    assert not stopping.is_alive()
    assert r.state("cam") is WorkerState.STOPPED  # the monitor ended with stop()
    wait_for(lambda: not decode_threads())


def test_the_counters_of_ended_thread_workers_are_folded_not_kept(
    clip: Path, running: Callable[..., Running]
) -> None:
    """A process worker's last counters join the camera's base when its pipe closes; a thread
    worker's were kept per incarnation, one entry more per restart, summed on every status and
    stats report of a crash-looping camera. The totals stay the sum over incarnations."""
    r = running("thread")
    r.supervisor.apply({"cam": spec("cam", clip)})
    handle = r.supervisor._handles["cam"]  # what it keeps is internal; only the test looks

    def restart(count: int) -> None:
        wait_for(lambda: r.supervisor.statuses()[0].stats.decoded > 0)
        decoded = r.supervisor.statuses()[0].stats.decoded
        r.supervisor.restart_camera("cam")
        wait_for(lambda: r.supervisor.statuses()[0].restarts == count)
        assert r.supervisor.statuses()[0].stats.decoded >= decoded  # nothing lost

    for count in range(1, 4):
        restart(count)
    wait_for(lambda: set(handle.stats) <= {handle.incarnation})


class _Retiring:
    """A retired worker that is still alive; asked while the monitor reaps, another thread
    (the apply thread removing a camera) retires ``then`` at that very moment."""

    def __init__(self, supervisor: Supervisor, then: object | None = None) -> None:
        self._supervisor, self._then = supervisor, then

    def alive(self) -> bool:
        if self._then is not None:
            retiring = threading.Thread(target=self._supervisor._retire, args=(self._then,))
            retiring.start()
            retiring.join(10)
        return True


def test_a_worker_retired_while_the_monitor_reaps_is_not_lost(
    running: Callable[..., Running],
) -> None:
    """The reap replaced the retired list with the workers it kept: one the apply thread
    retired meanwhile (a removed camera's) was dropped, never closed nor cleaned up. The old
    window (between the reap's loop and its assignment) cannot be hit on purpose; this guards
    that a worker retired during a reap is kept for the next one."""
    supervisor = running("thread").supervisor
    late = _Retiring(supervisor)
    supervisor._retired.append(_Retiring(supervisor, then=late))  # type: ignore[arg-type]
    supervisor._reap()
    wait_for(lambda: late in supervisor._retired)
