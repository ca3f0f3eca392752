"""The API process of ``safewatch serve``: the dashboard, its API and the operations endpoints.

Spawned by :class:`~safewatch.runtime.api_link.ApiLink` (the reasons and the measurements are
there). It opens the site's database and evidence store itself (SQLite in WAL mode lets it read
and write beside the analysis; every incident write locks the chain head in the database, so two
writing processes cannot fork the chain), serves the listening socket the server bound, and learns
everything else from the server through :class:`RemoteRuntime`:

* live frames and incident changes feed its own :class:`~safewatch.api.live.LiveHub`, so the
  overlay WebSockets, MJPEG streams and frame stills work exactly as in one process (the pixels
  are read from the camera's live shared-memory ring);
* ``/healthz``, ``/readyz`` and ``/metrics`` ask the server (an unanswered liveness question is
  ``hung``; an unanswered readiness one is 503);
* the rule set in force and its reload status are the server's, pushed on every change; a rule
  reload after the dashboard saved a file (also enabling or disabling a rule) runs in the server,
  and the request returns once the new generation is known here.

Operator actions on incidents write through this process's own repository; when the site has
alerts, the same outbox hook as the server's is installed, so an acknowledgement cancels pending
escalations in its own transaction (the server's dispatcher finds the rows at its next poll).

The process ignores SIGINT and SIGTERM: Ctrl-C in a terminal reaches every process of the group,
and the server, which owns the life cycle, answers ``/readyz`` with ``stopping`` until its cameras
are finished and then sends :class:`~safewatch.runtime.api_messages.Shutdown`. If the server dies,
the pipe closes and this process exits. The server's liveness pings are answered from the HTTP
server's event loop, so a stopped process or a stuck loop is noticed there and restarted.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from safewatch.api.errors import ApiError
from safewatch.api.live import LiveHub
from safewatch.config.loader import LoadedSite
from safewatch.rules.reload import ReloadStatus, RuleGeneration
from safewatch.runtime.api_link import ApiProcessSpec
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
    RequestKind,
    RulesPush,
    ServerBound,
    Shutdown,
    SitePush,
)
from safewatch.runtime.health import Liveness, Readiness
from safewatch.runtime.shm import RingSpec, SharedRing

if TYPE_CHECKING:
    from safewatch.incidents.site_storage import SiteStorage

__all__ = ["RemoteRuntime", "api_main", "open_storage"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0
"""Seconds the API waits for the server to answer a readiness, liveness or metrics request."""
RELOAD_TIMEOUT = 60.0
"""Seconds it waits for a rule reload (parsing and checking every rule file)."""


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Reply | None = None


class RemoteRuntime:
    """The server as the API process sees it: the ``ApiServices`` and ``RuleControl`` of the app.

    Args:
        connection: The pipe to the server.
        spec: The start-up state (site file and rule generation in force).
        clock: Monotonic clock (uptime).
    """

    def __init__(self, connection: Connection, spec: ApiProcessSpec) -> None:
        self._connection = connection
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._site = spec.site
        self._rules = spec.rules
        self._started = time.monotonic()

    # -- state pushed by the server ------------------------------------------------------------

    def site(self) -> LoadedSite:
        """The site file in force."""
        return self._site

    def rule_generation(self) -> RuleGeneration:
        """The rule set judging frames now (as last pushed)."""
        return self._rules.generation

    def rule_status(self) -> ReloadStatus:
        """The latest reload outcome (as last pushed)."""
        return self._rules.status

    def apply_rules(self, push: RulesPush) -> None:
        """Take a pushed rule state unless an equally new or newer one is here already (a push
        sent before a reload can arrive after the reload's reply)."""
        with self._lock:
            current = self._rules
            newer = (push.generation.number, push.status.attempts) >= (
                current.generation.number,
                current.status.attempts,
            )
            if newer:
                self._rules = push

    def apply_site(self, push: SitePush) -> None:
        """Take the reloaded site file."""
        self._site = push.site

    # -- questions to the server ---------------------------------------------------------------

    def liveness(self) -> Liveness:
        """``/healthz``: the server's answer; ``hung`` when it gives none in time."""
        try:
            value = self._ask("liveness", REQUEST_TIMEOUT)
        except TimeoutError as error:
            return Liveness(
                status="hung",
                uptime_seconds=round(time.monotonic() - self._started, 1),
                problems=[str(error)],
            )
        if not isinstance(value, Liveness):
            raise ApiError(503, "unavailable", "the analysis process gave no liveness")
        return value

    def readiness(self) -> Readiness:
        """``/readyz``: the server's answer; 503 when it gives none in time."""
        value = self._answer("readiness", REQUEST_TIMEOUT)
        if not isinstance(value, Readiness):
            raise ApiError(503, "unavailable", "the analysis process gave no readiness")
        return value

    def metrics(self) -> bytes:
        """``/metrics``: the server's exposition text."""
        value = self._answer("metrics", REQUEST_TIMEOUT)
        if not isinstance(value, bytes):
            raise ApiError(503, "unavailable", "the analysis process gave no metrics")
        return value

    def acknowledge_dropped(self, rule_ids: Sequence[str]) -> ReloadStatus:
        """Acknowledge dropped rules in the server; returns once the outcome is known here.

        Raises:
            ValueError: A rule named is not flagged as dropped (as last pushed; the server
                checks again).
        """
        status = self._rules.status
        unknown = sorted(set(rule_ids) - set(status.dropped))
        if not rule_ids or unknown:
            raise ValueError(
                f"not dropped: {', '.join(unknown) or 'no rule named'} "
                f"(rules dropped now: {', '.join(status.dropped) or 'none'})"
            )
        value = self._answer("acknowledge_dropped", REQUEST_TIMEOUT, tuple(rule_ids))
        if not isinstance(value, RulesPush):
            raise ApiError(503, "unavailable", "the analysis process took no acknowledgement")
        self.apply_rules(value)
        return value.status

    def reload_rules(self) -> ReloadStatus:
        """Reload the rule files in the server; returns once the outcome is known here."""
        value = self._answer("reload_rules", RELOAD_TIMEOUT)
        if not isinstance(value, RulesPush):
            raise ApiError(503, "unavailable", "the analysis process did not reload the rules")
        self.apply_rules(value)
        return value.status

    def _answer(self, kind: RequestKind, timeout: float, args: tuple[str, ...] = ()) -> object:
        try:
            return self._ask(kind, timeout, args)
        except TimeoutError as error:
            raise ApiError(503, "unavailable", str(error)) from None

    def _ask(self, kind: RequestKind, timeout: float, args: tuple[str, ...] = ()) -> object:
        request_id = next(self._ids)
        pending = _Pending()
        with self._lock:
            self._pending[request_id] = pending
        try:
            self.send(Request(request_id, kind, args))
            if not pending.done.wait(timeout):
                raise TimeoutError(f"the analysis process did not answer {kind} in {timeout:g} s")
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        reply = pending.reply
        assert reply is not None
        if reply.error is not None:
            raise ApiError(503, "unavailable", f"the analysis process failed: {reply.error}")
        return reply.value

    def answered(self, reply: Reply) -> None:
        """A reply arrived (receiving loop)."""
        with self._lock:
            pending = self._pending.get(reply.request_id)
        if pending is not None:
            pending.reply = reply
            pending.done.set()

    def send(self, message: ServerBound) -> None:
        """Send one message to the server.

        Raises:
            TimeoutError: The pipe is closed (the server is gone or stopping).
        """
        with self._send_lock:
            try:
                self._connection.send(message)
            except (OSError, ValueError):
                raise TimeoutError("the analysis process is gone") from None


class _LiveReader:
    """Reads pushed live frames out of the cameras' rings into the hub (receiving loop only)."""

    def __init__(self, hub: LiveHub) -> None:
        self._hub = hub
        self._rings: dict[str, SharedRing] = {}

    def _ring(self, camera_id: str, spec: RingSpec) -> SharedRing | None:
        ring = self._rings.get(camera_id)
        if ring is not None and ring.spec == spec:
            return ring
        self.forget(camera_id)
        try:
            ring = SharedRing.attach(spec)
        except FileNotFoundError:
            return None
        self._rings[camera_id] = ring
        return ring

    def frame(self, push: LiveFramePush) -> None:
        ring = self._ring(push.tracked.camera_id, push.ring)
        image = None if ring is None else ring.read(push.slot)
        if image is not None:  # None: overwritten already; a newer frame is on its way
            self._hub.publish_frame(push.tracked, image, push.events, push.published_at)

    def forget(self, camera_id: str) -> None:
        ring = self._rings.pop(camera_id, None)
        if ring is not None:
            ring.close()

    def close(self) -> None:
        for camera_id in list(self._rings):
            self.forget(camera_id)


def _install_alert_hook(site: LoadedSite, storage: object) -> None:
    """Operator status changes cancel pending escalations, as in the server (see module doc)."""
    if not site.config.alerts.channels:
        return
    from safewatch.alerts.routing import Router
    from safewatch.alerts.writer import OutboxWriter
    from safewatch.incidents.site_storage import SiteStorage

    assert isinstance(storage, SiteStorage)
    router = Router(site.config.alerts, ZoneInfo(site.config.site.timezone))
    storage.repository.add_change_hook(OutboxWriter(lambda: router))


def _pong(remote: RemoteRuntime, seq: int) -> None:
    """Answer a liveness ping (runs on the event loop: see ``ApiLink.check``)."""
    with contextlib.suppress(TimeoutError):  # the server is gone: the receiving loop ends
        remote.send(Pong(seq))


def _receive(
    connection: Connection,
    remote: RemoteRuntime,
    hub: LiveHub,
    reader: _LiveReader,
    on_loop: Callable[[Callable[[], None]], None],
) -> None:
    """Apply what the server sends until it says stop or goes away."""
    while True:
        try:
            message: ApiBound = connection.recv()
        except (EOFError, OSError):
            log.info("the server went away; the API process exits")
            return
        if isinstance(message, LiveFramePush):
            reader.frame(message)
        elif isinstance(message, IncidentPush):
            hub.publish_incident(message.kind, message.incident)
        elif isinstance(message, Reply):
            remote.answered(message)
        elif isinstance(message, RulesPush):
            remote.apply_rules(message)
        elif isinstance(message, SitePush):
            remote.apply_site(message)
        elif isinstance(message, CameraGone):
            reader.forget(message.camera_id)
            hub.forget(message.camera_id)
        elif isinstance(message, Ping):
            with contextlib.suppress(RuntimeError):  # the HTTP server is stopping: no answer
                on_loop(functools.partial(_pong, remote, message.seq))
        elif isinstance(message, Shutdown):
            return


def open_storage(site: LoadedSite, *, cluster: bool) -> SiteStorage:
    """The API process's own storage; under ``serve --cluster`` its engine gets the idle
    transaction limit an analyzer's has (:func:`~safewatch.cluster.membership.
    limit_idle_transactions`): this process's incident writes hold the chain lock too, and
    one frozen inside such a transaction would otherwise stall every node's writes."""
    from safewatch.incidents.site_storage import open_site_storage

    storage = open_site_storage(site)
    if cluster:
        from safewatch.cluster.membership import limit_idle_transactions

        limit_idle_transactions(storage.engine, site.config.cluster.lease_seconds)
    return storage


def api_main(spec: ApiProcessSpec, listener: socket.socket, connection: Connection) -> None:
    """Entry point of the API process (spawned: it imports the API, not the analysis)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("safewatch").setLevel(spec.log_level)
    from safewatch.config.log_redaction import install_redaction

    install_redaction()
    from safewatch import tracing

    tracing.configure_site(None, "api")  # the server put the site's endpoint in the env
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if spec.nice:
        with contextlib.suppress(OSError):
            os.nice(spec.nice)

    from safewatch.api import ApiSettings, create_app
    from safewatch.api.bus_feed import BusFeeds
    from safewatch.api.cluster_jobs import ClusterJobs
    from safewatch.api.dashboard import Dashboard, DashboardSettings
    from safewatch.bus.redis_streams import BusKeys
    from safewatch.runtime.http_server import HttpServer

    remote = RemoteRuntime(connection, spec)
    hub = LiveHub()
    reader = _LiveReader(hub)
    storage = open_storage(spec.site, cluster=spec.follow_bus)
    http: HttpServer | None = None
    feeds: BusFeeds | None = None
    jobs: ClusterJobs | None = None
    try:
        _install_alert_hook(spec.site, storage)
        if spec.follow_bus:  # serve --cluster: every node's incident changes, from the bus
            config = spec.site.config
            feeds = BusFeeds(
                hub, storage.repository, config.cluster.redis_url, BusKeys.for_site(config)
            )
        dashboard = Dashboard.create(
            remote.site,
            spec.rules_path,
            storage,
            rules=remote,
            live=hub,
            settings=DashboardSettings(query_cache_seconds=spec.query_cache_seconds),
        )
        if spec.follow_bus:  # serve --cluster: jobs run by analyzers, from the job table
            from safewatch.api.cluster_jobs import install_cluster_jobs

            jobs = install_cluster_jobs(dashboard, spec.site.config.cluster.lease_seconds)
        app = create_app(ApiSettings(site_name=spec.site.config.site.name), remote, dashboard)
        if spec.follow_bus:  # serve --cluster: other analyzers' video relayed (ours is served
            # to them by the analyzing process, on cluster.video_port, never on this port)
            from safewatch.api.cluster_video import install_cluster_video

            install_cluster_video(app, storage.engine, remote.site)
        http = HttpServer(app, sock=listener)
        http.start()
        remote.send(ApiReady(os.getpid()))
        _receive(connection, remote, hub, reader, http.call_soon)
    except TimeoutError:
        pass  # the server went away during start-up
    finally:
        if http is not None:
            http.stop()
        if feeds is not None:
            feeds.stop()
        if jobs is not None:  # the periodic pass over the job table and local copies
            jobs.stop()
        reader.close()
        storage.close()
        with contextlib.suppress(OSError):
            connection.close()
        tracing.shutdown()  # bounded: the server kills an API process that takes too long
