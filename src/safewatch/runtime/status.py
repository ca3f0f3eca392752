"""What the running server says about itself: counters, ``/healthz``, ``/readyz``, ``/metrics``.

Split out of :class:`~safewatch.runtime.service.RuntimeService`, which wires and runs the parts;
this object only reads them. The service attaches each part once it has started it (the camera
supervisor, the inference and rules threads, the rule holder, the database), so the answers are
meaningful from the first request on: a part not started yet is reported as such.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from sqlalchemy import text

from safewatch.api.health import CameraReadiness, ComponentHealth, Liveness, Readiness
from safewatch.config.runtime import DecodeMode, WatchdogConfig
from safewatch.incidents.manager import IncidentManager
from safewatch.incidents.recorder import EvidenceRecorder, RecorderStats
from safewatch.incidents.site_storage import SiteStorage
from safewatch.rules.reload import RuleSetHolder
from safewatch.runtime.evaluation import RulesWorker
from safewatch.runtime.health import PPECheck, SlowAnalysis, camera_readiness, overall
from safewatch.runtime.inference import InferenceWorker
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.metrics import CameraStatus, RuntimeMetrics, RuntimeSnapshot
from safewatch.runtime.recording_link import RecordingLink
from safewatch.runtime.supervisor import Supervisor

__all__ = ["DB_CHECK_TIMEOUT", "EVIDENCE_RECENT", "HUNG_AFTER", "RuntimeParts", "RuntimeStatus"]

HUNG_AFTER = 60.0
"""Seconds a core thread may go without looping before ``/healthz`` says the process is hung."""

_DB_CHECK_INTERVAL = 1.0
"""Seconds a database check is reused (``/readyz`` may be polled many times a second)."""
DB_CHECK_TIMEOUT = 5.0
"""Seconds ``/readyz`` waits for the database's ``SELECT 1`` before calling it not ready: half the
API process's 10 s for the whole answer. No timeout of the driver covers every case (SQLite's
busy wait, a PostgreSQL host behind a network stall with no keepalives on the connection), so
the check runs on a thread of its own and readiness stops waiting for it."""

EVIDENCE_RECENT = 600.0
"""Seconds after the last evidence failure (a still, clip or sealed original not stored) during
which ``/readyz`` is degraded: long enough to be seen between two looks, short enough that one
failure does not mark the server for good (the counters keep the total)."""


class _DatabaseCheck:
    """One ``SELECT 1`` under way on a thread of its own (see :data:`DB_CHECK_TIMEOUT`)."""

    def __init__(self, started: float, shown: str) -> None:
        self.started = started
        self.shown = shown
        self.done = threading.Event()
        self.health = ComponentHealth(ok=False, message="not checked yet")


@dataclass
class RuntimeParts:
    """The running parts the status reads; ``None`` until the service started each."""

    supervisor: Supervisor | None = None
    inference: InferenceWorker | None = None
    rules: RulesWorker | None = None
    holder: RuleSetHolder | None = None
    storage: SiteStorage | None = None
    recordings: RecordingLink | None = None
    incidents: IncidentManager | None = None
    recorder: EvidenceRecorder | None = None


class RuntimeStatus:
    """Counters and health of one running site.

    Args:
        mailbox: The frame mailbox (drops and depth).
        metrics: The Prometheus metrics to render (and the gauges refreshed here).
        mode: How decode workers run (a process id is shown only for processes).
        watchdog: Slow-analysis settings for ``/readyz``.
        stopping: Set while the server stops (``/readyz`` says ``stopping``).
    """

    def __init__(
        self,
        mailbox: FrameMailbox,
        metrics: RuntimeMetrics,
        mode: DecodeMode,
        watchdog: WatchdogConfig,
        stopping: threading.Event,
    ) -> None:
        self.parts = RuntimeParts()
        self._mailbox = mailbox
        self._metrics = metrics
        self.site_health = ComponentHealth(ok=True, message="not loaded yet")
        self._mode = mode
        self._stopping = stopping
        self._started = time.monotonic()
        self._slow = SlowAnalysis(watchdog.slow_ratio, watchdog.slow_seconds)
        self._ppe_check = PPECheck(watchdog.ppe_min_share, watchdog.ppe_min_person_seconds)
        self._db_health = ComponentHealth(ok=False, message="not checked yet")
        # serve --cluster: the cluster member's health (ClusterOwner sets it); None otherwise.
        self.cluster_health: Callable[[], ComponentHealth] | None = None
        self._db_checked = 0.0
        self._db_check: _DatabaseCheck | None = None
        self._db_lock = threading.Lock()
        self._evidence_failed = 0
        self._evidence_failed_at = float("-inf")
        self._evidence_lock = threading.Lock()

    def snapshot(self) -> RuntimeSnapshot:
        """Counters and times of every camera, and server-wide figures."""
        parts = self.parts
        statuses = parts.supervisor.statuses() if parts.supervisor is not None else []
        inference = parts.inference.counters() if parts.inference is not None else {}
        evaluated = parts.rules.counters() if parts.rules is not None else {}
        mailbox_drops = self._mailbox.dropped()
        recordings = parts.recordings.states() if parts.recordings is not None else {}
        evidence = parts.recorder.stats if parts.recorder is not None else None
        cameras: list[CameraStatus] = []
        for status in statuses:
            key = status.camera_id
            inf = inference.get(key)
            ev = evaluated.get(key)
            cameras.append(
                CameraStatus(
                    camera_id=key,
                    name=status.name,
                    worker_state=str(status.state),
                    source_state=status.source_state,
                    message=status.message,
                    pid=status.pid if self._mode == "process" else None,
                    incarnation=status.incarnation,
                    restarts=status.restarts,
                    fps_target=status.fps_target,
                    decoded=status.stats.decoded,
                    sampled=status.stats.sampled,
                    reconnects=status.stats.reconnects,
                    bad_packets=status.stats.bad_packets,
                    source_dropped=status.stats.dropped,
                    frozen_dropped=status.stats.frozen,
                    mailbox_dropped=mailbox_drops.get(key, 0),
                    torn_dropped=inf.torn if inf else 0,
                    stale_dropped=inf.stale if inf else 0,
                    inferred=inf.inferred if inf else 0,
                    motion_skipped=inf.motion_skipped if inf else 0,
                    analysed=ev.analysed if ev else 0,
                    decode_fps=status.decode_fps,
                    analysed_fps=ev.analysed_fps if ev else 0.0,
                    last_decoded_at=status.last_frame_at,
                    last_inferred_at=inf.last_inferred_at if inf else None,
                    last_evaluated_at=ev.last_evaluated_at if ev else None,
                    memory_bytes=status.memory_bytes,
                    ppe=ev.ppe if ev else (),
                    recording=recordings.get(key),
                )
            )
        return RuntimeSnapshot(
            cameras=cameras,
            mailbox_depth=self._mailbox.depth(),
            results_depth=parts.rules.depth() if parts.rules is not None else 0,
            server_memory_bytes=psutil.Process(os.getpid()).memory_info().rss,
            now=time.time(),
            evidence=evidence,
        )

    @property
    def site_health(self) -> ComponentHealth:
        """The last load of the site file: not ok while an edit is refused (the previous
        configuration runs)."""
        return self._site_health

    @site_health.setter
    def site_health(self, health: ComponentHealth) -> None:
        self._site_health = health
        # A refused reload was visible only under "site" in /readyz, whose status stayed
        # "ready": nothing alerted while the edit someone made did not apply.
        self._metrics.site_reload_failing.set(0 if health.ok else 1)

    def observe(self) -> None:
        """Take a snapshot for the slow-analysis window (the service calls this every second)."""
        snap = self.snapshot()
        self._slow.observe(snap.cameras)
        self._note_evidence(snap.evidence)

    def liveness(self) -> Liveness:
        """``alive`` unless a core thread is dead or hung (see :mod:`safewatch.runtime.health`)."""
        problems: list[str] = []
        now = time.monotonic()
        for name, worker in (("inference", self.parts.inference), ("rules", self.parts.rules)):
            if worker is None:
                continue
            if not worker.alive() and not self._stopping.is_set():
                problems.append(f"{name} thread is not running")
            elif now - worker.heartbeat > HUNG_AFTER:
                problems.append(f"{name} thread has not looped for {now - worker.heartbeat:.0f} s")
        self._metrics.inference_alive.set(0 if problems else 1)
        return Liveness(
            status="hung" if problems else "alive",
            uptime_seconds=round(now - self._started, 1),
            problems=problems,
        )

    def readiness(self) -> Readiness:
        """Database, core threads, site reload status and every camera."""
        snap = self.snapshot()
        holder = self.parts.holder
        unwatched = set(holder.status.unwatched) if holder is not None else set()
        cameras: dict[str, CameraReadiness] = {
            status.camera_id: camera_readiness(
                status,
                snap.now,
                self._slow,
                unwatched=status.camera_id in unwatched,
                ppe_check=self._ppe_check,
            )
            for status in snap.cameras
        }
        database = self._database_health()
        mono = time.monotonic()
        inference = self._thread_health(self.parts.inference, mono)
        rules = self._thread_health(self.parts.rules, mono)
        # The thread decides not_ready; refused rule files only degrade, like a refused site
        # file: the previous generation still judges every frame.
        state = overall(cameras, (database, inference, rules), stopping=self._stopping.is_set())
        if holder is not None:
            status = holder.status
            rules = ComponentHealth(
                # Not ok while the files on disk are refused (the same ReloadStatus.ok that
                # /api/v1/rules/status shows): "ready" with "rules ok" hid that an edit to
                # the rules did not apply, and nothing alerted.
                ok=rules.ok and status.ok,
                message="; ".join(
                    (f"rule generation {status.generation}: {status.message}", *status.warnings)
                ),
                seconds_since_heartbeat=rules.seconds_since_heartbeat,
            )
            if state == "ready" and (status.dropped or not status.ok):
                # Rules gone that no admin acknowledged (RuleSetHolder.acknowledge), or rule
                # files on disk refused while the previous generation runs.
                state = "degraded"
        if state == "ready" and not self.site_health.ok:
            state = "degraded"  # the site file on disk is refused; the previous one runs
        incidents = self._incidents_health()
        if state == "ready" and incidents is not None and not incidents.ok:
            state = "degraded"  # incidents (and their alerts) wait in memory for the database
        evidence = self._evidence_health(snap.evidence)
        if state == "ready" and evidence is not None and not evidence.ok:
            state = "degraded"  # incidents are stored, their stills or clips were not
        cluster = None if self.cluster_health is None else self.cluster_health()
        if state == "ready" and cluster is not None and not cluster.ok:
            state = "degraded"  # a dead or failing member, or a camera no analyzer may run
        return Readiness(
            status=state,
            database=database,
            inference=inference,
            rules=rules,
            site=self.site_health,
            incidents=incidents,
            evidence=evidence,
            cameras=cameras,
            cluster=cluster,
        )

    def metrics(self) -> bytes:
        """Prometheus exposition text."""
        self.liveness()  # refreshes the inference-up gauge
        if self.parts.incidents is not None:  # the manager's own count of what waits
            self._metrics.incidents_unsaved.set(self.parts.incidents.unsaved)
        return self._metrics.render()

    @staticmethod
    def _thread_health(worker: InferenceWorker | RulesWorker | None, now: float) -> ComponentHealth:
        if worker is None:
            return ComponentHealth(ok=False, message="not started")
        age = round(now - worker.heartbeat, 3)
        if not worker.alive():
            return ComponentHealth(
                ok=False, message="thread not running", seconds_since_heartbeat=age
            )
        if age > HUNG_AFTER:
            return ComponentHealth(ok=False, message="thread hung", seconds_since_heartbeat=age)
        return ComponentHealth(ok=True, message="running", seconds_since_heartbeat=age)

    def _incidents_health(self) -> ComponentHealth | None:
        """Whether incidents are being stored: ``SELECT 1`` answers on a full disk or a file
        that is locked for writing, while every incident write (and the alerts queued in its
        transaction) is refused; the manager keeps those incidents in memory and tries again.
        The refusal is the database's own words (:func:`~safewatch.storage.engine.transaction`),
        as in ``database``; secrets are masked at the HTTP edge like every answer."""
        manager = self.parts.incidents
        if manager is None:
            return None
        waiting = manager.unsaved
        refused = manager.refused
        if not waiting and refused is None:
            return ComponentHealth(ok=True, message="incident writes go through")
        message = f"{waiting} incident(s) held in memory, not stored (nor alerted) yet"
        if refused is not None:
            message += f"; the last write was refused: {refused}"
        return ComponentHealth(ok=False, message=message)

    def _note_evidence(self, stats: RecorderStats | None) -> None:
        """Note when the recorder's failure count last rose (the keeper looks every second, so
        the time is that close; readiness looks too)."""
        if stats is None:
            return
        failed = stats.stills_failed + stats.clips_failed + stats.originals_failed
        with self._evidence_lock:  # the keeper and any number of readiness questions
            if failed != self._evidence_failed:
                self._evidence_failed = failed
                self._evidence_failed_at = time.monotonic()

    def _evidence_health(self, stats: RecorderStats | None) -> ComponentHealth | None:
        """Not ok for :data:`EVIDENCE_RECENT` after a still, clip or sealed original could not
        be stored (a full evidence disk): the incident is stored without it, and before, only
        the log said so, while the docs said these were counted."""
        if stats is None:
            return None
        self._note_evidence(stats)
        counts = (
            f"not stored since the start: {stats.stills_failed} still(s), {stats.clips_failed} "
            f"clip(s), {stats.originals_failed} sealed original(s); {stats.frames_dropped} "
            "frame(s) dropped from clips"
        )
        ago = time.monotonic() - self._evidence_failed_at
        if ago < EVIDENCE_RECENT:
            return ComponentHealth(
                ok=False, message=f"evidence not stored {ago:.0f} s ago (see the log); {counts}"
            )
        return ComponentHealth(ok=True, message=counts)

    def _database_health(self) -> ComponentHealth:
        """The database's answer to ``SELECT 1``, waited for at most :data:`DB_CHECK_TIMEOUT`.

        One check at a time: while one hangs, every readiness question gets "no answer" at once
        instead of another thread (and pooled connection) stuck beside it; the next check starts
        once it returns (a stalled connection fails when the operating system gives up on it).
        """
        with self._db_lock:
            now = time.monotonic()
            check = self._db_check
            if check is None:
                if now - self._db_checked < _DB_CHECK_INTERVAL:
                    return self._db_health
                self._db_checked = now
                storage = self.parts.storage
                if storage is None:
                    self._db_health = ComponentHealth(ok=False, message="not opened")
                    return self._db_health
                shown = storage.engine.url.render_as_string(hide_password=True)
                check = self._db_check = _DatabaseCheck(now, shown)
                threading.Thread(
                    target=self._check_database,
                    args=(storage, check),
                    name="readiness-database",
                    daemon=True,  # may hang on a stalled database: never holds up the exit
                ).start()
        if check.done.wait(max(0.0, check.started + DB_CHECK_TIMEOUT - time.monotonic())):
            return check.health
        waited = time.monotonic() - check.started
        return ComponentHealth(
            ok=False, message=f"{check.shown}: no answer to SELECT 1 in {waited:.0f} s"
        )

    def _check_database(self, storage: SiteStorage, check: _DatabaseCheck) -> None:
        try:
            with storage.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:  # any failure must end the check, or none would start again
            reason = getattr(error, "orig", None) or error  # the driver's own words
            health = ComponentHealth(ok=False, message=f"{check.shown}: {reason}")
        else:
            health = ComponentHealth(ok=True, message=f"{check.shown} reachable")
        with self._db_lock:
            check.health = self._db_health = health
            self._db_check = None
        check.done.set()
