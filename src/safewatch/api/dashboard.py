"""What the dashboard and its API need from the running server, in one object.

:func:`~safewatch.api.app.create_app` takes a :class:`Dashboard` beside the operations services.
``safewatch serve`` builds it from the live runtime (:meth:`Dashboard.create` with the
:class:`~safewatch.runtime.service.RuntimeService` as its :class:`RuleControl` and the service's
:class:`~safewatch.api.live.LiveHub`); tests build one around a temporary SQLite file and a
:class:`StandaloneRules`, with no cameras running. Routes reach it through
``request.app.state.dashboard`` (see :mod:`safewatch.api.deps`), never through globals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio

from safewatch.api.auth.ratelimit import LoginLimiter
from safewatch.api.auth.store import AuthStore
from safewatch.api.live import LiveHub
from safewatch.api.query_cache import QueryCache
from safewatch.config.loader import LoadedSite
from safewatch.config.ruleset import load_rules
from safewatch.incidents.lifecycle import IncidentLifecycle
from safewatch.incidents.site_storage import SiteStorage
from safewatch.rules.reload import ReloadStatus, RuleGeneration, RuleSetHolder
from safewatch.rules.watcher import RuleWatcher

__all__ = ["Dashboard", "DashboardSettings", "RuleControl", "StandaloneRules"]


class RuleControl(Protocol):
    """The rule set in force and its hot reload (the runtime's, or a standalone one)."""

    def rule_generation(self) -> RuleGeneration:
        """The rule set judging frames now."""
        ...

    def rule_status(self) -> ReloadStatus:
        """The latest reload outcome."""
        ...

    def reload_rules(self) -> ReloadStatus:
        """Reload the rule files now (after the API saved one); never raises for bad files."""
        ...

    def acknowledge_dropped(self, rule_ids: Sequence[str]) -> ReloadStatus:
        """Accept that these dropped rules are gone on purpose (see ``ReloadStatus.dropped``).

        Raises:
            ValueError: A rule named is not flagged as dropped.
        """
        ...


class StandaloneRules:
    """A :class:`RuleControl` of its own, for an API without the runtime (tests, tools).

    Args:
        path: Rules folder or file.
        site: The site in force (cameras are checked against it).
    """

    def __init__(self, path: Path, site: Callable[[], LoadedSite]) -> None:
        self._site = site
        self._holder = RuleSetHolder(load_rules(path, site().config))
        self._path = path
        self._lock = threading.Lock()

    def rule_generation(self) -> RuleGeneration:
        """The rule set in force."""
        return self._holder.current()

    def rule_status(self) -> ReloadStatus:
        """The latest reload outcome."""
        return self._holder.status

    def reload_rules(self) -> ReloadStatus:
        """Reload the files into the holder."""
        with self._lock:
            return RuleWatcher(self._path, self._holder, self._site().config).reload()

    def acknowledge_dropped(self, rule_ids: Sequence[str]) -> ReloadStatus:
        """Acknowledge dropped rules in the holder."""
        with self._lock:
            return self._holder.acknowledge(rule_ids)


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """Settings of the dashboard and its API.

    Attributes:
        session_cookie: Name of the session cookie.
        max_upload_bytes: Largest video an audit job may upload.
        jobs_dir: Where audit jobs keep their uploads and results; default ``audit-jobs`` beside
            the evidence folder (a local store) or in the site file's folder.
        allow_server_paths: Folders audit jobs may read videos from on the server (empty: none).
        login_per_pair: Free failed logins of one account from one address in ``login_window``;
            after them that pair (only) backs off (:mod:`safewatch.api.auth.ratelimit`).
        login_per_client: Failed logins per client address (all names; an IPv6 /64 is one
            address) in ``login_window``.
        login_per_account: Failed logins per account (all addresses) in ``login_window`` after
            which a failing address gets no free failures on it.
        login_window: Seconds of the login failure window.
        login_backoff: First backoff wait in seconds; doubles per further failure.
        login_backoff_max: Longest backoff wait in seconds.
        query_cache_seconds: Longest time an incident list or statistics answer is reused
            while no incident changed (:mod:`safewatch.api.query_cache`); 0 turns it off.
        password_checks: Logins checked at once (argon2id: 64 MiB and ~50 ms of a core each).
            Measured under a flood of 50 concurrent wrong logins (issue 13): unbounded, 50
            hashes ran at once on 40 threads (3.2 GB, every answer after ~55 s, the analysis
            at 0.38 of its idle rate even from a nice-10 process, because nice weighs each
            thread); bounded, the rest wait on the event loop, not on threads, and once the
            throttle has seen enough failures they are refused without hashing.
        socket_recheck_seconds: Longest time an open WebSocket or MJPEG stream goes without its
            credential being checked again (:class:`~safewatch.api.auth.gate.AccessWatch`). A
            change made through this process (user disabled, demoted or deleted, logout, token
            revoked) is noticed within half a second regardless; this bounds one made elsewhere
            (``safewatch users``, another API process) or an expiry.
    """

    session_cookie: str = "safewatch_session"
    max_upload_bytes: int = 2 << 30
    jobs_dir: Path | None = None
    allow_server_paths: tuple[Path, ...] = ()
    login_per_pair: int = 5
    login_per_client: int = 20
    login_per_account: int = 20
    login_window: float = 300.0
    login_backoff: float = 1.0
    login_backoff_max: float = 300.0
    query_cache_seconds: float = 2.0
    password_checks: int = 2
    socket_recheck_seconds: float = 5.0


@dataclass
class Dashboard:
    """Everything the dashboard's routes use.

    Attributes:
        site: The site file in force (it can change on reload, hence a callable).
        rules_path: The rules folder or file (the source of truth the API edits).
        storage: Database, incident repository and evidence store.
        auth: Users, sessions, tokens and the audit log.
        rules: The rule set in force and its reload.
        live: Newest frames and incident notices.
        settings: Dashboard settings.
        limiter: Failed-login throttling.
        lifecycle: Operator actions on incidents.
        jobs: Audit jobs (set by :func:`~safewatch.api.app.create_app` when absent).
        queries: Serialised incident list and statistics answers.
        password_checks: Bounds the logins checked at once (see :class:`DashboardSettings`).
    """

    site: Callable[[], LoadedSite]
    rules_path: Path
    storage: SiteStorage
    auth: AuthStore
    rules: RuleControl
    live: LiveHub
    settings: DashboardSettings = field(default_factory=DashboardSettings)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    lifecycle: IncidentLifecycle = field(init=False)
    jobs: object | None = None
    queries: QueryCache = field(init=False)
    password_checks: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.lifecycle = IncidentLifecycle(self.storage.repository)
        self.password_checks = anyio.CapacityLimiter(self.settings.password_checks)
        self.queries = QueryCache(
            self.settings.query_cache_seconds,
            lambda: (self.live.incident_version, self.site().config.site.timezone),
        )
        self.limiter = LoginLimiter(
            per_pair=self.settings.login_per_pair,
            per_client=self.settings.login_per_client,
            per_account=self.settings.login_per_account,
            window=self.settings.login_window,
            backoff=self.settings.login_backoff,
            backoff_max=self.settings.login_backoff_max,
        )

    @classmethod
    def create(
        cls,
        site: Callable[[], LoadedSite],
        rules_path: Path,
        storage: SiteStorage,
        *,
        rules: RuleControl | None = None,
        live: LiveHub | None = None,
        settings: DashboardSettings | None = None,
    ) -> Dashboard:
        """A dashboard on ``storage``'s database (user tables migrated like the incidents')."""
        return cls(
            site=site,
            rules_path=rules_path,
            storage=storage,
            auth=AuthStore(storage.engine),
            rules=rules if rules is not None else StandaloneRules(rules_path, site),
            live=live if live is not None else LiveHub(),
            settings=settings or DashboardSettings(),
        )

    def jobs_dir(self) -> Path:
        """Folder of audit jobs (see :class:`DashboardSettings`)."""
        if self.settings.jobs_dir is not None:
            return self.settings.jobs_dir
        site = self.site()
        folder = site.config.storage.evidence_dir.expanduser()
        evidence = folder if folder.is_absolute() else site.base_dir / folder
        return evidence.parent / "audit-jobs"
