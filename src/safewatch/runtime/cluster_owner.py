"""``safewatch serve --cluster``: run the cameras this analyzer owns, as ownership moves.

Several analyzers share a site's cameras; each camera is owned by one of them through a lease in
PostgreSQL (:mod:`safewatch.cluster`). :class:`ClusterOwner` joins the two halves: the cluster
member decides which cameras this process owns, and tells this :class:`OwnershipListener`, which
hands the owned set to :meth:`RuntimeService.set_owned`. That goes through the same supervisor
path as a site-file reload (:meth:`~safewatch.runtime.supervisor.Supervisor.apply`): a camera
gained starts like a camera added to the site file, a camera given back (``rebalance``,
``drain``, ``removed``) stops like a removed one, with its episodes ended at its last frame and its
incidents closed. A camera ``lost`` (the lease expired under this process: it was frozen, or
could not reach the database) stops *without writing*: its new owner closes or continues its
incidents, and the epoch fence in every incident write would refuse this process's writes anyway.

Roles: ``analyzer`` runs cameras and serves only ``/healthz``, ``/readyz`` and ``/metrics``;
``api`` runs no camera and serves the dashboard and API; ``all`` does both. SIGTERM drains: every
lease is given back after its camera stopped gracefully, so the next owner starts at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Literal

from safewatch.api.health import ComponentHealth
from safewatch.cluster import ClusterMember, Takeover
from safewatch.cluster.membership import limit_idle_transactions
from safewatch.cluster.takeover import ANALYZER_LOST
from safewatch.config.loader import LoadedSite
from safewatch.runtime.job_runner import JobRunner, start_job_runner
from safewatch.runtime.service import RuntimeService, ServeOptions, StopReport
from safewatch.storage import create_engine_for

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from safewatch.runtime.http_server import HttpServer

__all__ = ["ClusterOwner", "Role", "default_analyzer_id", "membership_engine"]

log = logging.getLogger(__name__)

Role = Literal["all", "analyzer", "api"]
"""What one ``serve --cluster`` process runs: cameras and dashboard, cameras, or the dashboard."""

_DRAIN_TIMEOUT = 30.0
"""Seconds a SIGTERM drain may take to give every camera back before the process stops anyway."""

_START_RETRY = (2.0, 60.0)
"""Seconds before the first retry of a camera whose start failed, and the most between two."""

_JOB_JOIN_TIMEOUT = 10.0
"""Seconds the jobs may still take to let go after the drain (they were asked before it); a job
still running then is given back anyway. Drain and join stay within a 60 s grace period."""


def default_analyzer_id() -> str:
    """``hostname-pid``: unique among live processes, readable in the leases table."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _enabled_cameras(site: LoadedSite) -> list[str]:
    return [key for key, camera in site.config.cameras.items() if camera.enabled]


def _camera_labels(site: LoadedSite) -> dict[str, dict[str, str]]:
    return {
        key: dict(camera.labels) for key, camera in site.config.cameras.items() if camera.labels
    }


def membership_engine(site: LoadedSite) -> Engine:
    """The membership's own connection pool, so renewing leases (and the jobs' heartbeats and
    claims, :class:`~safewatch.cluster.jobs.JobQueue`) never waits behind incident writes.

    With the idle-transaction limit of the shared engine (:func:`limit_idle_transactions`): the
    member's own transactions set it locally, but the job queue's claims and heartbeats open
    plain sessions here, and a process frozen inside one held its job rows' locks until it woke
    up. A member's ``SET LOCAL`` still applies within its transactions (the same idle limit, and
    its lock timeout)."""
    engine = create_engine_for(site.config.storage.database, site.base_dir)
    limit_idle_transactions(engine, site.config.cluster.lease_seconds)
    return engine


class ClusterOwner:
    """One ``serve --cluster`` process: a :class:`RuntimeService` and, for analyzers, its
    membership in the cluster (the :class:`~safewatch.cluster.OwnershipListener` is this object).

    Args:
        site: The loaded site file (PostgreSQL; see :func:`safewatch.config.cluster_refusal`).
        options: Serve options; ``cluster`` is forced on and the HTTP mode follows the role.
        role: ``all``, ``analyzer`` or ``api``.
        analyzer_id: This analyzer's name in the leases table.
    """

    def __init__(
        self, site: LoadedSite, options: ServeOptions, role: Role, analyzer_id: str
    ) -> None:
        self.role = role
        self.analyzer_id = analyzer_id
        self._site = site
        self._member: ClusterMember | None = None
        self._engine: Engine | None = None
        self._video: HttpServer | None = None  # the analyzer's live video for API nodes
        self._jobs: JobRunner | None = None  # audit/backtest jobs claimed from the table
        self._rules_path = options.rules
        self._host = options.host
        api = "ops" if role == "analyzer" and options.api == "process" else options.api
        # One node sends the chain witness alerts (the chain is one): an API-serving one.
        witness = options.witness_alerts and role != "analyzer"
        self.service = RuntimeService(
            site, dataclasses.replace(options, cluster=True, api=api, witness_alerts=witness)
        )
        # Ownership changes apply in the order the member decides them, on one thread, so a
        # listener call that need not wait (a start, a lost camera) never holds up the member.
        self._changes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cluster-cameras")
        # Cameras whose start failed, with the error, while their lease is ours (retried).
        self._start_failures: dict[str, str] = {}
        # Cameras whose release began (until acquired again): a start retry queued behind their
        # stop must not start them again (see _still_ours).
        self._giving_back: set[str] = set()
        self._stopping = threading.Event()
        self.service.site_listeners.append(self._site_changed)

    def start(self) -> None:
        """Start the service (no camera yet), then join the cluster: cameras follow leases.

        The member gets the service's incident repository: it installs its epoch fence there
        (every incident write of this process is checked against the camera's lease), and a
        takeover's closes of the previous owner's incidents queue their alerts through the
        repository's outbox hook like any other close.

        Raises:
            SafewatchError: As :meth:`RuntimeService.start`; or the cluster tables are missing.
        """
        self.service.start()
        site, cluster = self._site, self._site.config.cluster
        limit_idle_transactions(self.service.storage.engine, cluster.lease_seconds)
        if self.role == "api":
            return
        try:
            video_url = self._serve_video()
            engine = self._engine = membership_engine(site)
            self._member = ClusterMember(
                engine,
                self.analyzer_id,
                _enabled_cameras(site),
                self,
                capacity=cluster.capacity,
                labels=dict(cluster.labels),
                camera_labels=_camera_labels(site),
                lease_seconds=cluster.lease_seconds,
                incidents=self.service.storage.repository,
                video_url=video_url,
            )
            self._member.start()
            self.service.status.cluster_health = self._cluster_health
            self._jobs = start_job_runner(
                self.service,
                self._rules_path,
                analyzer_id=self.analyzer_id,
                claimer_engine=engine,
                paused=self._member.held_off,
            )
        except BaseException:
            self.service.stop()
            self._dispose()
            raise
        log.info(
            "analyzer %s joined the cluster (lease %g s, capacity %d, labels %s)",
            self.analyzer_id,
            cluster.lease_seconds,
            cluster.capacity,
            dict(cluster.labels),
        )

    def stop(self, drain_timeout: float = _DRAIN_TIMEOUT) -> StopReport:
        """Drain, then stop: every camera stops gracefully and its lease goes back.

        The member is marked draining first (it claims nothing more and the others' placement
        leaves it out); then each camera is stopped while its lease is still renewed (so its
        incidents close under a valid lease) and its lease is released as soon as its own stop
        returned, so the other analyzers take each camera within their next look (about half a
        second) after its own stop, not after every camera's.

        Running audit/backtest jobs are asked to stop first and joined only after the drain:
        they let go while the cameras stop (each goes back to the queue, so another analyzer
        restarts it at once), and a busy job slot never delays the cameras' drain.
        """
        self._stopping.set()  # no more start retries
        try:
            if self._jobs is not None:  # running jobs go back to the queue
                self._jobs.request_stop()
            if self._member is not None:
                try:
                    self._member.drain(drain_timeout)
                except Exception:
                    log.exception("draining the cluster leases failed; they expire instead")
            if self._jobs is not None:
                self._jobs.join(_JOB_JOIN_TIMEOUT)
        finally:
            self._changes.shutdown(wait=True)
            report = self.service.stop()
            self._dispose()
        return report

    def _serve_video(self) -> str | None:
        """Serve this node's live video to API nodes (with ``cluster.secret``); the URL to
        advertise (:mod:`safewatch.api.cluster_video`). Roles ``analyzer`` and ``all`` alike
        serve it on a listener of its own (``cluster.video_port``): never on the operations
        port, nor on a dashboard's port, which browsers reach. It serves only the cameras whose
        lease this node holds now."""
        config = self._site.config
        secret = config.cluster.secret
        if secret is None:
            log.warning("cluster.secret not set: API nodes cannot show this node's live video")
            return None

        def owns(camera_id: str) -> bool:
            member = self._member  # (made after this server: its URL is in the heartbeat)
            return member is not None and member.epoch_of(camera_id) is not None

        self._video = _start_video_server(
            self.service,
            secret.get_secret_value(),
            self.analyzer_id,
            owns,
            self._host or config.runtime.http.host,
            config.cluster.video_port,
        )
        from safewatch.api.cluster_video import advertised_url

        return advertised_url(self._video.url, config.cluster.advertise_host)

    def owned(self) -> frozenset[str]:
        """The cameras this process runs now."""
        return self.service.owned_cameras() or frozenset()

    # -- OwnershipListener (called from the member's thread) ---------------------------------

    def acquired(self, camera_id: str, epoch: int, takeover: Takeover | None) -> None:
        """Start analysing ``camera_id`` (the lease at ``epoch`` is ours); returns at once."""
        # (the member logged a takeover, with the incidents it closed and the gap)
        log.info(
            "camera %s acquired (epoch %d%s)",
            camera_id,
            epoch,
            "" if takeover is None else f", taken over from {takeover.previous_owner}",
        )
        self._giving_back.discard(camera_id)
        if takeover is None:
            self._own(camera_id, epoch, {}, _START_RETRY[0])
        else:  # its clips left unfinished are stored as the lost analyzer's
            options = {"previous_owner": takeover.previous_owner, "reason": ANALYZER_LOST}
            self._own(camera_id, epoch, options, _START_RETRY[0])

    def released(self, camera_id: str, reason: str) -> None:
        """Stop analysing ``camera_id``; ``lost`` stops without writing anything.

        Returns once the camera stopped (for a graceful release, with its incidents closed while
        the lease is still ours; the member releases it next). A lost one waits too: the member
        claims the camera again only after this returned, so no frame of the old run can be
        written under a new epoch. (This runs on the member's listener thread: its renewals go
        on meanwhile.)
        """
        lost = reason == "lost"
        self._giving_back.add(camera_id)  # before its stop is queued: see _still_ours
        self._start_failures.pop(camera_id, None)
        log.log(
            logging.WARNING if lost else logging.INFO,
            "camera %s released (%s)%s",
            camera_id,
            reason,
            ": stopping without writing, its new owner takes its incidents" if lost else "",
        )
        done = self._change(self.service.disown_camera, camera_id, write=not lost)
        wait([done])

    # -- internals ---------------------------------------------------------------------------

    def _own(
        self,
        camera_id: str,
        epoch: int,
        options: dict[str, str],
        delay: float,
        *,
        retry: bool = False,
    ) -> None:
        """Start the camera; if that fails, say so in ``/readyz`` and try again later.

        A start can fail where the camera is fine: the recording folder on a stale NFS mount, a
        decode worker that cannot be spawned. The lease stays this analyzer's either way (the
        others' placement still points here, so none would take it), so before, the camera was
        held, renewed and analysed by nobody, and every health check said ok. Now the failure
        degrades ``/readyz`` with its reason, and the start is retried (``delay`` doubling up to
        a minute) while this analyzer still holds the camera at ``epoch``.
        """

        def started(done: Future[object]) -> None:
            error = done.exception()
            if error is None:
                if self._start_failures.pop(camera_id, None) is not None:
                    log.warning("camera %s started after all (epoch %d)", camera_id, epoch)
                return
            self._start_failures[camera_id] = str(error) or type(error).__name__
            log.warning("camera %s: start failed; trying again in %g s", camera_id, delay)
            timer = threading.Timer(delay, self._retry_own, (camera_id, epoch, options, delay))
            timer.daemon = True
            timer.start()

        def own_camera(camera: str) -> object:
            if retry and not self._still_ours(camera, epoch):
                return None  # (the callback then finds no failure to report)
            return self.service.own_camera(camera, **options)

        self._change(own_camera, camera_id).add_done_callback(started)

    def _still_ours(self, camera_id: str, epoch: int) -> bool:
        """Whether a retried start of ``camera_id`` at ``epoch`` may run, checked on the
        changes thread right before it: the lease still ours at that epoch and no release of it
        begun. The member keeps a camera held until its graceful stop returned, so a retry
        queued while that stop ran passed the epoch check and, run after the stop, started the
        camera again once its lease was released; :meth:`released` marks the camera before it
        queues the stop, so a start queued behind that stop sees the mark."""
        member = self._member
        if (
            self._stopping.is_set()
            or camera_id in self._giving_back
            or member is None
            or member.epoch_of(camera_id) != epoch
        ):
            self._start_failures.pop(camera_id, None)  # no longer ours: nothing to retry
            return False
        return True

    def _retry_own(self, camera_id: str, epoch: int, options: dict[str, str], delay: float) -> None:
        if not self._still_ours(camera_id, epoch):
            return
        try:
            self._own(camera_id, epoch, options, min(2 * delay, _START_RETRY[1]), retry=True)
        except RuntimeError:  # the change queue shut down meanwhile (stopping)
            self._start_failures.pop(camera_id, None)

    def _cluster_health(self) -> ComponentHealth:
        """``/readyz``'s cluster entry: a dead or failing member, or a camera no analyzer may
        run, degrades readiness with the reason."""
        member = self._member
        if member is None:
            return ComponentHealth(ok=True, message="not an analyzer")
        health = member.health()
        failed = dict(self._start_failures)
        if not failed:
            return ComponentHealth(ok=health.ok, message=health.message)
        starts = "; ".join(
            f"camera {c} could not start here: {e}" for c, e in sorted(failed.items())
        )
        return ComponentHealth(ok=False, message=f"{starts} (retrying); {health.message}")

    def _change(
        self, apply: Callable[..., object], camera_id: str, **options: bool | str
    ) -> Future[object]:
        """Queue one ownership change; a failure is logged (the member's thread goes on)."""

        def logged(done: Future[object]) -> None:
            error = done.exception()
            if error is not None:
                log.error(
                    "camera %s: %s failed: %s", camera_id, apply.__name__, error, exc_info=error
                )

        future = self._changes.submit(apply, camera_id, **options)
        future.add_done_callback(logged)
        return future

    def _site_changed(self, site: LoadedSite) -> None:
        """A site reload: the member learns the cameras (removed ones are released).

        On a thread of its own: this runs under the service's reload lock, and the member may
        call back into :meth:`released`, which takes it.
        """
        self._site = site
        member = self._member
        if member is not None:
            threading.Thread(
                target=member.set_cameras,
                args=(_enabled_cameras(site), _camera_labels(site)),
                name="cluster-site",
                daemon=True,
            ).start()

    def _dispose(self) -> None:
        if self._video is not None:
            self._video.stop()
            self._video = None
        if self._engine is not None:
            self._engine.dispose()


def _start_video_server(
    service: RuntimeService,
    secret: str,
    analyzer_id: str,
    owns: Callable[[str], bool],
    host: str,
    port: int,
) -> HttpServer:
    """An HTTP server of its own serving only the internal video (an analyzer's operations port
    serves ``/healthz``, ``/readyz`` and ``/metrics`` without authentication, a dashboard's port
    sessions; this one serves nothing without a grant). Started here, not in the API package,
    which never imports the runtime.

    Raises:
        ConfigError: ``host:port`` cannot be bound.
    """
    from safewatch.api.cluster_video import internal_video_app
    from safewatch.runtime.http_server import HttpServer

    app = internal_video_app(
        service.live,
        lambda: service.site,
        secret,
        analyzer_id=analyzer_id,
        owns=owns,
        engine=service.storage.engine,
    )
    server = HttpServer(app, host, port)
    server.start()
    return server
