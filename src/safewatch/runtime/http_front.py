"""Where a server answers HTTP: the dashboard, API and operations endpoints in the API process
(the default, :mod:`safewatch.runtime.api_link`), on a thread of this process, or only the
operations endpoints (an analyzer of a cluster); and the live frames each way needs.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from safewatch.api import ApiSettings, create_app
from safewatch.api.dashboard import Dashboard, DashboardSettings
from safewatch.config.loader import LoadedSite
from safewatch.domain import Frame, RuleEvent, TrackedFrame
from safewatch.incidents.manager import IncidentChange
from safewatch.incidents.site_storage import SiteStorage
from safewatch.rules.reload import RuleSetHolder
from safewatch.runtime.api_link import ApiLink, ApiProcessSpec
from safewatch.runtime.api_messages import RulesPush
from safewatch.runtime.bus_link import ClusterBus
from safewatch.runtime.http_server import HttpServer, bind_listener
from safewatch.runtime.options import ServeOptions

if TYPE_CHECKING:
    from safewatch.api.cluster_jobs import ClusterJobs
    from safewatch.runtime.service import RuntimeService

__all__ = ["HttpFront"]


class HttpFront:
    """The HTTP side of one server.

    Args:
        service: The server its endpoints report on (health, metrics, rules, live hub).
        options: Serve options (API mode, nice, query cache, rule folder, cluster).
        log_level: Called for the API process's log level.
        restarted: Called with the reason each time the API process is restarted.
    """

    def __init__(
        self,
        service: RuntimeService,
        options: ServeOptions,
        log_level: Callable[[], int],
        restarted: Callable[[str], None],
    ) -> None:
        self._service = service
        self._options = options
        self._log_level = log_level
        self._restarted = restarted
        self.http: HttpServer | None = None
        self.api: ApiLink | None = None
        self.listener: socket.socket | None = None
        self._jobs: ClusterJobs | None = None

    @property
    def url(self) -> str | None:
        """Base URL of the HTTP endpoints, once started."""
        if self.http is not None:
            return self.http.url
        if self.listener is None:
            return None
        host, port = self.listener.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(
        self,
        storage: SiteStorage,
        holder: RuleSetHolder,
        bus: ClusterBus | None,
        host: str,
        port: int,
    ) -> None:
        """The dashboard, its API and the operations endpoints: in the API process, or here."""
        service, options = self._service, self._options
        if options.api == "process":
            self._start_api_process(holder, host, port)
            return
        if options.api == "ops":  # operations endpoints only, unauthenticated
            ops = ApiSettings(site_name=service.site.config.site.name)
            self.http = HttpServer(create_app(ops, service), host, port)
            self.http.start()
            return
        dashboard = Dashboard.create(
            lambda: service.site,
            options.rules,
            storage,
            rules=service,
            live=service.live,
            settings=DashboardSettings(query_cache_seconds=options.query_cache_seconds),
        )
        if bus is not None:  # every node's incident changes, from the bus
            bus.follow(service.live)
        if options.cluster:  # jobs run by analyzers, from the job table
            from safewatch.api.cluster_jobs import install_cluster_jobs

            self._jobs = install_cluster_jobs(dashboard, service.site.config.cluster.lease_seconds)
        settings = ApiSettings(site_name=service.site.config.site.name)
        app = create_app(settings, service, dashboard)
        if options.cluster:  # other analyzers' video relayed (this one's is served to them on
            # cluster.video_port by ClusterOwner, never on the dashboard's port)
            from safewatch.api.cluster_video import install_cluster_video

            install_cluster_video(app, storage.engine, lambda: service.site)
        self.http = HttpServer(app, host, port)
        self.http.start()

    def _start_api_process(self, holder: RuleSetHolder, host: str, port: int) -> None:
        """Bind the HTTP socket here and serve it from the API process."""
        self.listener = bind_listener(host, port)
        spec = ApiProcessSpec(
            site=self._service.site,
            rules_path=self._options.rules,
            rules=RulesPush(holder.current(), holder.status),
            nice=self._options.api_nice,
            log_level=self._log_level(),
            query_cache_seconds=self._options.query_cache_seconds,
            follow_bus=self._options.cluster,
        )
        self.api = ApiLink(spec, self.listener, self._service, restarted=self._restarted)
        self.api.start()

    def on_frame(
        self,
        frame: Frame,
        tracked: TrackedFrame,
        events: Sequence[RuleEvent],
        changes: Sequence[IncidentChange],
    ) -> None:
        """The frame listener of the dashboard: to the API process, or to the hub here."""
        if self.api is not None:
            self.api.on_frame(frame, tracked, events, changes)
            if self._options.cluster:  # the heads for the video this node serves to the
                # others on cluster.video_port, from this process (api/cluster_video.py)
                self._service.live.publish_frame(tracked, frame.image, events, frame.published_at)
        else:
            self._service.live.on_frame(frame, tracked, events, changes)

    def on_changes(self, changes: Sequence[IncidentChange]) -> None:
        """Incident changes made outside a frame's step (a camera gone dark, stopped, removed
        or restarted closes its incidents; a refused write goes through later) reach the
        dashboard like a frame's: the incident feed, the Live panel, the query cache."""
        if self.api is not None:
            self.api.on_changes(changes)
        else:
            self._service.live.on_changes(changes)

    def site_changed(self, site: LoadedSite) -> None:
        """A reloaded site file reaches the API process."""
        if self.api is not None:
            self.api.site_changed(site)

    def camera_gone(self, camera_id: str) -> None:
        """A stopped camera leaves the API process's live view."""
        if self.api is not None:
            self.api.camera_gone(camera_id)

    def check(self) -> None:
        """Restart the API process if it exited or hangs (the service's keeper calls this)."""
        if self.api is not None:
            self.api.check()

    def stop(self) -> None:
        """Stop answering: the HTTP thread, the API process."""
        if self.http is not None:
            self.http.stop()
        if self._jobs is not None:  # the periodic pass over the job table and local copies
            self._jobs.stop()
        if self.api is not None:
            self.api.stop()

    def close(self) -> None:
        """Close the listening socket (after :meth:`stop`)."""
        if self.listener is not None:
            self.listener.close()
