"""One camera's decode worker: source -> motion gate -> shared memory (or the server, in threads).

The worker's only job is to keep up with its camera: decode, sample to the analysis rate, score
motion, and publish each sampled frame without ever waiting for the consumer. Publishing never
blocks on analysis: a process worker writes into its :class:`~safewatch.runtime.shm.SharedRing`
and sends a :class:`~safewatch.runtime.messages.FrameReady` down its pipe; a thread worker hands
the frame to the server directly. Whether the server keeps up is the mailbox's business
(:mod:`safewatch.runtime.mailbox`): the newest frame wins and every frame it replaces is counted.

Process model, measured on the 2-core development host (``python -m bench.runtime decode``: 4 and
8 real RTSP streams of the 640x352 construction clip at 5 fps each, YOLOX-Nano, motion gating off,
thread and process runs interleaved twice; the host was shared, load average 8-14): analysed
frames per CPU-second were 24.2-26.5 with decode threads and 21.6-26.3 with decode processes, and
throughput at saturation differed between rounds of the *same* mode by more than between modes.
So the GIL does not throttle a small host (PyAV and ONNX Runtime release it for their heavy work),
and processes cost up to ~10 % more CPU per frame (a second interpreter, the copy out of shared
memory, the pipe) and 48 MiB of unique memory (USS) per camera. Processes are the default anyway,
for what threads cannot give: a decoder that crashes (FFmpeg on a corrupt stream) or hangs in a
blocking call takes down only itself and is killed and restarted by the supervisor, and its memory
goes back to the system when it goes. ``runtime.decode: thread`` suits a host short of memory.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol

from safewatch import tracing
from safewatch.config.runtime import MotionConfig
from safewatch.config.site import CameraConfig
from safewatch.domain.frame import Frame
from safewatch.errors import SafewatchError
from safewatch.ingest.factory import LiveTiming, open_source
from safewatch.ingest.motion import MotionGate, MotionResult
from safewatch.ingest.source import Source
from safewatch.ingest.state import SourceInfo, SourceState, StateChange
from safewatch.runtime.messages import (
    FrameReady,
    RingCreated,
    SourceReport,
    StatsReport,
    WorkerMessage,
)
from safewatch.runtime.shm import SharedRing

__all__ = [
    "EXIT_FINAL",
    "MessageHandler",
    "ProcessWorker",
    "ThreadWorker",
    "Worker",
    "WorkerSpec",
    "build_camera_source",
    "run_decoder",
]

log = logging.getLogger(__name__)

EXIT_FINAL = 3
"""Exit status of a worker whose source can never deliver again (failed for good, or ended)."""

MessageHandler = Callable[[WorkerMessage], None]
"""Receives a worker's messages in the server process, in the order they were sent."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a decode worker needs; picklable, so a spawned process gets it whole.

    Attributes:
        camera_id: The camera key.
        camera: Its site-file entry.
        base_dir: Folder relative file paths are resolved against.
        motion: Motion-gate settings.
        stall_seconds: No frame for this long: reconnect (live cameras).
        reconnect_cap: Longest delay between reconnect attempts, seconds.
        freeze_seconds: The same picture for this long: ``frozen`` (live cameras; 0: never).
        ring_slots: Shared-memory slots (process workers).
        stats_interval: Seconds between :class:`StatsReport` heartbeats.
        io_timeout: Seconds a network read may block.
        log_level: Logging level of a worker process.
        name: The camera's display name, for status pages. Not the worker's: it takes no part
            in comparing specs, so a reload that renames a camera does not restart it.
    """

    camera_id: str
    camera: CameraConfig
    base_dir: Path
    motion: MotionConfig
    stall_seconds: float = 10.0
    reconnect_cap: float = 30.0
    freeze_seconds: float = 60.0
    ring_slots: int = 4
    stats_interval: float = 0.25
    io_timeout: float = 5.0
    log_level: int = logging.WARNING
    name: str | None = field(default=None, compare=False)


def build_camera_source(
    spec: WorkerSpec, on_state: Callable[[StateChange], None] | None = None
) -> Source:
    """The live source for one camera: a :class:`LiveSource`, or a file played in real time.

    Raises:
        SourceError: A video file is missing or unreadable.
        ConfigError: ``loop`` is set on a camera that is not a file.
    """
    return open_source(
        spec.camera_id,
        spec.camera,
        base_dir=spec.base_dir,
        on_state=on_state,
        live=LiveTiming(
            spec.io_timeout, spec.stall_seconds, spec.reconnect_cap, spec.freeze_seconds
        ),
    )


class _Sink(Protocol):
    """Where :func:`run_decoder` publishes: a pipe (process) or the server itself (thread)."""

    def frame(self, frame: Frame, motion: MotionResult) -> None: ...

    def send(self, message: WorkerMessage) -> None: ...


def run_decoder(spec: WorkerSpec, sink: _Sink, stop: threading.Event) -> SourceState:
    """Decode the camera until ``stop`` is set or the source ends for good.

    A pump thread iterates the source and publishes frames; this thread sends a
    :class:`StatsReport` every ``spec.stats_interval`` (the worker's heartbeat) and closes the
    source when asked to stop.

    Returns:
        The source's last state (``ended`` or ``failed`` when it can never deliver again).
    """

    def on_state(change: StateChange) -> None:
        sink.send(SourceReport(change))

    try:
        source = build_camera_source(spec, on_state)
    except SafewatchError as error:
        now = time.time()
        message = str(error)
        sink.send(
            SourceReport(
                StateChange(
                    spec.camera_id, SourceState.CONNECTING, SourceState.FAILED, message, now
                )
            )
        )
        log.error("camera %s: %s", spec.camera_id, message)
        return SourceState.FAILED
    gate = MotionGate(
        spec.motion.threshold, spec.motion.pixel_threshold, enabled=spec.motion.enabled
    )
    last_frame_at: list[float | None] = [None]
    done = threading.Event()
    failure: list[BaseException] = []

    def pump() -> None:
        attributes = {"camera": spec.camera_id}
        frames = iter(source.frames())
        try:
            while True:
                with tracing.span("decode", attributes):
                    frame = next(frames, None)
                if frame is None:
                    break
                sink.frame(frame, gate.check(frame.image))
                last_frame_at[0] = time.time()
                if stop.is_set():
                    break
        except BaseException as error:  # reported by the heartbeat thread, then re-raised
            failure.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=pump, name=f"decode-{spec.camera_id}", daemon=True)
    thread.start()

    def report() -> None:
        info = source.info
        sink.send(
            StatsReport(
                spec.camera_id,
                source.stats,
                SourceInfo(info.width, info.height, info.fps),
                time.time(),
                last_frame_at[0],
            )
        )

    try:
        while not done.is_set() and not stop.wait(spec.stats_interval):
            report()
    finally:
        source.close()
        thread.join(timeout=spec.io_timeout + 1.0)
        with contextlib.suppress(Exception):
            report()
    if failure:
        raise failure[0]
    return source.state


# -- process workers ------------------------------------------------------------------------------


class _PipeSink:
    """Publishes into a shared-memory ring and announces each frame on the pipe."""

    def __init__(
        self, connection: Connection, camera_id: str, slots: int, server: int | None
    ) -> None:
        self._connection = connection
        self._camera_id = camera_id
        self._slots = slots
        self._server = server  # named in its rings (runtime.shm.sweep_orphan_rings)
        self._ring: SharedRing | None = None
        self._lock = threading.Lock()  # the pump and the heartbeat threads both send

    def frame(self, frame: Frame, motion: MotionResult) -> None:
        image = frame.image
        shape = (int(image.shape[0]), int(image.shape[1]), 3)
        ring = self._ring
        if ring is None or ring.spec.shape != shape:
            ring = SharedRing.create(shape, self._slots, server=self._server)
            self.send(RingCreated(self._camera_id, ring.spec))
            self._retire()
            self._ring = ring
        ref = ring.write(image)
        self.send(
            FrameReady(
                frame.camera_id,
                frame.seq,
                frame.pts,
                frame.timestamp,
                shape,
                motion.score,
                motion.moving,
                time.time(),
                ref=ref,
            )
        )

    def send(self, message: WorkerMessage) -> None:
        with self._lock:
            self._connection.send(message)

    def close(self) -> None:
        self._retire()
        with contextlib.suppress(OSError):
            self._connection.close()

    def _retire(self) -> None:
        # The server keeps its own mapping of a retired ring until it has read what it needs.
        ring, self._ring = self._ring, None
        if ring is not None:
            ring.unlink()
            ring.close()


def _watch_parent(stop: threading.Event) -> None:
    """Stop the worker if the server process disappears (it was killed, not stopped)."""
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


def worker_main(spec: WorkerSpec, connection: Connection) -> None:
    """Entry point of a decode process (spawned, so it imports only what decoding needs)."""
    logging.basicConfig(
        level=spec.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from safewatch.config.log_redaction import install_redaction
    from safewatch.config.secrets import register_site_secrets

    install_redaction()
    tracing.configure_site(None, "decode")  # the server put the site's endpoint in the env
    register_site_secrets(spec.camera)  # its password, masked by value in this process's logs
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    threading.Thread(target=_watch_parent, args=(stop,), daemon=True).start()
    server = multiprocessing.parent_process()  # the server that started this worker
    sink = _PipeSink(
        connection, spec.camera_id, spec.ring_slots, None if server is None else server.pid
    )
    final = SourceState.ENDED
    try:
        final = run_decoder(spec, sink, stop)
    except (BrokenPipeError, EOFError):
        pass  # the server went away
    finally:
        sink.close()
        tracing.shutdown()  # bounded: the server kills a worker that takes too long to stop
    if not stop.is_set() and final.is_final:
        os._exit(EXIT_FINAL)


class Worker(Protocol):
    """The server's handle on one decode worker (a process or a thread)."""

    camera_id: str

    @property
    def pid(self) -> int | None:
        """Operating-system process id (the server's own for a thread worker)."""
        ...

    @property
    def exitcode(self) -> int | None:
        """``None`` while running; the exit status once it has ended."""
        ...

    def start(self) -> None:
        """Start decoding."""
        ...

    def alive(self) -> bool:
        """Whether it is still running."""
        ...

    def stop(self, timeout: float) -> None:
        """Ask it to stop and wait up to ``timeout`` seconds; kill a process that does not."""
        ...

    def kill(self) -> None:
        """Stop it now (a process is killed; a stuck thread can only be abandoned)."""
        ...


class ProcessWorker:
    """A decode worker in its own spawned process, talking through a one-way pipe.

    Args:
        spec: What to decode.
        context: ``multiprocessing`` context; ``spawn`` by default (forking a process that runs
            ONNX Runtime and HTTP threads is unsafe).
    """

    def __init__(
        self, spec: WorkerSpec, context: multiprocessing.context.BaseContext | None = None
    ) -> None:
        self.camera_id = spec.camera_id
        self.spec = spec
        ctx = context or multiprocessing.get_context("spawn")
        self.connection, child = ctx.Pipe(duplex=False)
        self._child = child
        self._process: BaseProcess = ctx.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(spec, child),
            name=f"safewatch-decode-{spec.camera_id}",
            daemon=True,
        )
        self._lock = threading.Lock()
        self._closed = False
        self._pid: int | None = None
        self._exitcode: int | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id once started (kept after the process object is closed)."""
        return self._pid

    @property
    def exitcode(self) -> int | None:
        """The process's exit status (negative: killed by that signal)."""
        with self._lock:
            if not self._closed:
                self._exitcode = self._process.exitcode
            return self._exitcode

    def start(self) -> None:
        """Spawn the process."""
        self._process.start()
        self._pid = self._process.pid
        self._child.close()  # only the child writes; EOF on our end now means it is gone

    def alive(self) -> bool:
        """Whether the process runs."""
        with self._lock:
            return not self._closed and self._pid is not None and self._process.is_alive()

    def stop(self, timeout: float) -> None:
        """SIGTERM (the worker closes its source and unlinks its ring), then SIGKILL."""
        if self.alive():
            self._process.terminate()
            self._process.join(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.alive():
            self._process.kill()
            self._process.join(5.0)

    def close(self) -> None:
        """Release the pipe and the process object (once it has ended); idempotent."""
        with contextlib.suppress(OSError):
            self.connection.close()
        with self._lock:
            if self._closed or self._process.is_alive():
                return
            self._exitcode = self._process.exitcode
            self._closed = True
            with contextlib.suppress(ValueError):
                self._process.close()


class _CallbackSink:
    """Hands frames and reports straight to the server (thread workers)."""

    def __init__(self, handler: MessageHandler) -> None:
        self._handler = handler

    def frame(self, frame: Frame, motion: MotionResult) -> None:
        image = frame.image
        shape = (int(image.shape[0]), int(image.shape[1]), 3)
        self._handler(
            FrameReady(
                frame.camera_id,
                frame.seq,
                frame.pts,
                frame.timestamp,
                shape,
                motion.score,
                motion.moving,
                time.time(),
                image=image,
            )
        )

    def send(self, message: WorkerMessage) -> None:
        self._handler(message)


class ThreadWorker:
    """A decode worker on a thread of the server process.

    Args:
        spec: What to decode.
        handler: Receives the worker's messages (on the worker's threads).
    """

    def __init__(self, spec: WorkerSpec, handler: MessageHandler) -> None:
        self.camera_id = spec.camera_id
        self.spec = spec
        self._handler = handler
        self._stop = threading.Event()
        self._exitcode: int | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"decode-main-{spec.camera_id}", daemon=True
        )

    @property
    def pid(self) -> int | None:
        """The server's own process id."""
        return os.getpid()

    @property
    def exitcode(self) -> int | None:
        """0 after a requested stop, :data:`EXIT_FINAL` when the source ended, 1 on a crash."""
        return self._exitcode

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def kill(self) -> None:
        """A thread cannot be killed: ask it to stop and abandon it (it is a daemon)."""
        self._stop.set()

    def _run(self) -> None:
        try:
            final = run_decoder(self.spec, _CallbackSink(self._handler), self._stop)
        except Exception:
            log.exception("camera %s: decode thread crashed", self.camera_id)
            self._exitcode = 1
            return
        stopped = self._stop.is_set()
        self._exitcode = EXIT_FINAL if final.is_final and not stopped else 0
