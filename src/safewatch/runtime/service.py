"""``safewatch serve``: every camera of a site, live, through detection, tracking, rules, incidents.

Process model on one host (measured and argued in :mod:`safewatch.runtime.camera_worker`)::

    decode process per camera --shared memory + small messages--> supervisor (receiver thread)
        -> FrameMailbox (newest frame per camera, drops counted)
        -> inference thread (batches across cameras, motion gate, tiling; ONNX Runtime)
        -> rules thread (tracker, rule engine, incident manager) -> database + evidence thread
    API process (uvicorn; dashboard, API, /healthz, /readyz, /metrics), fed over a pipe and a
        live-frame ring by :class:`~safewatch.runtime.api_link.ApiLink`, at a lower priority;
        or, with ``api="thread"``, an HTTP thread in this process

:class:`RuntimeService` builds and wires these from the site file, keeps the core threads alive
(a crashed inference or rules thread is restarted), follows edits of the site file (cameras added,
removed or changed take effect without touching the others) and of the rule folder (hot reload),
and stops gracefully: decoders stop first, frames already taken are analysed, every open episode
ends at its camera's last frame, incidents are closed and clips finished before the process exits.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from safewatch.alerts.service import AlertService, start_alerts
from safewatch.api import ApiSettings, create_app
from safewatch.api.dashboard import Dashboard, DashboardSettings
from safewatch.api.live import LiveHub
from safewatch.config.loader import LoadedSite, load_site
from safewatch.config.runtime import DecodeMode
from safewatch.config.site import ModelConfig, PrivacyConfig, SiteConfig
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.detect.pool import DetectorFactory, DetectorPool
from safewatch.domain import Frame, RuleEvent, Track, TrackedFrame, Zone
from safewatch.errors import ConfigError, SafewatchError
from safewatch.incidents.abandoned import camera_gone_reason, close_abandoned_incidents
from safewatch.incidents.annotate import draw_overlay
from safewatch.incidents.manager import IncidentChange, IncidentManager
from safewatch.incidents.privacy import anonymise_heads
from safewatch.incidents.recorder import EvidenceRecorder
from safewatch.incidents.site_storage import SiteStorage, open_site_storage
from safewatch.incidents.witness import ChainWitness, WitnessWriter
from safewatch.pipeline.stages import build_tracker, resolved_models
from safewatch.pipeline.step import FrameListener
from safewatch.recording.service import RecordingService
from safewatch.rules import calibrations_from_site, load_rules
from safewatch.rules.reload import ReloadingEngine, ReloadStatus, RuleGeneration, RuleSetHolder
from safewatch.rules.watcher import RuleWatcher
from safewatch.runtime.api_link import ApiLink, ApiProcessSpec
from safewatch.runtime.api_messages import RulesPush
from safewatch.runtime.bus_link import ClusterBus
from safewatch.runtime.camera_worker import WorkerSpec
from safewatch.runtime.evaluation import RulesWorker
from safewatch.runtime.health import (
    ComponentHealth,
    Liveness,
    Readiness,
)
from safewatch.runtime.http_server import HttpServer, bind_listener
from safewatch.runtime.inference import InferenceWorker
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.metrics import RuntimeMetrics, RuntimeSnapshot
from safewatch.runtime.rings import RingCache
from safewatch.runtime.status import RuntimeParts, RuntimeStatus
from safewatch.runtime.supervisor import ReloadPlan, Supervisor
from safewatch.track import CameraTracker

__all__ = ["ApiMode", "RuntimeService", "ServeOptions", "StopReport", "worker_specs"]

log = logging.getLogger(__name__)

_ALERT_DRAIN = 5.0
"""Seconds a graceful stop keeps sending due alerts (the rest stay queued for the next start)."""
_IO_TIMEOUT = 5.0

ApiMode = Literal["process", "thread", "ops"]
"""Where the HTTP server runs: its own process (the default) or a thread of the server; ``ops``:
only ``/healthz``, ``/readyz`` and ``/metrics``, on a thread (an analyzer of a cluster)."""


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What the command line may override of the site file's ``runtime`` block.

    Attributes:
        rules: Rule folder or file.
        host: HTTP address; default ``runtime.http.host``.
        port: HTTP port; default ``runtime.http.port`` (0 picks a free one).
        decode: Decode mode; default ``runtime.decode``.
        http: Serve ``/healthz``, ``/readyz`` and ``/metrics`` (benchmarks may turn it off).
        api: ``process`` runs the HTTP server in its own process, so API load cannot take the
            analysis's interpreter (:mod:`safewatch.runtime.api_link`); ``thread`` runs it on
            a thread of this process (one interpreter for both; for debugging and comparison).
        api_nice: Added to the API process's ``nice`` value: under CPU contention the kernel
            gives the analysis the CPU first.
        query_cache_seconds: Longest reuse of an incident list or statistics answer while no
            incident changed (:mod:`safewatch.api.query_cache`); 0 turns the cache off.
        watch_site: Poll the site file and apply its edits.
        site_poll_seconds: How often the site file is checked.
        cluster: Cameras run only while this process owns them (``serve --cluster``, see
            :mod:`safewatch.runtime.cluster_owner`): none at start, then those handed over with
            :meth:`RuntimeService.own_camera`. Incidents found open at start are left to their
            cameras' owners instead of being closed as abandoned.
        witness_alerts: Send each chain witness through ``alerts.witness``'s channels. A
            cluster's analyzers turn it off: the chain is one, so one node (the API node, role
            ``api`` or ``all``) sends it, not one copy per analyzer.
    """

    rules: Path
    host: str | None = None
    port: int | None = None
    decode: DecodeMode | None = None
    http: bool = True
    api: ApiMode = "process"
    api_nice: int = 10
    query_cache_seconds: float = 2.0
    watch_site: bool = True
    site_poll_seconds: float = 1.0
    cluster: bool = False
    witness_alerts: bool = True


@dataclass(frozen=True, slots=True)
class StopReport:
    """What a graceful stop finished."""

    closed: tuple[IncidentChange, ...]
    seconds: float


def worker_specs(
    site: LoadedSite, decode_log_level: int = logging.WARNING
) -> dict[str, WorkerSpec]:
    """The decode worker of every enabled camera of the site."""
    runtime = site.config.runtime
    watchdog = runtime.watchdog
    # Reconnect attempts must come often enough to count as progress for the watchdog.
    slack = watchdog.progress_seconds - watchdog.stall_seconds - _IO_TIMEOUT
    reconnect_cap = max(0.5, min(30.0, slack / 2))
    return {
        key: WorkerSpec(
            camera_id=key,
            # the recording block is the recorder's (RecordingService.apply): editing it must
            # not restart the camera's analysis
            camera=camera.model_copy(update={"recording": None}),
            base_dir=site.base_dir,
            motion=runtime.motion,
            stall_seconds=watchdog.stall_seconds,
            reconnect_cap=reconnect_cap,
            ring_slots=runtime.ring_slots,
            io_timeout=_IO_TIMEOUT,
            log_level=decode_log_level,
        )
        for key, camera in site.config.cameras.items()
        if camera.enabled
    }


def _models_in_use(config: SiteConfig) -> set[str]:
    return {
        model for camera in config.cameras.values() if camera.enabled for model in camera.models
    }


def _warm_up_evidence(config: SiteConfig) -> None:
    """Pay the first-call costs of drawing and encoding a still now, not on the first incident.

    Measured: the first overlay costs about 20 ms (font set-up) and the first still about 125 ms
    in all, against 5-10 ms later: that belongs at start-up, like a model's warm-up run.
    """
    blank = np.zeros((64, 64, 3), np.uint8)
    person = Track(1, "person", (8.0, 8.0, 24.0, 56.0), 0.9)
    tracked = TrackedFrame("warm-up", 0, 0.0, 0.0, 64, 64, (person,))
    hidden = anonymise_heads(blank, tracked, config.privacy)
    cv2.imencode(".jpg", draw_overlay(hidden, tracked, (), highlight={1}))


def _camera_switches(config: SiteConfig) -> dict[str, bool]:
    """Each camera of the site and whether it is enabled (what rule checks depend on)."""
    return {camera_id: camera.enabled for camera_id, camera in config.cameras.items()}


def _models_to_load(site: LoadedSite) -> dict[str, tuple[ModelConfig, Path]]:
    """The models the site's enabled cameras use, with their resolved files."""
    return resolved_models(site, sorted(_models_in_use(site.config)))


class RuntimeService:
    """The live server of one site.

    Args:
        site: The loaded site file.
        options: Rule folder and overrides.
        detector_factory: Builds a model's detector; :class:`OnnxDetector` by default.
        listeners: Called after each analysed frame (tests, live views).
    """

    def __init__(
        self,
        site: LoadedSite,
        options: ServeOptions,
        *,
        detector_factory: DetectorFactory = OnnxDetector,
        listeners: Collection[FrameListener] = (),
    ) -> None:
        self._site = site
        self._options = options
        # cluster mode: the cameras this process owns (None: every enabled camera of the site)
        self._owned: frozenset[str] | None = frozenset() if options.cluster else None
        self._lost: set[str] = set()  # stopping without writing (ownership lost)
        self.site_listeners: list[Callable[[LoadedSite], None]] = []
        self._mode: DecodeMode = options.decode or site.config.runtime.decode
        self._detectors = DetectorPool({}, detector_factory)
        # -- dashboard (safewatch.api): live frames and incident changes for the browser ----
        self.live = LiveHub()
        self._listeners = [*listeners, self._publish_live]
        self.runtime_metrics = RuntimeMetrics()
        self._mailbox = FrameMailbox()
        self._rings = RingCache()
        self._storage: SiteStorage | None = None
        self._alerts: AlertService | None = None
        self._witness: WitnessWriter | None = None
        self._recorder: EvidenceRecorder | None = None
        self._recordings: RecordingService | None = None
        self._holder: RuleSetHolder | None = None
        self._watcher: RuleWatcher | None = None
        self._rules: RulesWorker | None = None
        self._inference: InferenceWorker | None = None
        self._supervisor: Supervisor | None = None
        self._http: HttpServer | None = None
        self._api: ApiLink | None = None
        self._bus: ClusterBus | None = None  # serve --cluster: Redis and the bus feeds
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._keeper: threading.Thread | None = None
        self._site_stamp = self._stamp()
        # counters, /healthz, /readyz and /metrics read the parts start() attaches
        self.status = RuntimeStatus(
            self._mailbox,
            self.runtime_metrics,
            self._mode,
            site.config.runtime.watchdog,
            self._stopping,
        )
        self.status.site_health = ComponentHealth(ok=True, message=f"loaded {site.path}")
        self._reload_lock = threading.Lock()

    # -- start -------------------------------------------------------------------------------

    @property
    def site(self) -> LoadedSite:
        """The site file in force (the latest valid one)."""
        return self._site

    @property
    def supervisor(self) -> Supervisor:
        """The camera workers' supervisor (after :meth:`start`)."""
        if self._supervisor is None:
            raise RuntimeError("the service is not started")
        return self._supervisor

    @property
    def storage(self) -> SiteStorage:
        """The site's database and evidence store (after :meth:`start`)."""
        if self._storage is None:
            raise RuntimeError("the service is not started")
        return self._storage

    @property
    def http_url(self) -> str | None:
        """Base URL of the HTTP endpoints, once started."""
        if self._http is not None:
            return self._http.url
        if self._listener is None:
            return None
        host, port = self._listener.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        """Open storage, load rules and models, start the HTTP server, threads and cameras.

        Raises:
            SafewatchError: Anything wrong with the site, rules, models, database or address,
                before any camera starts.
        """
        site = self._site
        config = site.config
        rules = load_rules(self._options.rules, config)
        self._detectors.update(_models_to_load(site))
        _warm_up_evidence(config)
        storage = open_site_storage(site)
        self._storage = storage
        try:
            # alerts: hook the outbox into the repository before any incident can be written
            self._alerts = start_alerts(site, storage)
            self._holder = RuleSetHolder(rules)
            holder = self._holder
            self._recorder = EvidenceRecorder(
                storage.evidence,
                storage.repository,
                config.evidence,
                privacy_for=self._privacy_for,
                zones_for=self._zones_for,
                on_full="drop",
            )
            # after the clips' recovery, with the outbox hooked: their closed alerts are queued
            if not self._options.cluster:  # in a cluster, a camera's next owner closes them
                close_abandoned_incidents(storage.repository, config)
            # the chain head, witnessed outside the database (safewatch.incidents.witness)
            self._witness = WitnessWriter(
                storage.evidence.backend,
                storage.engine,
                interval=config.storage.witness_seconds,
                notify=self._witness_alert,
            ).start()
            incidents = IncidentManager(
                storage.repository,
                storage.evidence,
                self._zones_for,
                privacy_for=self._privacy_for,
                recorder=self._recorder,
            )
            engine = ReloadingEngine(holder, config.site.timezone, calibrations_from_site(config))
            if self._options.cluster:  # incident changes and overlays to the other nodes
                self._bus = ClusterBus(storage.repository, config.cluster.redis_url)
                if self._bus.listener is not None:
                    self._listeners.append(self._bus.listener)
            self._rules = RulesWorker(
                self._tracker_for,
                engine,
                incidents,
                self.runtime_metrics,
                listeners=self._listeners,
            )
            self._supervisor = Supervisor(
                mode=self._mode,
                mailbox=self._mailbox,
                rings=self._rings,
                watchdog=config.runtime.watchdog,
                on_camera_stopped=self._camera_stopped,
                on_camera_ended=self._camera_ended,
                start_method="forkserver" if self._options.cluster else "spawn",
            )
            self._inference = InferenceWorker(
                self._mailbox,
                self._rings,
                self._detectors.get,
                self._supervisor.plans,
                self._rules.submit,
                config.runtime.inference,
                config.runtime.motion,
                self.runtime_metrics,
            )
            self.status.parts = RuntimeParts(
                self._supervisor, self._inference, self._rules, holder, storage
            )
            self.runtime_metrics.watch(self.status.snapshot)
            if self._options.http:
                http = config.runtime.http
                host = self._options.host or http.host
                port = http.port if self._options.port is None else self._options.port
                self._start_http(storage, host, port)
            self._watcher = RuleWatcher(self._options.rules, holder, config).start()
            self._rules.start()
            self._inference.start()
            self._supervisor.start()
            self._supervisor.apply(self._specs(site))
            if not self._options.cluster:  # (cluster: recording follows ownership; not yet)
                # continuous recording of the cameras' own streams, beside the analysis
                self._recordings = RecordingService(site, storage.repository)
                self._recordings.start()
        except BaseException:
            self._abort()
            raise
        self._keeper = threading.Thread(target=self._keep, name="service-keeper", daemon=True)
        self._keeper.start()
        log.info(
            "serving %d camera(s) of %s (%s decode)",
            len(self._specs(site)),
            config.site.name,
            self._mode,
        )

    def _abort(self) -> None:
        for stop in (
            self._recordings.stop if self._recordings else None,
            self._watcher.stop if self._watcher else None,
            self._supervisor.stop if self._supervisor else None,
            self._inference.stop if self._inference else None,
            self._rules.stop if self._rules else None,
            self._recorder.close if self._recorder else None,
            self._http.stop if self._http else None,
            self._api.stop if self._api else None,
            self._bus.stop if self._bus else None,
            self._listener.close if self._listener else None,
            self._alerts.close if self._alerts else None,
            self._witness.stop if self._witness else None,
            self._storage.close if self._storage else None,
        ):
            if stop is not None:
                try:
                    stop()
                except Exception:
                    log.exception("cleanup after a failed start")

    # -- stop --------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> StopReport:
        """Stop gracefully: decoders, then the frames in flight, then incidents and clips.

        Idempotent; the HTTP server answers (``stopping``) until the very end.
        """
        started = time.monotonic()
        if self._stopping.is_set():
            self._stopped.wait(timeout)
            return StopReport((), 0.0)
        self._stopping.set()
        closed: list[IncidentChange] = []
        try:
            if self._keeper is not None:
                self._keeper.join(5.0)
            if self._watcher is not None:
                self._watcher.stop()
            if self._recordings is not None:
                self._recordings.stop()
            if self._supervisor is not None:
                self._supervisor.stop()
            if self._inference is not None:
                self._inference.stop(timeout)
            if self._rules is not None:
                closed = self._rules.stop(timeout)
            if self._recorder is not None:
                self._recorder.close(timeout)
        finally:
            if self._http is not None:
                self._http.stop()
            if self._api is not None:
                self._api.stop()
            if self._bus is not None:  # after the last incident write: its change is sent
                self._bus.stop()
            if self._listener is not None:
                self._listener.close()
            if self._alerts is not None:  # alerts: send what is due; the rest stays queued
                try:
                    self._alerts.stop(drain=_ALERT_DRAIN)
                    self._alerts.close()
                except Exception:
                    log.exception("stopping the alerts")
            if self._witness is not None:  # after the last incident change: the final head
                self._witness.stop()
            if self._storage is not None:
                self._storage.close()
            self._stopped.set()
        report = StopReport(tuple(closed), time.monotonic() - started)
        log.info("stopped in %.1f s; %d incident(s) closed", report.seconds, len(report.closed))
        return report

    # -- reload ------------------------------------------------------------------------------

    def reload_site(self) -> ReloadPlan | None:
        """Re-read the site file and apply its camera changes; ``None`` if it was refused.

        A site file that does not validate (or names a model that cannot load) is refused: the
        running configuration stays and ``/readyz`` shows why under ``site``. Changes to blocks
        that need a restart (storage, evidence, privacy, runtime, site) are logged as such.
        """
        with self._reload_lock:
            self._site_stamp = self._stamp()
            try:
                new = load_site(self._site.path)
                rebuilt = self._detectors.update(_models_to_load(new))
            except SafewatchError as error:
                message = error.format() if isinstance(error, ConfigError) else str(error)
                self.status.site_health = ComponentHealth(
                    ok=False, message=f"site file refused, previous one runs: {message}"
                )
                log.error("site reload refused: %s", message)
                return None
            old = self._site.config
            for block in ("storage", "evidence", "privacy", "runtime", "site", "retention"):
                if getattr(old, block) != getattr(new.config, block):
                    log.warning(
                        "site reload: the %r block changed; it applies after a restart", block
                    )
            restart: list[str] = []
            if old.tracker != new.config.tracker:
                restart = [key for key, cam in new.config.cameras.items() if cam.enabled]
            self._site = new
            if self._api is not None:
                self._api.site_changed(new)
            if self._alerts is not None:  # alerts: routes, templates and channels apply live
                self._alerts.reconfigure(new)
            elif new.config.alerts.channels:
                log.warning("site reload: alerts were off at start; they apply after a restart")
            plan = self.supervisor.apply(self._specs(new), restart=restart)
            recorded = ""
            if self._recordings is not None:  # recorders follow their cameras' recording blocks
                changes = self._recordings.apply(new)
                recorded = (
                    f"; recording started {list(changes.started)}, stopped "
                    f"{list(changes.stopped)}, restarted {list(changes.restarted)}"
                )
            if _camera_switches(old) != _camera_switches(new.config) and self._holder is not None:
                # Rules are checked against the site's (enabled) cameras: watch again with the new
                # ones before the reload is reported, so /readyz never shows the new cameras
                # beside rule findings (unwatched, dropped) made against the old ones.
                if self._watcher is not None:
                    self._watcher.stop()
                self._watcher = RuleWatcher(self._options.rules, self._holder, new.config).start()
            self.status.site_health = ComponentHealth(
                ok=True,
                message=f"reloaded {new.path}: added {list(plan.added)}, removed "
                f"{list(plan.removed)}, changed {list(plan.changed)}; models rebuilt {rebuilt}"
                f"{recorded}",
            )
            for listener in self.site_listeners:
                listener(new)
            return plan

    # -- cluster ownership (safewatch.runtime.cluster_owner) ---------------------------------

    def own_camera(self, camera_id: str) -> ReloadPlan:
        """Start running ``camera_id`` (``serve --cluster``: its lease is ours), like a camera
        added to the site file."""
        with self._reload_lock:
            self._owned = frozenset({*(self._owned or ()), camera_id})
            return self.supervisor.apply(self._specs(self._site))

    def disown_camera(self, camera_id: str, *, write: bool = True) -> ReloadPlan:
        """Stop running ``camera_id`` like a camera removed from the site file: its episodes end
        at its last frame and its incidents close. ``write=False`` (ownership lost) stops it
        without writing anything: its new owner takes its incidents, and the fence would refuse
        this process's writes anyway."""
        with self._reload_lock:
            self._owned = frozenset((self._owned or frozenset()) - {camera_id})
            if not write:
                self._lost.add(camera_id)
            try:
                return self.supervisor.apply(self._specs(self._site))
            finally:
                self._lost.discard(camera_id)

    def owned_cameras(self) -> frozenset[str] | None:
        """The cameras this process may run (``None``: every enabled camera of the site)."""
        return self._owned

    def _specs(self, site: LoadedSite) -> dict[str, WorkerSpec]:
        """The decode workers wanted now: the site's enabled cameras this process owns."""
        specs = worker_specs(site, self._decode_log_level())
        owned = self._owned
        return specs if owned is None else {k: v for k, v in specs.items() if k in owned}

    # -- status ------------------------------------------------------------------------------

    def snapshot(self) -> RuntimeSnapshot:
        """Counters and times of every camera (:class:`~safewatch.runtime.status.RuntimeStatus`)."""
        return self.status.snapshot()

    def liveness(self) -> Liveness:
        """``/healthz`` (see :class:`~safewatch.runtime.status.RuntimeStatus`)."""
        return self.status.liveness()

    def readiness(self) -> Readiness:
        """``/readyz`` (see :class:`~safewatch.runtime.status.RuntimeStatus`)."""
        return self.status.readiness()

    def metrics(self) -> bytes:
        """Prometheus exposition text."""
        return self.status.metrics()

    # -- internals ---------------------------------------------------------------------------

    def _privacy_for(self, camera_id: str) -> PrivacyConfig:
        return self._site.config.privacy_for(camera_id)

    def _zones_for(self, camera_id: str) -> tuple[Zone, ...]:
        holder = self._holder
        return () if holder is None else holder.current().rules.zones_for(camera_id)

    def _tracker_for(self, camera_id: str) -> CameraTracker:
        config = self._site.config
        camera = config.cameras[camera_id]
        return build_tracker(self._site, camera_id, camera)

    def _camera_ended(self, camera_id: str) -> None:
        """A file camera played to its end: finish its episodes once its last frame is judged.

        The decode worker is gone, but its last frames may still be in the mailbox, in an
        inference batch or in the rules queue. Each frame offered to the mailbox is analysed, or
        counted as dropped (replaced there) or stale; once those add up to what was offered, the
        rules stage ends the camera's episodes at its last frame and closes its
        incidents, as ``safewatch audit`` does at the end of a file.
        """
        threading.Thread(
            target=self._finish_when_judged, args=(camera_id,), name="camera-ended", daemon=True
        ).start()

    def _finish_when_judged(self, camera_id: str, quiet_seconds: float = 30.0) -> None:
        rules, inference = self._rules, self._inference
        if rules is None or inference is None:
            return
        last, changed = -1, time.monotonic()
        while not self._stopped.is_set():
            delivered = self._mailbox.offered().get(camera_id, 0)
            evaluated = rules.counters().get(camera_id)
            counted = inference.counters().get(camera_id)
            judged = (
                (evaluated.analysed if evaluated is not None else 0)
                + self._mailbox.dropped().get(camera_id, 0)
                + (counted.stale + counted.torn if counted is not None else 0)
            )
            if judged >= delivered and not self._mailbox.holds(camera_id):
                break
            if judged != last:
                last, changed = judged, time.monotonic()
            elif time.monotonic() - changed > quiet_seconds:
                log.warning(
                    "camera %s: %d of %d frames accounted for after its end; finishing anyway",
                    camera_id,
                    judged,
                    delivered,
                )
                break
            time.sleep(0.1)
        rules.finish_camera(camera_id)

    def _camera_stopped(self, camera_id: str) -> None:
        if self._rules is not None:
            if camera_id in self._lost:
                self._rules.drop_camera(camera_id)
            else:
                self._rules.finish_camera(camera_id, reason=self._stop_reason(camera_id))
                if self._recorder is not None:  # its clips stored while it is still ours
                    self._recorder.end_camera(camera_id)
                    self._recorder.flush(10.0)
        self.live.forget(camera_id)
        if self._api is not None:
            self._api.camera_gone(camera_id)

    def _witness_alert(self, witness: ChainWitness) -> None:
        """Each chain witness also leaves through ``alerts.witness``'s channels, when set (and
        this node sends them: :attr:`ServeOptions.witness_alerts`)."""
        if self._alerts is not None and self._options.witness_alerts:
            self._alerts.witness(witness)

    def _stop_reason(self, camera_id: str) -> str:
        """Why a running camera stopped (the site in force is already the new one)."""
        gone = camera_gone_reason(camera_id, self._site.config)
        if gone is not None:
            return f"{gone} while it ran"
        if self._owned is not None and camera_id not in self._owned:
            return "camera handed over to another analyzer"
        return "camera restarted: its settings changed"

    def _start_http(self, storage: SiteStorage, host: str, port: int) -> None:
        """The dashboard, its API and the operations endpoints: in the API process, or here."""
        if self._options.api == "process":
            self._start_api_process(host, port)
            return
        if self._options.api == "ops":  # operations endpoints only, unauthenticated
            ops = ApiSettings(site_name=self._site.config.site.name)
            self._http = HttpServer(create_app(ops, self), host, port)
            self._http.start()
            return
        dashboard = Dashboard.create(
            lambda: self._site,
            self._options.rules,
            storage,
            rules=self,
            live=self.live,
            settings=DashboardSettings(query_cache_seconds=self._options.query_cache_seconds),
        )
        if self._bus is not None:  # every node's incident changes, from the bus
            self._bus.follow(self.live)
        settings = ApiSettings(site_name=self._site.config.site.name)
        self._http = HttpServer(create_app(settings, self, dashboard), host, port)
        self._http.start()

    def _start_api_process(self, host: str, port: int) -> None:
        """Bind the HTTP socket here and serve it from the API process."""
        if self._holder is None:
            raise RuntimeError("rules before the API")
        self._listener = bind_listener(host, port)
        generation = self._holder.current()
        spec = ApiProcessSpec(
            site=self._site,
            rules_path=self._options.rules,
            rules=RulesPush(generation, self._holder.status),
            nice=self._options.api_nice,
            log_level=self._decode_log_level(),
            query_cache_seconds=self._options.query_cache_seconds,
            follow_bus=self._options.cluster,
        )
        restarts = self.runtime_metrics.api_restarts
        self._api = ApiLink(
            spec, self._listener, self, restarted=lambda why: restarts.labels(reason=why).inc()
        )
        self._api.start()

    def _publish_live(
        self,
        frame: Frame,
        tracked: TrackedFrame,
        events: Sequence[RuleEvent],
        changes: Sequence[IncidentChange],
    ) -> None:
        """The frame listener of the dashboard: to the API process, or to the hub here."""
        if self._api is not None:
            self._api.on_frame(frame, tracked, events, changes)
        else:
            self.live.on_frame(frame, tracked, events, changes)

    # -- rules for the dashboard (safewatch.api.dashboard.RuleControl) ----------------------

    def rule_generation(self) -> RuleGeneration:
        """The rule set judging frames now."""
        if self._holder is None:
            raise RuntimeError("the service is not started")
        return self._holder.current()

    def rule_status(self) -> ReloadStatus:
        """The latest rule reload outcome."""
        if self._holder is None:
            raise RuntimeError("the service is not started")
        return self._holder.status

    def reload_rules(self) -> ReloadStatus:
        """Reload the rule files now (the dashboard saved one); never raises for bad files."""
        watcher = self._watcher
        if watcher is None:
            if self._holder is None:
                raise RuntimeError("the service is not started")
            watcher = RuleWatcher(self._options.rules, self._holder, self._site.config)
        return watcher.reload()

    def acknowledge_dropped(self, rule_ids: Sequence[str]) -> ReloadStatus:
        """An admin accepts that these dropped rules are gone on purpose (``/readyz`` is
        ``degraded`` until then; see :attr:`ReloadStatus.dropped`).

        Raises:
            ValueError: A rule named is not flagged as dropped.
        """
        if self._holder is None:
            raise RuntimeError("the service is not started")
        status = self._holder.acknowledge(rule_ids)
        log.warning("rules: removal of %s acknowledged", ", ".join(rule_ids))
        return status

    def _decode_log_level(self) -> int:
        return logging.getLogger("safewatch").getEffectiveLevel()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._site.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _keep(self) -> None:
        """Restart a dead core thread; apply edits of the site file."""
        poll = self._options.site_poll_seconds
        while not self._stopping.wait(poll):
            self.status.observe()  # /readyz: analysis behind for long
            for name, worker in (("inference", self._inference), ("rules", self._rules)):
                if worker is not None and not worker.alive() and not self._stopping.is_set():
                    log.error("%s thread died; restarting it", name)
                    self.runtime_metrics.errors.labels(stage=f"{name}-thread").inc()
                    worker.start()
            if self._api is not None and not self._stopping.is_set():
                try:
                    self._api.check()
                except Exception:
                    log.exception("restarting the API process")
            if self._options.watch_site and self._stamp() != self._site_stamp:
                time.sleep(0.2)  # let the editor finish writing
                try:
                    self.reload_site()
                except Exception:
                    log.exception("site reload failed")
