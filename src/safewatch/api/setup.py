"""Put the dashboard on the app: error mapping, security headers, the authentication gate, the
API routers, the WebSockets, the pages and their static files.

Called by :func:`safewatch.api.app.create_app` when it is given a
:class:`~safewatch.api.dashboard.Dashboard`. Middleware order matters: trusted-proxy resolution is
outermost (everything after sees the real client address), then the security headers (they wrap
also the 413 and the gate's own 401/403 answers), the secrets mask (every JSON and text answer,
``/readyz`` included), the body limit (before any body is read), and the gate before any route.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from safewatch.api.auth.gate import AuthGate
from safewatch.api.body_limit import BodyLimit
from safewatch.api.dashboard import Dashboard
from safewatch.api.errors import install_error_handlers
from safewatch.api.proxies import install_trusted_proxies
from safewatch.api.query_cache import CachedAnswers
from safewatch.api.redaction import RedactResponses
from safewatch.api.security import SecurityHeaders

__all__ = ["WEB_DIR", "install_dashboard", "media_origins"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
"""Templates and static files of the pages (no build step: served as they are)."""


def media_origins(dashboard: Dashboard) -> list[str]:
    """Origins of the cameras' ``live_url`` players, which the pages may embed:
    ``scheme://host[:port]``. The URL's netloc also holds ``user:password@`` where the URL has
    them, which the Content-Security-Policy of every answer (to anyone, the login page
    included) used to repeat."""
    origins = []
    for camera in dashboard.site().config.cameras.values():
        if camera.live_url:
            parts = urlsplit(camera.live_url)
            host = parts.netloc.rpartition("@")[2]  # host[:port] as written ([v6] kept)
            origins.append(f"{parts.scheme}://{host}")
    return origins


def install_dashboard(app: FastAPI, dashboard: Dashboard) -> None:
    """Add the dashboard, its API and its protection to ``app``."""
    from safewatch.api.jobs import AuditJobs
    from safewatch.api.routes import (
        audit_jobs,
        auth,
        backtests,
        cameras,
        evidence,
        incidents,
        pages,
        recordings,
        reports,
        rule_drafts,
        rules,
        stats,
        users,
        zones,
    )
    from safewatch.api.ws import router as ws_router

    if dashboard.jobs is None:
        dashboard.jobs = AuditJobs(dashboard)
    app.state.dashboard = dashboard
    install_error_handlers(app)
    for module in (
        auth,
        cameras,
        incidents,
        evidence,
        recordings,
        stats,
        rules,
        rule_drafts,
        zones,
        users,
        audit_jobs,
        backtests,
        reports,
    ):
        app.include_router(module.router)
    app.include_router(ws_router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.add_middleware(CachedAnswers, cache=lambda: dashboard.queries)  # inside the gate
    app.add_middleware(
        AuthGate, store=dashboard.auth, session_cookie=dashboard.settings.session_cookie
    )
    http = dashboard.site().config.runtime.http
    app.add_middleware(
        BodyLimit,
        max_bytes=int(http.max_body_bytes),
        per_path={
            "/api/v1/audit-jobs/upload": dashboard.settings.max_upload_bytes,
            "/api/v1/backtests/upload": dashboard.settings.max_upload_bytes,
        },
    )
    app.add_middleware(RedactResponses, site=dashboard.site)
    app.add_middleware(SecurityHeaders, frame_origins=media_origins(dashboard))
    install_trusted_proxies(app, http.trusted_proxies)
