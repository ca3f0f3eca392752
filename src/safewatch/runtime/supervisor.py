"""The supervisor: starts, watches, restarts and stops the cameras' decode workers.

Each camera has one worker (a spawned process, or a thread; see
:mod:`safewatch.runtime.camera_worker`) and a handle here that outlives its incarnations. Two
threads keep them going:

* the *receiver* reads every process worker's pipe (one pipe per worker, so a killed worker can
  never corrupt a queue the others share) and turns messages into effects: a frame goes to the
  mailbox, a new ring to the ring cache, a state change and the counters to the handle;
* the *monitor* (every 0.2 s) restarts a worker that exited unexpectedly, with capped exponential
  backoff, and kills and restarts one that made no progress (no frame decoded, no reconnect
  attempt, no report) for ``watchdog.progress_seconds``. A camera that is merely unreachable is
  not a stuck worker: its source reconnects by itself (no frame for ``stall_seconds`` ->
  reconnect), and every attempt counts as progress.

Reload (:meth:`Supervisor.apply`) compares the wanted workers with the running ones: new cameras
start, removed ones stop (their incidents are closed first, in order with their frames), changed
ones restart; the others are not touched, not even their process.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from typing import Literal

import psutil

from safewatch.config.runtime import DecodeMode, WatchdogConfig
from safewatch.ingest.backoff import STABLE_SECONDS, Backoff
from safewatch.ingest.state import SourceInfo, SourceState, SourceStats
from safewatch.runtime.camera_worker import (
    EXIT_FINAL,
    ProcessWorker,
    ThreadWorker,
    Worker,
    WorkerSpec,
)
from safewatch.runtime.inference import CameraPlan
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.messages import (
    FrameReady,
    RingCreated,
    SourceReport,
    StatsReport,
    WorkerMessage,
)
from safewatch.runtime.rates import RateMeter
from safewatch.runtime.rings import RingCache

__all__ = ["ReloadPlan", "Supervisor", "WorkerState", "WorkerStatus"]

log = logging.getLogger(__name__)

_MONITOR_INTERVAL = 0.2
_MEMORY_INTERVAL = 2.0
_DOWN = (SourceState.STALLED, SourceState.FROZEN, SourceState.RECONNECTING)
"""Source states of a camera that is away; streaming after one is logged as a recovery."""


class WorkerState(enum.StrEnum):
    """Lifecycle of a camera's worker, as ``/readyz`` shows it."""

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """A handle's state for status pages; counters summed over incarnations."""

    camera_id: str
    name: str
    state: WorkerState
    source_state: str
    message: str
    pid: int | None
    incarnation: int
    restarts: int
    fps_target: float
    stats: SourceStats
    info: SourceInfo
    decode_fps: float
    last_frame_at: float | None
    memory_bytes: int | None


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What :meth:`Supervisor.apply` did, by camera id."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


@dataclass(slots=True)
class _Handle:
    spec: WorkerSpec
    backoff: Backoff
    worker: Worker | None = None
    incarnation: int = 0
    state: WorkerState = WorkerState.STARTING
    started: float = 0.0
    restarts: int = 0
    next_start: float | None = None
    stats: dict[int, SourceStats] = field(default_factory=dict)
    base: SourceStats = field(default_factory=SourceStats)
    info: SourceInfo = field(default_factory=lambda: SourceInfo(0, 0, None))
    source_state: SourceState = SourceState.CONNECTING
    message: str = "starting"
    progress: int = -1
    last_progress: float = 0.0
    last_frame_at: float | None = None
    ring: str | None = None
    memory: int | None = None
    decode_rate: RateMeter = field(default_factory=RateMeter)
    down_since: float | None = None  # (clock) stalled, reconnecting or restarting since then


def _add(a: SourceStats, b: SourceStats) -> SourceStats:
    return SourceStats(
        decoded=a.decoded + b.decoded,
        sampled=a.sampled + b.sampled,
        dropped=a.dropped + b.dropped,
        bad_packets=a.bad_packets + b.bad_packets,
        reconnects=a.reconnects + b.reconnects,
        untimed=a.untimed + b.untimed,
        frozen=a.frozen + b.frozen,
    )


class Supervisor:
    """Run one decode worker per camera and keep it running.

    Args:
        mode: ``process`` or ``thread`` workers.
        mailbox: Where frames go.
        rings: The ring cache (process workers).
        watchdog: Stall, progress and restart-backoff settings.
        on_camera_stopped: Called (from the caller of :meth:`apply` or :meth:`stop_camera`) after
            a camera's worker stopped for good or for a reconfiguration, so its episodes and
            incidents can be finished.
        on_camera_ended: Called (from the monitor thread) with the camera and the incarnation
            of its worker that ended for good (a video file played to its end), so its episodes
            can be finished after that worker's last frame.
        clock: Monotonic clock.
        start_method: How decode processes start: ``spawn`` (a fresh interpreter that imports
            the decoder, about 2 s of CPU; 6-14 s measured at load 20 on 2 cores) or
            ``forkserver`` (forked from a server process that imported it once: 0.2-0.5 s to
            the first frame at load 10, against 2.1-2.2 s spawned). ``serve --cluster`` uses
            the fork server, so a camera taken over or handed over is analysed again sooner.
    """

    def __init__(
        self,
        *,
        mode: DecodeMode,
        mailbox: FrameMailbox,
        rings: RingCache,
        watchdog: WatchdogConfig,
        on_camera_stopped: Callable[[str], None] | None = None,
        on_camera_ended: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        start_method: Literal["spawn", "forkserver"] = "spawn",
    ) -> None:
        self.mode = mode
        self._context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":  # only what decoding needs, imported once
            self._context.set_forkserver_preload([ProcessWorker.__module__])
        self._mailbox = mailbox
        self._rings = rings
        self._watchdog = watchdog
        self._on_camera_stopped = on_camera_stopped
        self._on_camera_ended = on_camera_ended
        self._clock = clock
        self._lock = threading.RLock()
        self._apply_lock = threading.Lock()
        self._handles: dict[str, _Handle] = {}
        self._plans: dict[str, CameraPlan] = {}
        self._links: dict[Connection, tuple[_Handle, int]] = {}
        self._thread_links: dict[ThreadWorker, tuple[_Handle, int]] = {}  # folded by _reap
        self._retired: list[Worker] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._memory_at = 0.0
        self._incarnations = itertools.count(1)  # unique per server: a restarted or reconfigured
        # camera's frames can never pass for its previous worker's

    # -- public API --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the receiver and monitor threads (workers start through :meth:`apply`)."""
        for name, target in (("supervisor-receiver", self._receive), ("supervisor", self._monitor)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def plans(self) -> Mapping[str, CameraPlan]:
        """The inference plans of the running cameras (an immutable snapshot)."""
        return self._plans

    def camera_ids(self) -> list[str]:
        """Cameras with a handle (running, restarting or finished)."""
        with self._lock:
            return list(self._handles)

    def apply(self, specs: Mapping[str, WorkerSpec], restart: Collection[str] = ()) -> ReloadPlan:
        """Make the running workers match ``specs``; untouched cameras keep their workers.

        Args:
            specs: The wanted worker of every camera that should run.
            restart: Cameras to restart even if their spec is unchanged (e.g. new tracker
                settings).
        """
        with self._apply_lock:
            with self._lock:
                current = {key: handle.spec for key, handle in self._handles.items()}
            added = tuple(key for key in specs if key not in current)
            removed = tuple(key for key in current if key not in specs)
            changed = tuple(
                key
                for key in specs
                if key in current and (current[key] != specs[key] or key in restart)
            )
            unchanged = tuple(key for key in specs if key in current and key not in changed)
            with self._lock:
                for key in unchanged:  # equal for the worker; its display name may be new
                    handle = self._handles.get(key)
                    if handle is not None:
                        handle.spec = specs[key]
            for key in removed:
                self.stop_camera(key)
            for key in changed:
                self.stop_camera(key)
                self._start_camera(specs[key])
            for key in added:
                self._start_camera(specs[key])
            plan = ReloadPlan(added, removed, changed, unchanged)
            if added or removed or changed:
                log.info(
                    "cameras: added %s, removed %s, changed %s, unchanged %s",
                    list(added),
                    list(removed),
                    list(changed),
                    list(unchanged),
                )
            return plan

    def stop_camera(self, camera_id: str, timeout: float | None = None) -> None:
        """Stop a camera's worker and forget it (its incidents are finished via the callback)."""
        with self._lock:
            handle = self._handles.pop(camera_id, None)
            plans = dict(self._plans)
            plans.pop(camera_id, None)
            self._plans = plans
            if handle is not None:  # under the lock: a launch under way sees it (_launch)
                handle.state = WorkerState.STOPPED
        if handle is None:
            return
        self._stop_worker(handle, timeout)
        self._mailbox.discard(camera_id)
        if self._on_camera_stopped is not None:
            self._on_camera_stopped(camera_id)

    def restart_camera(self, camera_id: str) -> None:
        """Kill and restart a camera's worker now (the way a stuck one is restarted)."""
        with self._lock:
            handle = self._handles.get(camera_id)
        if handle is not None and handle.worker is not None:
            handle.worker.kill()

    def stop(self, timeout: float | None = None) -> None:
        """Stop every worker (in parallel) and the supervisor's threads."""
        with self._lock:
            handles = list(self._handles.values())
            for handle in handles:
                handle.state = WorkerState.STOPPED
        workers = [h.worker for h in handles if h.worker is not None]
        wait = self._stop_timeout() if timeout is None else timeout
        stoppers = [
            threading.Thread(target=worker.stop, args=(wait,), daemon=True) for worker in workers
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(wait + 6.0)
        for handle in handles:
            if handle.ring is not None:
                self._rings.retire(handle.ring)
            self._mailbox.set_streaming(handle.spec.camera_id, False)
        # Let the receiver read what the workers said before they went, then stop it.
        deadline = self._clock() + 2.0
        while self._clock() < deadline:
            with self._lock:
                if not self._links:
                    break
            time.sleep(0.05)
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        for handle in handles:
            self._finalise(handle.worker)
        with self._lock:
            retired, self._retired = self._retired, []
        for worker in retired:
            self._finalise(worker)

    def statuses(self) -> list[WorkerStatus]:
        """A status per camera handle."""
        with self._lock:
            handles = list(self._handles.values())
            return [self._status(h) for h in handles]

    def pid(self, camera_id: str) -> int | None:
        """The process id of a camera's current worker."""
        with self._lock:
            handle = self._handles.get(camera_id)
            return None if handle is None or handle.worker is None else handle.worker.pid

    # -- workers -----------------------------------------------------------------------------

    def _stop_timeout(self) -> float:
        return 10.0

    def _start_camera(self, spec: WorkerSpec) -> None:
        handle = _Handle(
            spec=spec,
            backoff=Backoff(
                self._watchdog.restart_backoff_seconds,
                max(
                    self._watchdog.restart_backoff_seconds,
                    self._watchdog.restart_backoff_max_seconds,
                ),
            ),
        )
        with self._lock:
            self._handles[spec.camera_id] = handle
        self._launch(handle)

    def _launch(self, handle: _Handle) -> None:
        spec = handle.spec
        with self._lock:
            if self._stopped(handle):  # removed since the monitor found its restart due
                return
            incarnation = handle.incarnation = next(self._incarnations)
            handle.state = WorkerState.STARTING
            handle.source_state = SourceState.CONNECTING
            handle.message = "starting"
            handle.started = self._clock()
            handle.last_progress = handle.started
            handle.progress = -1
            handle.next_start = None
            handle.ring = None
            handle.memory = None
            plans = dict(self._plans)
            plans[spec.camera_id] = CameraPlan(
                spec.camera_id, tuple(spec.camera.models), incarnation, spec.camera.tiling
            )
            self._plans = plans
        worker: Worker
        # A lossless file camera (realtime: false) must hand every frame over and wait for its
        # slot, which only a thread in this process can do without tearing shared-memory slots.
        if self.mode == "process" and spec.camera.realtime:
            process_worker = ProcessWorker(spec, self._context)
            worker = process_worker
            with self._lock:
                self._links[process_worker.connection] = (handle, incarnation)
        else:
            worker = ThreadWorker(
                spec, lambda message: self._on_message(handle, incarnation, message)
            )
        try:
            worker.start()
        except Exception as error:  # cannot even spawn (out of memory, fd limit): retry later
            log.error("camera %s: cannot start worker: %s", spec.camera_id, error)
            if isinstance(worker, ProcessWorker):
                with self._lock:
                    self._links.pop(worker.connection, None)
                worker.close()
            self._schedule_restart(handle, f"cannot start: {error}")
            return
        # Only a started worker is visible to the monitor: one seen before it started would
        # look dead, be "restarted", and leave the first one running unsupervised.
        with self._lock:
            if isinstance(worker, ThreadWorker):
                self._thread_links[worker] = (handle, incarnation)
            orphan = self._stopped(handle)
            if not orphan:
                handle.worker = worker
        if orphan:
            # The camera was removed (a reload, stop_camera) or the supervisor stopped while
            # this worker spawned: they stopped the handle's previous, dead worker, and this
            # one would run on unsupervised, holding its RTSP session and its ring until exit.
            log.info("camera %s: stopped while its worker started; stopping it", spec.camera_id)
            worker.stop(self._stop_timeout())
            self._retire(worker)
            with self._lock:
                ring, handle.ring = handle.ring, None  # only this worker's (reset above)
            if ring is not None:
                self._rings.retire(ring)
            return
        log.info("camera %s: worker %d started (pid %s)", spec.camera_id, incarnation, worker.pid)

    def _stopped(self, handle: _Handle) -> bool:
        """Whether ``handle`` was stopped or replaced (call with the lock held)."""
        return (
            handle.state is WorkerState.STOPPED
            or self._handles.get(handle.spec.camera_id) is not handle
        )

    def _stop_worker(self, handle: _Handle, timeout: float | None) -> None:
        worker = handle.worker
        if worker is None:
            return
        worker.stop(self._stop_timeout() if timeout is None else timeout)
        if handle.ring is not None:
            self._rings.retire(handle.ring)
        self._retire(worker)

    def _schedule_restart(self, handle: _Handle, reason: str) -> None:
        now = self._clock()
        if now - handle.started >= STABLE_SECONDS:  # it ran: restart without backoff
            handle.backoff.reset()
        delay = handle.backoff.next_delay()
        with self._lock:
            # Checked with the state set, under one lock: a worker that died while stop() or a
            # reload stopped its camera turned STOPPED into BACKOFF, and the monitor launched a
            # new worker nobody would stop (its stopper has the handle's ring and worker).
            if self._stopped(handle):
                return
            handle.state = WorkerState.BACKOFF
            handle.next_start = now + delay
            handle.message = f"{reason}; restarting in {delay:.1f} s"
            # Nothing decodes until the restart: the dead worker's last report ("streaming")
            # kept safewatch_camera_up at 1 through a crash loop, so SafewatchCameraDown never
            # fired while /readyz and the Live page said the camera was down.
            handle.source_state = SourceState.RECONNECTING
            if handle.down_since is None:
                handle.down_since = now
        if handle.ring is not None:
            self._rings.retire(handle.ring)
            handle.ring = None
        self._mailbox.set_streaming(handle.spec.camera_id, False)
        log.warning("camera %s: %s", handle.spec.camera_id, handle.message)

    def _finalise(self, worker: Worker | None) -> None:
        if isinstance(worker, ProcessWorker) and not worker.alive():
            worker.close()

    # -- the monitor thread ------------------------------------------------------------------

    def _monitor(self) -> None:
        while not self._stop.wait(_MONITOR_INTERVAL):
            try:
                self._check()
            except Exception:
                log.exception("supervisor check failed")

    def _check(self) -> None:
        now = self._clock()
        with self._lock:
            handles = list(self._handles.values())
        for handle in handles:
            worker = handle.worker
            if handle.state is WorkerState.BACKOFF:
                with self._lock:  # a reload may have removed it since the snapshot
                    due = (
                        handle.state is WorkerState.BACKOFF
                        and handle.next_start is not None
                        and now >= handle.next_start
                    )
                    if due:
                        handle.restarts += 1
                if due:
                    self._launch(handle)
                continue
            if worker is None or handle.state not in (WorkerState.STARTING, WorkerState.RUNNING):
                continue
            if not worker.alive():
                self._exited(handle, worker)
            elif not handle.spec.camera.realtime and self._mailbox.holds(handle.spec.camera_id):
                # A lossless file camera waits for its previous frame to be analysed: the
                # analysis is slow, the worker is not stuck.
                handle.last_progress = now
            elif now - handle.last_progress > self._watchdog.progress_seconds:
                log.error(
                    "camera %s: worker pid %s made no progress for %.0f s; killing it",
                    handle.spec.camera_id,
                    worker.pid,
                    now - handle.last_progress,
                )
                worker.kill()
                self._retire(worker)
                self._schedule_restart(
                    handle, f"no progress for {self._watchdog.progress_seconds:g} s"
                )
        if now - self._memory_at >= _MEMORY_INTERVAL:
            self._memory_at = now
            self._sample_memory(handles)
        self._reap()

    def _exited(self, handle: _Handle, worker: Worker) -> None:
        with self._lock:
            if self._stopped(handle):  # stopped since the monitor saw it: its stopper has it
                return
        code = worker.exitcode
        self._retire(worker)
        # Only the worker's own final exit ends a camera (its file played to the end, or a
        # source that failed for good), never the state it last reported: a decode process
        # stopped from outside (an operator's kill, systemd's control-group SIGTERM) closes its
        # source, reports it ``ended`` and exits 0. Taken for the camera's end, a live camera
        # was never restarted, its incidents were finished and /readyz left it out.
        if code == EXIT_FINAL:
            with self._lock:
                if self._stopped(handle):
                    return
                failed = handle.source_state is SourceState.FAILED
                handle.state = WorkerState.FAILED if failed else WorkerState.ENDED
                # The worker that ended (only this thread launches a handle's next one): read
                # from plans() by the callback, it was whatever incarnation ran by then.
                incarnation = handle.incarnation
            if handle.ring is not None:
                self._rings.retire(handle.ring)
            self._mailbox.set_streaming(handle.spec.camera_id, False)
            log.warning(
                "camera %s: worker finished for good (%s): %s",
                handle.spec.camera_id,
                handle.source_state,
                handle.message,
            )
            if not failed and self._on_camera_ended is not None:
                self._on_camera_ended(handle.spec.camera_id, incarnation)
            return
        reason = (
            f"exited with status {code}"
            if code is not None and code >= 0
            else (f"killed by signal {-code}" if code is not None else "thread ended")
        )
        self._schedule_restart(handle, f"worker {reason}")

    def _retire(self, worker: Worker) -> None:
        """Hand a stopped, killed or exited worker to :meth:`_reap` (closed once it is gone).

        Under the lock: the apply thread retires the workers of removed cameras while the
        monitor thread reaps, and a worker appended to the list :meth:`_reap` was replacing
        was lost, never closed nor cleaned up.
        """
        with self._lock:
            self._retired.append(worker)

    def _reap(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        keep: list[Worker] = []
        for worker in retired:
            if worker.alive():
                keep.append(worker)
                continue
            if isinstance(worker, ProcessWorker):
                with self._lock:
                    linked = worker.connection in self._links
                if linked:
                    keep.append(worker)  # the receiver has not read its last messages yet
                    continue
                worker.close()
            elif isinstance(worker, ThreadWorker):
                # A thread that ended sends nothing more (it called the handler itself): its
                # counters join the base, as a process's do when its pipe closes (_unlink).
                # Kept per incarnation, they grew by one entry per restart, summed on every
                # status and stats report.
                with self._lock:
                    entry = self._thread_links.pop(worker, None)
                    if entry is not None:
                        self._fold(*entry)
        with self._lock:
            self._retired.extend(keep)

    def _sample_memory(self, handles: list[_Handle]) -> None:
        if self.mode != "process":
            return
        for handle in handles:
            pid = handle.worker.pid if handle.worker is not None else None
            if pid is None or pid == os.getpid():
                continue
            try:
                handle.memory = psutil.Process(pid).memory_info().rss
            except psutil.Error:
                handle.memory = None

    # -- the receiver thread -----------------------------------------------------------------

    def _receive(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                links = list(self._links)
            if not links:
                self._stop.wait(0.05)
                continue
            try:
                ready = mp_connection.wait(links, timeout=0.2)
            except OSError:
                continue
            for link in ready:
                assert isinstance(link, Connection)
                self._drain(link)

    def _drain(self, link: Connection) -> None:
        with self._lock:
            entry = self._links.get(link)
        if entry is None:
            return
        handle, incarnation = entry
        try:
            while link.poll():
                message = link.recv()
                self._on_message(handle, incarnation, message)
        except (EOFError, OSError):
            self._unlink(link, handle, incarnation)
        except Exception:
            log.exception("camera %s: bad message from worker", handle.spec.camera_id)

    def _unlink(self, link: Connection, handle: _Handle, incarnation: int) -> None:
        with self._lock:
            self._links.pop(link, None)
            self._fold(handle, incarnation)
        with contextlib.suppress(OSError):
            link.close()

    @staticmethod
    def _fold(handle: _Handle, incarnation: int) -> None:
        """Add an ended incarnation's last counters to the handle's base (lock held)."""
        stats = handle.stats.pop(incarnation, None)
        if stats is not None:
            handle.base = _add(handle.base, stats)

    # -- messages ----------------------------------------------------------------------------

    def _on_message(self, handle: _Handle, incarnation: int, message: WorkerMessage) -> None:
        current = (
            incarnation == handle.incarnation and self._handles.get(handle.spec.camera_id) is handle
        )
        if isinstance(message, FrameReady):
            if current:
                if handle.spec.camera.realtime:
                    self._mailbox.put(message, incarnation)
                else:
                    self._mailbox.put_wait(message, incarnation)
                handle.last_frame_at = message.published_at
            return
        if isinstance(message, StatsReport):
            with self._lock:
                handle.stats[incarnation] = message.stats
                if not current:
                    return
                handle.info = message.info
                progress = (
                    message.stats.decoded
                    + message.stats.reconnects
                    + message.stats.bad_packets
                    + message.stats.sampled
                )
                if progress != handle.progress:
                    handle.progress = progress
                    handle.last_progress = self._clock()
                if message.last_frame_at is not None:
                    handle.last_frame_at = message.last_frame_at
                total = _add(handle.base, self._live_stats(handle))
            handle.decode_rate.add(total.decoded)
            return
        if isinstance(message, RingCreated):
            self._rings.announce(message.ring)
            with self._lock:
                # A stopped handle's worker is on its way out (one that started after the stop
                # is stopped by _launch, which retires the handle's ring under this lock).
                keep = current and handle.state is not WorkerState.STOPPED
                previous = handle.ring
                if keep:
                    handle.ring = message.ring.name
            if not keep:
                self._rings.retire(message.ring.name)
            elif previous is not None:
                self._rings.retire(previous)
            return
        if isinstance(message, SourceReport) and current:
            change = message.change
            with self._lock:
                if handle.state is WorkerState.BACKOFF:
                    return  # the last words of a worker that died (or was killed) after its
                    # restart was scheduled: the camera is reconnecting, not streaming or ended
                handle.source_state = change.state
                handle.message = change.message
                handle.last_progress = now = self._clock()
                if handle.state is WorkerState.STARTING and change.state is not SourceState.FAILED:
                    handle.state = WorkerState.RUNNING
                down_since = handle.down_since
                if change.state in _DOWN and down_since is None:
                    handle.down_since = now
                elif change.state is SourceState.STREAMING:
                    handle.down_since = None
            if change.state is SourceState.STREAMING and down_since is not None:
                # The decode process logs the trouble (WARNING, shown) but its recovery at
                # INFO, which a process at WARNING hides; serve shows this logger's INFO.
                log.info(
                    "camera %s: streaming again after %.1f s",
                    handle.spec.camera_id,
                    now - down_since,
                )
            self._mailbox.set_streaming(
                handle.spec.camera_id, change.state is SourceState.STREAMING
            )

    @staticmethod
    def _live_stats(handle: _Handle) -> SourceStats:
        total = SourceStats()
        for stats in handle.stats.values():
            total = _add(total, stats)
        return total

    def _status(self, handle: _Handle) -> WorkerStatus:
        spec = handle.spec
        worker = handle.worker
        return WorkerStatus(
            camera_id=spec.camera_id,
            name=spec.name or spec.camera_id,
            state=handle.state,
            source_state=str(handle.source_state),
            message=handle.message,
            pid=None if worker is None else worker.pid,
            incarnation=handle.incarnation,
            restarts=handle.restarts,
            fps_target=spec.camera.fps,
            stats=_add(handle.base, self._live_stats(handle)),
            info=handle.info,
            decode_fps=handle.decode_rate.rate(),
            last_frame_at=handle.last_frame_at,
            memory_bytes=handle.memory,
        )
