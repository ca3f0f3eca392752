"""The server's side of its API process: spawn it, feed it, answer it, restart it.

Why the HTTP server has a process of its own: in one interpreter, request handling and analysis
share the GIL. Measured on the 2-core development host with the example site (issue 13), 50
clients on the incident list and statistics for 60 s cut the 5 fps camera to 2.45 analysed fps
(p95 2.9 s), and a login flood cut a 2 fps camera to 1.13: every request's Python (routing,
validation, serialisation, password hashing) ran while the rules thread waited for the GIL, and
operating-system priorities cannot tell two threads of one interpreter apart. In a separate
process the API has its own interpreter, and its ``nice`` level (10 by default) lets the kernel
give the analysis the CPU first whenever both want it; ``bench/api_load.py`` measures what each
lever (process, priority, cached queries) does. Under the same 50 clients the camera kept 0.97
of its idle rate at nice 10 (0.91 at nice 0, 0.98 at nice 19; one process: 0.74), with the API
spending 2.3 ms of CPU per answer instead of 9.4 (docs/serve.md has the table and the load
averages). 10 rather than 19: at 19 a host whose cameras saturate the CPU would leave the
dashboard about 1.5 % of a core, unusable exactly when an operator needs it; 10 leaves it about
10 %.

What the API needs from the analysis travels as the typed messages of
:mod:`safewatch.runtime.api_messages`:

* **pushes**, sent by one sender thread from a coalescing outbox, so the rules thread only stores
  references and never waits on the pipe: the newest frame per camera (a frame not sent before a
  newer one arrives is replaced, like the mailbox's; its pixels are copied into the camera's live
  shared-memory ring by the sender, not by the rules thread), incident changes (bounded, drops
  counted), rule generations and reload outcomes (polled each round, sent when they change), the
  site file after a reload;
* **requests** from the API process (readiness, liveness, metrics, a rule reload after the
  dashboard saved a file): liveness is answered at once on the receiver thread (it reads only
  in-memory state), every other request on one of :data:`ANSWER_WORKERS` answer threads. Not
  all on the receiver thread, because one slow answer would hold up every later message: a
  readiness question whose ``SELECT 1`` waits on a stalled database (or a long rule reload) kept
  the liveness answer past the API's 10 s, so ``/healthz`` said ``hung``, and the ping
  answers (:class:`~safewatch.runtime.api_messages.Pong`) queued behind it until the process
  was killed as hung, dropping every WebSocket. Replies may therefore leave out of order; the API
  process matches them by ``request_id``, and a reply is only sent on the pipe its request came
  from (one to a process that was restarted meanwhile would match a new request's id).

The listening socket is bound here, in the server, and handed to the child, so "address in use"
is a start-up error of ``serve``, port 0 is resolved before the child exists, and a restarted API
process (it died: the keeper calls :meth:`ApiLink.check`) serves the same socket, with the
connections that arrived meanwhile waiting in its backlog.

A process can also hang without dying: stopped (``SIGSTOP``, a debugger), or its event loop stuck
in a call that never returns. Then the socket still accepts connections into the backlog and
nobody answers them. So the keeper also sends a :class:`~safewatch.runtime.api_messages.Ping`
every :data:`PING_SECONDS`, answered from the API process's event loop (not from its pipe
thread, which a stuck loop would not stop); a ping unanswered for :data:`HANG_SECONDS` (or a
restarted process not serving within :data:`HANG_SECONDS`) gets the process killed and
restarted like a dead one, and counted with the reason ``hung``. The timeout is generous on
purpose: a loaded host (the API runs at ``nice`` 10) may delay an answer by seconds, and a
needless restart drops every open WebSocket.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol

from safewatch.config.loader import LoadedSite
from safewatch.domain import Frame, RuleEvent, TrackedFrame
from safewatch.errors import ConfigError
from safewatch.incidents.manager import IncidentChange
from safewatch.rules.reload import ReloadStatus, RuleGeneration
from safewatch.runtime.api_messages import (
    ApiBound,
    ApiReady,
    CameraGone,
    IncidentPush,
    LiveFramePush,
    Ping,
    Pong,
    Reply,
    Request,
    RulesPush,
    Shutdown,
    SitePush,
)
from safewatch.runtime.health import Liveness, Readiness
from safewatch.runtime.shm import SharedRing

__all__ = ["ApiLink", "ApiProcessSpec", "ApiTarget"]

log = logging.getLogger(__name__)

LIVE_RING_SLOTS = 4
"""Slots of a camera's live ring: the API process reads a pushed frame within milliseconds; four
slots leave it three newer frames of slack before a slot it was told about is overwritten."""

_INCIDENT_BACKLOG = 1024
_RESTART_BACKOFF = 1.0
PING_SECONDS = 5.0
"""How often the server asks the API process whether its event loop still runs."""
HANG_SECONDS = 60.0
"""How long a ping (or a restarted process's start) may go unanswered before the process is
killed and restarted (see the module doc for why so long)."""
_ROUND_SECONDS = 0.25
"""How often the sender looks at the rule holder when nothing else wakes it."""
ANSWER_WORKERS = 3
"""Threads answering the API process's slow requests (readiness, metrics, rule reloads): a few,
so a readiness question stuck on the database leaves others to answer (module doc)."""


@dataclass(frozen=True, slots=True)
class ApiProcessSpec:
    """What the API process is started with (pickled to it once per start).

    Attributes:
        site: The site file in force.
        rules_path: The rules folder or file the dashboard edits.
        rules: The rule generation in force and the latest reload outcome.
        nice: Added to the process's ``nice`` value (0: same priority as the analysis).
        log_level: Logging level of the ``safewatch`` loggers in the API process.
        query_cache_seconds: How long the incident list and statistics may be served from the
            cache when no incident change arrived (0: no cache).
        follow_bus: Take incident changes from the cluster's bus (every node's, in chain order:
            :class:`~safewatch.api.bus_feed.BusFeeds`) instead of this server's pushes
            (``serve --cluster``).
    """

    site: LoadedSite
    rules_path: Path
    rules: RulesPush
    nice: int = 10
    log_level: int = logging.WARNING
    query_cache_seconds: float = 2.0
    follow_bus: bool = False


class ApiTarget(Protocol):
    """What the API process asks of the server (the :class:`RuntimeService` implements it)."""

    def liveness(self) -> Liveness:
        """``/healthz``."""
        ...

    def readiness(self) -> Readiness:
        """``/readyz``."""
        ...

    def metrics(self) -> bytes:
        """``/metrics``."""
        ...

    def reload_rules(self) -> ReloadStatus:
        """Reload the rule files now."""
        ...

    def acknowledge_dropped(self, rule_ids: Sequence[str]) -> ReloadStatus:
        """An admin accepts that these dropped rules are gone on purpose."""
        ...

    def rule_generation(self) -> RuleGeneration:
        """The rule set in force."""
        ...

    def rule_status(self) -> ReloadStatus:
        """The latest reload outcome."""
        ...


class _Outbox:
    """Pushes waiting for the sender thread: newest frame per camera, incidents, control."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frames: dict[str, tuple[TrackedFrame, Frame, tuple[RuleEvent, ...]]] = {}
        self._incidents: deque[IncidentPush] = deque(maxlen=_INCIDENT_BACKLOG)
        self._control: deque[ApiBound] = deque()
        self.frames_replaced = 0
        self.incidents_dropped = 0

    def frame(self, tracked: TrackedFrame, frame: Frame, events: tuple[RuleEvent, ...]) -> None:
        with self._cond:
            if tracked.camera_id in self._frames:
                self.frames_replaced += 1
            self._frames[tracked.camera_id] = (tracked, frame, events)
            self._cond.notify()

    def incident(self, push: IncidentPush) -> None:
        with self._cond:
            if len(self._incidents) == self._incidents.maxlen:
                self.incidents_dropped += 1
            self._incidents.append(push)
            self._cond.notify()

    def control(self, message: ApiBound) -> None:
        with self._cond:
            self._control.append(message)
            self._cond.notify()

    def take(
        self, timeout: float
    ) -> tuple[list[ApiBound], dict[str, tuple[TrackedFrame, Frame, tuple[RuleEvent, ...]]]]:
        with self._cond:
            if not (self._frames or self._incidents or self._control):
                self._cond.wait(timeout)
            messages: list[ApiBound] = [*self._control, *self._incidents]
            frames = self._frames
            self._control.clear()
            self._incidents.clear()
            self._frames = {}
            return messages, frames

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()
            self._incidents.clear()
            self._control.clear()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()


class _LiveRings:
    """One shared-memory ring per camera for the pixels of its live frames (sender thread only)."""

    def __init__(self) -> None:
        self._rings: dict[str, SharedRing] = {}

    def ring(self, camera_id: str, shape: tuple[int, int, int]) -> SharedRing:
        ring = self._rings.get(camera_id)
        if ring is not None and ring.spec.shape == shape:
            return ring
        if ring is not None:  # a new resolution: a new ring
            self.drop(camera_id)
        ring = SharedRing.create(shape, LIVE_RING_SLOTS)
        self._rings[camera_id] = ring
        return ring

    def drop(self, camera_id: str) -> None:
        ring = self._rings.pop(camera_id, None)
        if ring is not None:
            ring.unlink()
            ring.close()

    def close(self) -> None:
        for camera_id in list(self._rings):
            self.drop(camera_id)


class ApiLink:
    """The API process of a running server and the two threads that talk to it.

    Args:
        spec: What the process starts with (the rule generation is refreshed at every start).
        listener: The listening socket (see :func:`~safewatch.runtime.http_server.bind_listener`);
            the link does not close it.
        target: Answers the API process's requests and holds the rule set.
        context: ``multiprocessing`` context; ``spawn`` (forking a process that runs ONNX
            Runtime threads is unsafe).
        restarted: Called with the reason (``exited`` or ``hung``) at every restart (the
            server counts them in ``/metrics``).
        ping_seconds: How often :meth:`check` pings a serving process.
        hang_seconds: How long a ping or a start may go unanswered.
    """

    def __init__(
        self,
        spec: ApiProcessSpec,
        listener: socket.socket,
        target: ApiTarget,
        context: multiprocessing.context.BaseContext | None = None,
        *,
        restarted: Callable[[str], None] | None = None,
        ping_seconds: float = PING_SECONDS,
        hang_seconds: float = HANG_SECONDS,
    ) -> None:
        self._spec = spec
        self._listener = listener
        self._target = target
        self._ctx = context or multiprocessing.get_context("spawn")
        self._outbox = _Outbox()
        self._rings = _LiveRings()
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._connection: Connection | None = None
        self._process: BaseProcess | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._sender: threading.Thread | None = None
        self._receiver: threading.Thread | None = None
        self._sent_rules: tuple[int, ReloadStatus] | None = None
        self._started_at = 0.0
        self._backoff = _RESTART_BACKOFF / 2
        self._next_restart = 0.0
        self._restarted = restarted
        self._ping_seconds = ping_seconds
        self._hang_seconds = hang_seconds
        self._ping_seq = 0
        self._ping_sent = 0.0
        self._ping_open = False
        self._killed_hung = False
        self._questions: queue.SimpleQueue[tuple[Request, Connection | None] | None] = (
            queue.SimpleQueue()
        )
        self._answerers: list[threading.Thread] = []
        self.restarts = 0
        self.hangs = 0

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The API process's id (``None`` before it started)."""
        process = self._process
        return None if process is None else process.pid

    def start(self, timeout: float = 300.0) -> None:
        """Spawn the API process and return once it serves.

        The wait is long (five minutes) because a live process that has not reported yet is
        almost always a starved one, not a hung one: on a host running at ten times its cores
        the API process's imports alone took over a minute, and failing the whole server's
        start-up for that loses more than waiting does. A warning is logged after a minute; a
        process that exits fails the start at once.

        Raises:
            ConfigError: It exited or did not report ready within ``timeout`` seconds.
        """
        self._spawn()
        self._sender = threading.Thread(target=self._send_loop, name="api-sender", daemon=True)
        self._sender.start()
        self._wait_ready(timeout)

    def _spawn(self) -> None:
        ours, theirs = self._ctx.Pipe(duplex=True)
        spec = self._spec
        rules = self._rules_push()
        self._sent_rules = (rules.generation.number, rules.status)
        from safewatch.runtime.api_process import api_main

        process: BaseProcess = self._ctx.Process(  # type: ignore[attr-defined]
            target=api_main,
            args=(
                ApiProcessSpec(
                    site=spec.site,
                    rules_path=spec.rules_path,
                    rules=rules,
                    nice=spec.nice,
                    log_level=spec.log_level,
                    query_cache_seconds=spec.query_cache_seconds,
                    follow_bus=spec.follow_bus,
                ),
                self._listener,
                theirs,
            ),
            name="safewatch-api",
            daemon=True,
        )
        self._ready.clear()
        self._outbox.clear()
        self._ping_open = False
        self._started_at = self._ping_sent = time.monotonic()
        process.start()
        theirs.close()
        with self._state_lock:
            self._connection = ours
            self._process = process
        self._receiver = threading.Thread(
            target=self._receive_loop, args=(ours,), name="api-receiver", daemon=True
        )
        self._receiver.start()

    def _wait_ready(self, timeout: float) -> None:
        started = time.monotonic()
        warned = False
        while not self._ready.wait(0.1):
            process = self._process
            if process is None or not process.is_alive():
                code = None if process is None else process.exitcode
                raise ConfigError(f"the API process exited at start-up (exit status {code})")
            waited = time.monotonic() - started
            if waited > timeout:
                raise ConfigError(f"the API process did not start within {timeout:g} s")
            if not warned and waited > min(60.0, timeout / 2):
                warned = True
                log.warning(
                    "the API process has not reported ready after %.0f s (host overloaded?); "
                    "waiting up to %g s",
                    waited,
                    timeout,
                )

    def check(self) -> bool:
        """Restart the API process if it died or hangs (the keeper calls this, every second or
        so); ``True`` if restarted. A serving process is pinged here (module doc).

        Restarts back off (1 s doubling to 30 s, reset once a process served for a minute), so
        a process that dies at start-up does not spin.
        """
        process = self._process
        if self._stopping.is_set() or process is None:
            return False
        now = time.monotonic()
        if process.is_alive():
            hang = self._hang(now)
            if hang is None:
                return False
            log.error("the API process (pid %s) %s; killing and restarting it", process.pid, hang)
            self.hangs += 1
            self._killed_hung = True
            process.kill()  # SIGKILL also ends a stopped process
            process.join(5.0)
        if now < self._next_restart:
            return False
        served = now - self._started_at
        self._backoff = _RESTART_BACKOFF if served > 60.0 else min(30.0, self._backoff * 2)
        self._next_restart = now + self._backoff
        reason = "hung" if self._killed_hung else "exited"
        if not self._killed_hung:
            log.error("the API process exited (status %s); restarting it", process.exitcode)
        self._killed_hung = False
        self.restarts += 1
        if self._restarted is not None:
            self._restarted(reason)
        self._close_connection()
        self._spawn()
        return True

    def _hang(self, now: float) -> str | None:
        """Why the live process counts as hung, or ``None``; sends the next ping when due.

        The ping goes through the outbox, so this (the keeper's) thread never waits on a pipe
        that a stopped process no longer empties.
        """
        waited = now - self._ping_sent
        if not self._ready.is_set():
            if waited > self._hang_seconds:
                return f"did not start serving within {self._hang_seconds:g} s"
            return None
        if self._ping_open:
            if waited > self._hang_seconds:
                return f"did not answer a liveness ping in {self._hang_seconds:g} s"
            return None
        if waited >= self._ping_seconds:
            self._ping_seq += 1
            self._ping_open = True
            self._ping_sent = now
            self._outbox.control(Ping(self._ping_seq))
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the API process to finish its requests and exit; kill it if it does not.

        Uvicorn gives open requests and WebSockets 2 s, then cancels them; ``timeout`` leaves
        room for a loaded host.
        """
        self._stopping.set()
        process = self._process
        if process is not None and process.is_alive():
            self._send(Shutdown(), lock_timeout=2.0)  # a stopped process may block the pipe
            process.join(timeout)
            if process.is_alive():
                log.warning("the API process did not stop in %g s; killing it", timeout)
                process.kill()
                process.join(5.0)
        self._outbox.wake()
        for _ in self._answerers:
            self._questions.put(None)
        if self._sender is not None:
            self._sender.join(timeout)
        self._close_connection()
        self._rings.close()

    def _close_connection(self) -> None:
        with self._state_lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.close()

    # -- pushes (any thread) ------------------------------------------------------------------

    def on_frame(
        self,
        frame: Frame,
        tracked: TrackedFrame,
        events: Sequence[RuleEvent],
        changes: Sequence[IncidentChange],
    ) -> None:
        """The runtime's frame listener: keep the frame for the sender, queue the changes.

        Runs on the rules thread, so it only stores references (the analysed frame owns its
        pixels and nobody modifies them).
        """
        self._outbox.frame(tracked, frame, tuple(events))
        self.on_changes(changes)

    def on_changes(self, changes: Sequence[IncidentChange]) -> None:
        """Queue incident changes for the API process, with or without a frame (a camera
        gone dark or stopped closes its incidents with no frame to carry them)."""
        for change in changes:
            self._outbox.incident(IncidentPush(str(change.kind), change.incident))

    def camera_gone(self, camera_id: str) -> None:
        """A camera stopped: the API forgets its last frame."""
        self._outbox.control(CameraGone(camera_id))

    def site_changed(self, site: LoadedSite) -> None:
        """The site file in force changed."""
        self._spec = ApiProcessSpec(
            site=site,
            rules_path=self._spec.rules_path,
            rules=self._spec.rules,
            nice=self._spec.nice,
            log_level=self._spec.log_level,
            query_cache_seconds=self._spec.query_cache_seconds,
            follow_bus=self._spec.follow_bus,
        )
        self._outbox.control(SitePush(site))

    @property
    def dropped(self) -> dict[str, int]:
        """Pushes never sent: frames replaced by newer ones, incident notices over the backlog."""
        return {
            "frames_replaced": self._outbox.frames_replaced,
            "incidents_dropped": self._outbox.incidents_dropped,
        }

    # -- the threads --------------------------------------------------------------------------

    def _rules_push(self) -> RulesPush:
        return RulesPush(self._target.rule_generation(), self._target.rule_status())

    def _send(
        self, message: ApiBound, lock_timeout: float = -1, via: Connection | None = None
    ) -> bool:
        """Send one message (any thread: the lock keeps messages whole); with ``via``, only if
        that is still the pipe of the running process."""
        if not self._send_lock.acquire(timeout=lock_timeout):
            return False
        try:
            connection = self._connection
            if connection is None or (via is not None and connection is not via):
                return False
            try:
                connection.send(message)
            except (OSError, ValueError):  # the API process is gone; the keeper restarts it
                return False
            return True
        finally:
            self._send_lock.release()

    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            messages, frames = self._outbox.take(_ROUND_SECONDS)
            if self._stopping.is_set():
                break
            try:
                self._push_rules_if_changed()
                for message in messages:
                    if isinstance(message, CameraGone):
                        self._rings.drop(message.camera_id)
                    self._send(message)
                for camera_id, (tracked, frame, events) in frames.items():
                    image = frame.image
                    shape = (int(image.shape[0]), int(image.shape[1]), 3)
                    ring = self._rings.ring(camera_id, shape)
                    slot = ring.write(image)
                    push = LiveFramePush(tracked, events, ring.spec, slot, frame.published_at)
                    self._send(push)
            except Exception:  # never let one bad push end the live feed
                log.exception("pushing to the API process")

    def _push_rules_if_changed(self) -> None:
        status = self._target.rule_status()
        generation = self._target.rule_generation()
        if self._sent_rules == (generation.number, status):
            return
        self._sent_rules = (generation.number, status)
        self._send(RulesPush(generation, status))

    def _receive_loop(self, connection: Connection) -> None:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                return
            self._received(message, connection)

    def _received(self, message: object, connection: Connection | None = None) -> None:
        """One message from the API process (receiver thread), which came on ``connection``.

        Nothing here may wait on the database or a rule reload (module doc): liveness is
        answered at once, other requests go to the answer threads.
        """
        if isinstance(message, ApiReady):
            self._ping_sent = time.monotonic()  # the first ping is due a period from now
            self._ready.set()
        elif isinstance(message, Pong):
            if message.seq == self._ping_seq:
                self._ping_open = False
        elif isinstance(message, Request):
            if message.kind == "liveness":
                self._send(self._answer(message), via=connection)
            else:
                self._start_answerers()
                self._questions.put((message, connection))

    def _start_answerers(self) -> None:
        """Start the answer threads on the first slow request."""
        with self._state_lock:  # a restart's new receiver thread may overlap the old one
            while len(self._answerers) < ANSWER_WORKERS:
                thread = threading.Thread(
                    target=self._answer_loop,
                    name=f"api-answer-{len(self._answerers) + 1}",
                    daemon=True,  # one stuck on a stalled database must not hold up the exit
                )
                thread.start()
                self._answerers.append(thread)

    def _answer_loop(self) -> None:
        while (question := self._questions.get()) is not None:
            request, connection = question
            self._send(self._answer(request), via=connection)

    def _answer(self, request: Request) -> Reply:
        """The reply to ``request``; never raises (an answer thread must outlive any failure)."""
        try:
            handlers: dict[str, Callable[[], Liveness | Readiness | bytes | RulesPush]] = {
                "liveness": self._target.liveness,
                "readiness": self._target.readiness,
                "metrics": self._target.metrics,
                "reload_rules": self._reload_rules,
                "acknowledge_dropped": lambda: self._acknowledge(request.args),
            }
            return Reply(request.request_id, handlers[request.kind]())
        except Exception as error:
            log.exception("answering the API process's %s request", request.kind)
            return Reply(request.request_id, None, error=f"{type(error).__name__}: {error}")

    def _acknowledge(self, rule_ids: Sequence[str]) -> RulesPush:
        self._target.acknowledge_dropped(rule_ids)
        push = self._rules_push()
        self._sent_rules = (push.generation.number, push.status)
        return push

    def _reload_rules(self) -> RulesPush:
        self._target.reload_rules()
        push = self._rules_push()
        self._sent_rules = (push.generation.number, push.status)
        return push
