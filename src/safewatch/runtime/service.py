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

The parts it orchestrates live beside it: what the site asks to run
(:mod:`~safewatch.runtime.site_specs`), which cameras this process owns
(:mod:`~safewatch.runtime.ownership`), the rules and their watcher
(:mod:`~safewatch.runtime.rule_files`), the HTTP side (:mod:`~safewatch.runtime.http_front`),
continuous recording (:mod:`~safewatch.runtime.recording_link`) and the end of a file camera
(:mod:`~safewatch.runtime.camera_end`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from safewatch.alerts.service import AlertService, start_alerts
from safewatch.api.live import LiveHub
from safewatch.bus.redis_streams import BusKeys
from safewatch.config.loader import LoadedSite, load_site
from safewatch.config.ruleset import rule_metric_field
from safewatch.config.runtime import DecodeMode
from safewatch.config.site import PrivacyConfig
from safewatch.config.sources import source_kind
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.detect.pool import DetectorFactory, DetectorPool
from safewatch.detect.protocol import Detector
from safewatch.domain import Zone
from safewatch.errors import ConfigError, ModelError, SafewatchError, SourceError, StorageError
from safewatch.heap import freeze_start_up_objects
from safewatch.incidents.abandoned import close_abandoned_incidents
from safewatch.incidents.faces import face_detector
from safewatch.incidents.manager import IncidentChange, IncidentManager
from safewatch.incidents.recorder import EvidenceRecorder
from safewatch.incidents.site_storage import SiteStorage, clip_spool, open_site_storage
from safewatch.incidents.witness import ChainWitness, WitnessWriter
from safewatch.ingest.factory import source_problem
from safewatch.pipeline.stages import build_tracker
from safewatch.pipeline.step import FrameListener
from safewatch.rules import calibrations_from_site, load_rules
from safewatch.rules.reload import ReloadingEngine, ReloadStatus, RuleGeneration
from safewatch.runtime.bus_link import ClusterBus
from safewatch.runtime.camera_end import finish_when_judged
from safewatch.runtime.camera_worker import WorkerSpec
from safewatch.runtime.clip_sweep import ClipSweeper, start_clip_sweeper
from safewatch.runtime.evaluation import RulesWorker
from safewatch.runtime.evidence_warmup import warm_up_evidence
from safewatch.runtime.health import (
    ComponentHealth,
    Liveness,
    Readiness,
)
from safewatch.runtime.http_front import HttpFront
from safewatch.runtime.inference import InferenceWorker
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.metrics import RuntimeMetrics, RuntimeSnapshot
from safewatch.runtime.options import ApiMode, ServeOptions
from safewatch.runtime.ownership import CameraOwnership
from safewatch.runtime.recording_link import RecordingLink
from safewatch.runtime.rings import RingCache
from safewatch.runtime.rule_files import RuleFiles
from safewatch.runtime.shm import sweep_orphan_rings
from safewatch.runtime.site_specs import (
    camera_calibrations,
    camera_switches,
    models_to_load,
    overlap_models,
    worker_specs,
)
from safewatch.runtime.status import RuntimeParts, RuntimeStatus
from safewatch.runtime.storage_space import StorageSpaceCollector, storage_roots
from safewatch.runtime.supervisor import ReloadPlan, Supervisor
from safewatch.track import CameraTracker

__all__ = ["ApiMode", "RuntimeService", "ServeOptions", "StopReport", "worker_specs"]

log = logging.getLogger(__name__)

_ALERT_DRAIN = 5.0
"""Seconds a graceful stop keeps sending due alerts (the rest stay queued for the next start)."""

_RESTART_BLOCKS = ("storage", "evidence", "runtime", "site", "retention", "cluster")
"""Site-file blocks a reload does not apply (logged as applying after a restart). ``cluster``:
the cluster member fixes its capacity, labels and lease length when it joins, so a reload that
changed them would otherwise be silently ignored."""


@dataclass(frozen=True, slots=True)
class StopReport:
    """What a graceful stop finished."""

    closed: tuple[IncidentChange, ...]
    seconds: float


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
        # cluster mode: the cameras this process owns (every enabled camera of the site without)
        self._ownership = CameraOwnership(options.cluster)
        self.site_listeners: list[Callable[[LoadedSite], None]] = []
        self._mode: DecodeMode = options.decode or site.config.runtime.decode
        self._runtime = site.config.runtime  # as started: a reload applies none of it
        self._detectors = DetectorPool({}, detector_factory)
        self._overlap_detectors = DetectorPool({}, detector_factory)  # site_specs.overlap_models
        self._overlap_lane = False  # runtime.inference.overlap as it was at start
        self.runtime_metrics = RuntimeMetrics()
        # -- dashboard (safewatch.api): live frames and incident changes for the browser ----
        self.live = LiveHub()
        restarts = self.runtime_metrics.api_restarts
        self._front = HttpFront(
            self,
            options,
            self._decode_log_level,
            restarted=lambda why: restarts.labels(reason=why).inc(),
        )
        self._listeners = [*listeners, self._front.on_frame]
        self._mailbox = FrameMailbox()
        self._rings = RingCache()
        self._storage: SiteStorage | None = None
        self._alerts: AlertService | None = None
        self._witness: WitnessWriter | None = None
        self._recorder: EvidenceRecorder | None = None
        self._sweeper: ClipSweeper | None = None  # serve --cluster: clips of cameras not run
        self._recordings = RecordingLink(self._ownership, options.cluster)
        self._rule_files = RuleFiles(options.rules)
        self._rules: RulesWorker | None = None
        self._engine: ReloadingEngine | None = None  # a site reload offers it calibrations
        self._inference: InferenceWorker | None = None
        self._supervisor: Supervisor | None = None
        self._bus: ClusterBus | None = None  # serve --cluster: Redis and the bus feeds
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._keeper: threading.Thread | None = None
        # Per file camera that ended: set to cancel the wait for its last frames (its stop).
        self._end_waits: dict[str, threading.Event] = {}
        self._end_waits_lock = threading.Lock()
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
        return self._front.url

    def start(self) -> None:
        """Open storage, load rules and models, start the HTTP server, threads and cameras.

        Raises:
            SafewatchError: Anything wrong with the site, rules, models, database or address,
                before any camera starts.
        """
        site = self._site
        config = site.config
        rules = load_rules(self._options.rules, config)
        # Every camera's face model, not only the site-wide one warm_up_evidence loads: a
        # camera's privacy override naming a missing model started and lost all its evidence.
        self._check_face_models(site)
        self._detectors.update(models_to_load(site))
        self._overlap_lane = config.runtime.inference.overlap  # runtime: fixed until a restart
        self._update_overlap(site)
        warm_up_evidence(config)
        storage = open_site_storage(site)
        self._storage = storage
        try:
            # alerts: hook the outbox into the repository before any incident can be written
            self._alerts = start_alerts(site, storage)
            holder = self._rule_files.hold(rules)
            spool = clip_spool(config.storage, site.base_dir)
            shared = self._options.cluster and config.storage.evidence_s3 is None
            self._recorder = EvidenceRecorder(
                storage.evidence,
                storage.repository,
                config.evidence,
                spool=spool,
                # a cluster's shared spool: each camera's next owner finishes its lost clips
                recover=not shared,
                privacy_for=self._privacy_for,
                zones_for=self._zones_for,
                on_full="drop",
            )
            if shared:  # and one analyzer those of cameras nobody runs any more
                self._sweeper = start_clip_sweeper(lambda: self._site, storage, spool)
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
                on_write_failure=self._incident_write_failed,
            )
            engine = ReloadingEngine(holder, config.site.timezone, calibrations_from_site(config))
            self._engine = engine
            if self._options.cluster:  # incident changes and overlays to the other nodes
                self._bus = ClusterBus(
                    storage.repository, config.cluster.redis_url, BusKeys.for_site(config)
                )
                if self._bus.listener is not None:
                    self._listeners.append(self._bus.listener)
            self._rules = RulesWorker(
                self._tracker_for,
                engine,
                incidents,
                self.runtime_metrics,
                listeners=self._listeners,
                replays_from_start=self._replays_from_start,
                on_silent=self._camera_silent,
                on_changes=self._front.on_changes,
                ppe_required=engine.ppe_required,
            )
            # before any camera: the shared memory a killed server's process group left behind
            orphans = sweep_orphan_rings()
            if orphans:
                log.warning(
                    "removed %d frame ring(s) of a safewatch server no longer running from "
                    "shared memory: %s",
                    len(orphans),
                    ", ".join(orphans),
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
                overlap=self._overlap_detector if self._overlap_lane else None,
                overlap_ready=lambda: len(self._overlap_detectors) > 0,
            )
            self.status.parts = RuntimeParts(
                self._supervisor,
                self._inference,
                self._rules,
                holder,
                storage,
                recordings=self._recordings,
                incidents=incidents,
                recorder=self._recorder,
            )
            self.runtime_metrics.watch(self.status.snapshot)
            # storage is a restart block: the folders and the guard stay those of the start
            self.runtime_metrics.registry.register(
                StorageSpaceCollector(
                    storage_roots(site, storage.engine), config.storage.recordings_min_free_gb
                )
            )
            if self._options.http:
                http = config.runtime.http
                host = self._options.host or http.host
                port = http.port if self._options.port is None else self._options.port
                self._front.start(storage, holder, self._bus, host, port)
            self._rule_files.watch(config)
            self._rules.start()
            self._inference.start()
            self._supervisor.start()
            self._supervisor.apply(self._specs(site))
            self._recordings.start(site, storage.repository)
        except BaseException:
            self._abort()
            raise
        self._keeper = threading.Thread(target=self._keep, name="service-keeper", daemon=True)
        self._keeper.start()
        freeze_start_up_objects()
        log.info(
            "serving %d camera(s) of %s (%s decode)",
            len(self._specs(site)),
            config.site.name,
            self._mode,
        )

    def _overlap_detector(self, model: str) -> Detector:
        """The overlap lane's detector of ``model``: its second session, or the first lane's
        (shared, taking turns) when the site has none (one camera, or models not split)."""
        try:
            return self._overlap_detectors.get(model)
        except ModelError:  # not split, or dropped by a reload between the round's checks
            return self._detectors.get(model)

    def _update_overlap(self, site: LoadedSite) -> None:
        """Build (or drop) the overlap lane's second sessions for ``site``.

        They only speed things up, so one that cannot be built (memory, say) leaves the lane
        without sessions, and idle, instead of refusing the start or a reload whose first-lane
        models were already swapped in: the reload stays all or nothing.
        """
        if not self._overlap_lane:
            return  # no lane to serve (overlap was off at start; runtime needs a restart)
        try:
            self._overlap_detectors.update(overlap_models(site))
        except ModelError as error:
            self._overlap_detectors.update({})
            log.warning("no second inference sessions, the overlap lane idles: %s", error)

    def _abort(self) -> None:
        for stop in (
            self._recordings.stop,
            self._rule_files.stop,
            self._supervisor.stop if self._supervisor else None,
            self._inference.stop if self._inference else None,
            self._rules.stop if self._rules else None,
            self._sweeper.stop if self._sweeper else None,
            self._recorder.close if self._recorder else None,
            self._front.stop,
            self._bus.stop if self._bus else None,
            self._front.close,
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
            self._rule_files.stop()
            self._recordings.stop()
            if self._supervisor is not None:
                self._supervisor.stop()
            if self._inference is not None:
                self._inference.stop(timeout)
            if self._rules is not None:
                closed = self._rules.stop(timeout)
            if self._sweeper is not None:
                self._sweeper.stop()
            if self._recorder is not None:
                self._recorder.close(timeout)
        finally:
            self._front.stop()
            if self._bus is not None:  # after the last incident write: its change is sent
                self._bus.stop()
            self._front.close()
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
        that need a restart (storage, evidence, runtime, site, retention, cluster) are logged as
        such (``privacy`` is not one: evidence and the live view read it per picture from the
        site in force, so it applies from the next picture, and a face model it names that
        cannot load refuses the reload). ``cluster`` needs one because the cluster member fixes
        its capacity, labels and lease length when it joins
        (:mod:`safewatch.runtime.cluster_owner`). Changed camera calibrations go to the rule
        engine, which measures with them from the next frame
        (:meth:`ReloadingEngine.offer_calibrations`), and the rules are checked against them.
        """
        with self._reload_lock:
            self._site_stamp = self._stamp()
            try:
                new = load_site(self._site.path)
                self._check_calibrations_kept(new)
                self._check_new_file_sources(new)
                rebuilt = self._detectors.update(models_to_load(new))
                self._check_face_models(new)
            except SafewatchError as error:
                message = error.format() if isinstance(error, ConfigError) else str(error)
                self.status.site_health = ComponentHealth(
                    ok=False, message=f"site file refused, previous one runs: {message}"
                )
                log.error("site reload refused: %s", message)
                return None
            old = self._site.config
            for block in _RESTART_BLOCKS:
                if getattr(old, block) != getattr(new.config, block):
                    log.warning(
                        "site reload: the %r block changed; it applies after a restart", block
                    )
            restart: list[str] = []
            if old.tracker != new.config.tracker:
                restart = [key for key, cam in new.config.cameras.items() if cam.enabled]
            self._update_overlap(new)  # after the refusal checks: never refuses the reload
            self._site = new
            self._front.site_changed(new)
            if self._alerts is not None:  # alerts: routes, templates and channels apply live
                self._alerts.reconfigure(new)
            elif new.config.alerts.channels:
                log.warning("site reload: alerts were off at start; they apply after a restart")
            plan = self.supervisor.apply(self._specs(new), restart=restart)
            # recorders follow their recording blocks; never raises (reported in /readyz)
            recorded = self._recordings.apply(new)
            calibrations = camera_calibrations(new.config)
            before = camera_calibrations(old)
            recalibrated = sorted(
                camera
                for camera in calibrations.keys() | before.keys()
                if calibrations.get(camera) != before.get(camera)
            )
            if recalibrated and self._engine is not None:
                # Before the rules are watched again: a rule set that the new calibrations
                # make valid (a camera added with one and its rule in metres) must never be
                # judged with the old ones (ReloadingEngine.offer_calibrations).
                self._engine.offer_calibrations(calibrations_from_site(new.config))
                log.info(
                    "site reload: calibration of camera(s) %s changed; their rules in metres "
                    "measure with the new one from their next frame",
                    ", ".join(recalibrated),
                )
            if (
                camera_switches(old) != camera_switches(new.config) or recalibrated
            ) and self._rule_files.holder is not None:
                # Rules are checked against the site's (enabled) cameras and calibrations: watch
                # again with the new ones before the reload is reported, so /readyz never shows
                # the new cameras beside rule findings (unwatched, dropped, uncalibrated) made
                # against the old ones.
                self._rule_files.watch(new.config)
            self.status.site_health = ComponentHealth(
                ok=True,
                message=f"reloaded {new.path}: added {list(plan.added)}, removed "
                f"{list(plan.removed)}, changed {list(plan.changed)}; models rebuilt {rebuilt}"
                f"{recorded}",
            )
            for listener in self.site_listeners:
                listener(new)
            return plan

    def _check_calibrations_kept(self, new: LoadedSite) -> None:
        """Refuse a site file that takes away a calibration the running rules measure with.

        The rules in force were checked against the old calibrations; without this check the
        engine got the new ones (none for that camera) at once, so a rule in metres there ended
        its open incidents and was skipped from then on, while the rule reload the new site
        triggered was refused ("runs on uncalibrated camera") and ``/readyz`` stayed ready.

        Raises:
            ConfigError: A running rule in metres applies to a camera the new file leaves
                enabled without a calibration.
        """
        holder = self._rule_files.holder
        if holder is None:
            return
        rules = holder.current().rules
        lost: list[str] = []
        for camera_id, camera in new.config.cameras.items():
            old = self._site.config.cameras.get(camera_id)
            if camera.calibration is not None or old is None or old.calibration is None:
                continue
            if not camera.enabled:
                continue
            needing = [
                rule.id
                for rule in rules.rules
                if rule.enabled and rule_metric_field(rule) and rules.applies_to(rule, camera_id)
            ]
            if needing:
                lost.append(f"camera {camera_id!r} (rules {', '.join(needing)})")
        if lost:
            raise ConfigError(
                f"{new.path}: the calibration of {'; '.join(lost)} is removed, but those rules "
                "measure in metres there: change or disable them first"
            )

    def _check_new_file_sources(self, new: LoadedSite) -> None:
        """Refuse a site file whose new, newly enabled or re-pointed file camera does not open.

        The reload was accepted and the camera's worker then failed on its file (empty,
        truncated, not a video), so an edit of a working camera's ``source`` replaced it with
        none until the next restart. Opened as ``check-config`` opens it
        (:func:`safewatch.ingest.factory.source_problem`); cameras whose source and switch are
        unchanged are not looked at again (their fate does not depend on this reload). Under
        ``serve --cluster`` only the cameras this node owns: an API node or another analyzer
        may lack a file only its host mounts, and refusing the whole site there kept every other
        change out of it (the node that claims a new camera reports its file then).

        Raises:
            SourceError: Each such camera and why its file cannot be read.
        """
        old = self._site.config.cameras
        owned = self._ownership.owned
        problems = []
        for camera_id, camera in new.config.cameras.items():
            before = old.get(camera_id)
            if owned is not None and camera_id not in owned:
                continue
            if not camera.enabled or (
                before is not None and before.enabled and before.source == camera.source
            ):
                continue
            problem = source_problem(camera_id, camera, new.base_dir)
            if problem is not None:
                problems.append(f"camera {camera_id!r}: {problem}")
        if problems:
            raise SourceError(f"{new.path}: " + "; ".join(problems))

    # -- cluster ownership (safewatch.runtime.cluster_owner) ---------------------------------

    def own_camera(
        self, camera_id: str, *, previous_owner: str | None = None, reason: str = "handover"
    ) -> ReloadPlan:
        """Start running ``camera_id`` (``serve --cluster``: its lease is ours), like a camera
        added to the site file; its recording continues here, and the clips its previous owner
        left unfinished in the shared spool are stored, chained with ``reason``
        (``analyzer_lost`` after a takeover from ``previous_owner``)."""
        with self._reload_lock:
            self._ownership.gain(camera_id)
            # The analysis first: the recorder's launch touches the shared recording folder
            # (mkdir, naming a dead owner's segments), where an NFS error or a hang must not
            # keep the camera this node holds the lease for from being analysed. Recording
            # errors are reported (/readyz, safewatch_recording_up), never raised here.
            plan = self.supervisor.apply(self._specs(self._site))
            self._recordings.apply(self._site)
            if self._recorder is not None:
                self._recorder.adopt_clips(camera_id, reason=reason, previous_owner=previous_owner)
            return plan

    def disown_camera(self, camera_id: str, *, write: bool = True) -> ReloadPlan:
        """Stop running ``camera_id`` like a camera removed from the site file: its episodes end
        at its last frame and its incidents close. ``write=False`` (ownership lost) stops it
        without writing anything: its new owner takes its incidents, and the fence would refuse
        this process's writes anyway."""
        with self._reload_lock, self._ownership.give_up(camera_id, write=write):
            plan = self.supervisor.apply(self._specs(self._site))
            # its open segment closed before the lease goes: the next owner continues
            self._recordings.apply(self._site)
            return plan

    def owned_cameras(self) -> frozenset[str] | None:
        """The cameras this process may run (``None``: every enabled camera of the site)."""
        return self._ownership.owned

    def _specs(self, site: LoadedSite) -> dict[str, WorkerSpec]:
        """The decode workers wanted now: the site's enabled cameras this process owns."""
        return self._ownership.select(
            worker_specs(site, self._decode_log_level(), runtime=self._runtime)
        )

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

    @staticmethod
    def _check_face_models(site: LoadedSite) -> None:
        """Load every face detector ``site``'s privacy names (site-wide and each camera's
        override), so a missing one refuses the start or the reload.

        Privacy applies from the next picture (it is read per picture); a ``privacy.faces``
        naming a model that is not there would otherwise fail every evidence still from then on.
        """
        for camera_id, camera in site.config.cameras.items():
            if not camera.enabled:
                continue  # makes no evidence: its model is checked when it is enabled
            face = site.config.privacy_for(camera_id).face_model
            if face:
                face_detector(face)

    def _privacy_for(self, camera_id: str) -> PrivacyConfig:
        return self._site.config.privacy_for(camera_id)

    def _zones_for(self, camera_id: str) -> tuple[Zone, ...]:
        holder = self._rule_files.holder
        return () if holder is None else holder.current().rules.zones_for(camera_id)

    def _tracker_for(self, camera_id: str) -> CameraTracker:
        config = self._site.config
        camera = config.cameras[camera_id]
        return build_tracker(self._site, camera_id, camera)

    def _camera_ended(self, camera_id: str, incarnation: int) -> None:
        """A file camera's worker ``incarnation`` played to its end: finish its episodes once its
        last frame is judged (:mod:`safewatch.runtime.camera_end`), on a thread of its own, until
        the camera is stopped or restarted (:meth:`_camera_stopped` cancels the wait).

        The incarnation is the ended worker's, passed by the supervisor: read from its plans
        here, it was whichever ran when this ran, and a camera reconfigured meanwhile had the
        new worker's frames awaited and its new run finished."""
        rules, inference, supervisor = self._rules, self._inference, self._supervisor
        if rules is None or inference is None or supervisor is None:
            return
        plan = supervisor.plans().get(camera_id)
        if plan is None or plan.incarnation != incarnation:
            return  # stopped or restarted meanwhile: its stop finished the run
        cancelled = threading.Event()
        with self._end_waits_lock:
            previous = self._end_waits.pop(camera_id, None)
            self._end_waits[camera_id] = cancelled
        if previous is not None:
            previous.set()
        threading.Thread(
            target=finish_when_judged,
            args=(
                camera_id,
                incarnation,
                self._mailbox,
                rules,
                inference,
                self._stopped,
                cancelled,
            ),
            name="camera-ended",
            daemon=True,
        ).start()

    def _camera_stopped(self, camera_id: str) -> None:
        with self._end_waits_lock:
            waiting = self._end_waits.pop(camera_id, None)
        if waiting is not None:
            waiting.set()  # its end is no longer awaited: this stop finishes the run
        if self._rules is not None:
            if self._ownership.is_lost(camera_id):
                self._drop_run(self._rules, camera_id)
                if self._recorder is not None:  # its clips let go, for the next owner
                    self._recorder.drop_camera(camera_id)
            else:
                reason = self._ownership.stop_reason(camera_id, self._site.config)
                self._rules.finish_camera(camera_id, reason=reason)
                if self._recorder is not None:  # its clips stored while it is still ours
                    self._recorder.end_camera(camera_id)
                    self._recorder.flush(10.0)
        self.live.forget(camera_id)
        self._front.camera_gone(camera_id)
        self.runtime_metrics.forget_camera(camera_id)  # after the rules stage finished with it

    def _drop_run(self, rules: RulesWorker, camera_id: str) -> None:
        """Have the rules stage forget a lost camera's run, waiting as long as that takes.

        Until its drop marker is processed the camera stays stopping (``disown_camera`` does not
        return, so the cluster member does not claim it again): a marker processed after a new
        run started at epoch + 1 would drop that run's episodes and mark its frames as of an
        ended run, and one never queued (a full queue) would let the old run's episodes go on
        under the new epoch. Only a stop of the whole service ends the wait early.
        """
        if rules.drop_camera(camera_id):
            return
        started = time.monotonic()
        log.warning(
            "camera %s: the rules stage has not dropped its lost run yet (busy or stuck): the "
            "camera stays stopping, not claimed again, until it has",
            camera_id,
        )
        while not rules.drop_camera(camera_id):
            if self._stopping.is_set():
                log.warning("camera %s: stopping before its lost run was dropped", camera_id)
                return
        log.warning(
            "camera %s: lost run dropped after %.0f s more", camera_id, time.monotonic() - started
        )

    def _camera_silent(self, camera_id: str) -> None:
        """A camera dark for an outage's length: its closed incidents' clips finish now."""
        if self._recorder is not None:
            self._recorder.end_camera(camera_id)

    def _replays_from_start(self, camera_id: str) -> bool:
        """Whether the camera's restarted worker reads its file from the start on the file's
        own clock (``realtime: false``): the rules stage then skips what it already analysed."""
        camera = self._site.config.cameras.get(camera_id)
        return (
            camera is not None
            and source_kind(camera.source.strip()) == "file"
            and (not camera.realtime)
        )

    def _incident_write_failed(self, _error: StorageError) -> None:
        """An incident write the database refused (the manager keeps it and tries again)."""
        self.runtime_metrics.errors.labels(stage="storage").inc()

    def _witness_alert(self, witness: ChainWitness) -> None:
        """Each chain witness also leaves through ``alerts.witness``'s channels, when set (and
        this node sends them: :attr:`ServeOptions.witness_alerts`)."""
        if self._alerts is not None and self._options.witness_alerts:
            self._alerts.witness(witness)

    # -- rules for the dashboard (safewatch.api.dashboard.RuleControl) ----------------------

    def rule_generation(self) -> RuleGeneration:
        """The rule set judging frames now."""
        return self._rule_files.rule_generation()

    def rule_status(self) -> ReloadStatus:
        """The latest rule reload outcome."""
        return self._rule_files.rule_status()

    def reload_rules(self) -> ReloadStatus:
        """Reload the rule files now (the dashboard saved one); never raises for bad files."""
        return self._rule_files.reload_rules(self._site.config)

    def acknowledge_dropped(self, rule_ids: Sequence[str]) -> ReloadStatus:
        """An admin accepts that these dropped rules are gone on purpose (``/readyz`` is
        ``degraded`` until then; see :attr:`ReloadStatus.dropped`).

        Raises:
            ValueError: A rule named is not flagged as dropped.
        """
        return self._rule_files.acknowledge_dropped(rule_ids)

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
            if not self._stopping.is_set():
                try:
                    self._front.check()
                except Exception:
                    log.exception("restarting the API process")
            if self._options.watch_site and self._stamp() != self._site_stamp:
                time.sleep(0.2)  # let the editor finish writing
                try:
                    self.reload_site()
                except Exception:
                    log.exception("site reload failed")
