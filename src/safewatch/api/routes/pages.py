"""The dashboard's pages: server-rendered Jinja2 templates plus one vanilla JavaScript module each.

No front-end build step: the templates and ``web/static`` are served as they are. Templates render
the frame of each page (navigation, the user, filters' options) and carry what the page's module
needs in ``data-`` attributes; the module then talks to the JSON API with the CSRF token from the
``<meta name="csrf-token">`` tag. No inline script anywhere, so the Content-Security-Policy can
forbid it (:mod:`safewatch.api.security`).

The login form is an ordinary HTML form (it works before any script loads). It is protected
against login CSRF by a double-submit token: ``GET /login`` sets a random ``safewatch_login``
cookie (``SameSite=Strict``; kept when the browser has one, so forms open in several tabs all
work) and puts the same value in a hidden field; ``POST /login`` requires both to match, and
answers a mismatch (the cookie expired after an hour) with a fresh form saying so.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from safewatch.api.auth.gate import same_token
from safewatch.api.auth.principal import Principal
from safewatch.api.camera_state import readiness_of
from safewatch.api.dashboard import Dashboard
from safewatch.api.deps import DashboardDep, Viewer, client_of
from safewatch.api.errors import ApiError
from safewatch.api.routes.auth import login, set_session_cookie
from safewatch.api.routes.cameras import camera_list
from safewatch.api.routes.incidents import IncidentId
from safewatch.errors import StorageError
from safewatch.reports.pdf import heads_note

__all__ = ["router", "templates"]

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

_LOGIN_COOKIE = "safewatch_login"
_LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
"""What ``secrets.token_urlsafe(24)`` gives: a cookie of another shape is not reused."""


def _templates() -> Jinja2Templates:
    from safewatch.api.setup import WEB_DIR

    return Jinja2Templates(directory=WEB_DIR / "templates")


templates = _templates()

NAV = (
    ("live", "/live", "Live"),
    ("incidents", "/incidents", "Incidents"),
    ("analytics", "/analytics", "Analytics"),
    ("zones", "/zones", "Zones"),
    ("rules", "/rules", "Rules"),
    ("audit", "/audit", "Audit"),
    ("reports", "/reports", "Reports"),
    ("settings", "/settings", "Settings"),
)

_NAV_OPERATOR_ONLY = frozenset({"reports"})
"""Pages whose only use needs the operator role (the PDF export answers a viewer 403): viewers
are not offered them."""


def _safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not target:
        return "/live"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/live"
    return target


def _page(
    request: Request,
    name: str,
    user: Principal,
    dashboard: Dashboard,
    data: dict[str, Any] | None = None,
    **context: Any,
) -> HTMLResponse:
    site = dashboard.site().config
    return templates.TemplateResponse(
        request,
        f"{name}.html",
        {
            "user": user,
            "csrf_token": user.csrf_token or "",
            "nav": [n for n in NAV if n[0] not in _NAV_OPERATOR_ONLY or user.can("operator")],
            "active": name.split("_", maxsplit=1)[0],
            "site_name": site.site.name,
            "timezone": site.site.timezone,
            "page_data": json.dumps(data or {}),
            **context,
        },
    )


def _login_token(request: Request) -> str:
    """The login form's token: the browser's ``safewatch_login`` cookie when it holds one
    (another tab's form stays valid), else a new random one."""
    cookie = request.cookies.get(_LOGIN_COOKIE, "")
    return cookie if _LOGIN_TOKEN.fullmatch(cookie) else secrets.token_urlsafe(24)


def _login_form(
    request: Request,
    next: str | None,
    *,
    error: str | None = None,
    username: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The login page with its token in the hidden field and in the cookie (renewed for an
    hour from now, so a form open a while is not refused for a cookie that expired meanwhile)."""
    token = _login_token(request)
    response = templates.TemplateResponse(
        request,
        "login.html",
        {"login_token": token, "next": _safe_next(next), "error": error, "username": username},
        status_code=status_code,
        headers=headers,
    )
    response.set_cookie(
        _LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> Response:
    """The login form.

    Its alert only ever shows what the server itself says after a ``POST /login``: an
    ``?error=`` parameter (which nothing in safewatch produces) put any text a link's author
    chose in the site's own alert ("your account is locked, call ..."), so there is none.

    A browser that has a login cookie keeps it: a new token per ``GET`` replaced the one that
    a login form open in another tab carries, and that tab's sign-in was refused.
    """
    return _login_form(request, next)


@router.post("/login")
async def login_form(
    request: Request,
    dashboard: DashboardDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    login_token: Annotated[str, Form(max_length=64)],
    next: Annotated[str, Form(max_length=2048)] = "/live",
) -> Response:
    """Check the form; on success start a session and go where the user was going."""
    cookie = request.cookies.get(_LOGIN_COOKIE, "")
    if not cookie or not same_token(login_token, cookie):
        # The cookie expired (a form left open over an hour) or this is not the form we sent:
        # a person reading a page, not a program, so a fresh form says so (a JSON error body
        # was a dead end). The user name is not filled in: it came from whoever sent the form.
        return _login_form(
            request, next, error="the login form expired; sign in again", status_code=403
        )
    client = client_of(request)
    try:
        user = await anyio.to_thread.run_sync(
            login, dashboard, username, password, client, limiter=dashboard.password_checks
        )
    except ApiError as exc:
        if exc.status not in (401, 429):
            raise
        return _login_form(
            request,
            next,
            error=exc.message,
            username=username,
            status_code=exc.status,
            headers=exc.headers,
        )
    value, _session = await anyio.to_thread.run_sync(dashboard.auth.create_session, user, client)
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_session_cookie(response, request, dashboard, value)
    # The login cookie stays (until its hour is up): the forms of other tabs carry it, and their
    # sign-in would be refused without it. It grants nothing by itself.
    return response


@router.get("/")
async def home(_user: Viewer) -> RedirectResponse:
    """The live view is the control room's home."""
    return RedirectResponse("/live", status_code=303)


@router.get("/live", response_class=HTMLResponse)
async def live(request: Request, user: Viewer, dashboard: DashboardDep) -> HTMLResponse:
    """Camera grid with overlays.

    A camera's ``live_url`` (its media server's player: the original video, heads visible) is
    given where the camera hides nothing, and otherwise only to an admin who chose the
    original (``?video=raw``), written to the audit log (``live.raw_view``, ``via: live_url``)
    as the raw video socket is, before the page goes out; everyone else gets the blurred video.
    """
    original = user.can("admin") and request.query_params.get("video") == "raw"
    listed = await anyio.to_thread.run_sync(
        partial(camera_list, dashboard, readiness_of(request), original=original)
    )
    if original:
        site = dashboard.site().config
        unhidden = [
            c.id
            for c in listed
            if c.live_url and c.enabled and site.privacy_for(c.id).mode != "off"
        ]
        for camera_id in unhidden:  # (a StorageError refuses the page: nothing unaudited)
            await anyio.to_thread.run_sync(
                partial(
                    dashboard.auth.audit,
                    "live.raw_view",
                    actor=user.username,
                    subject=camera_id,
                    detail={"mode": "raw", "via": "live_url"},
                    client=client_of(request),
                )
            )
    cameras = [c.model_dump(mode="json") for c in listed]
    return _page(request, "live", user, dashboard, {"cameras": cameras})


def _options(dashboard: Dashboard, *, stored: bool = False) -> dict[str, Any]:
    """The filters' options: the site's cameras and rules, its rule kinds and time zone.

    With ``stored``, the cameras and rules also include those the site no longer has (removed,
    or renamed: the old id) whose incidents are still in the database, marked ``removed``: the
    pages that filter stored incidents (list, analytics, report) offered only the site's cameras
    and rules now, so such incidents could not be reported or analysed although the API takes
    any id. Not for pages that act on cameras (audit): a removed camera cannot be run. It reads
    the database, so call it off the event loop.
    """
    site = dashboard.site().config
    rules = dashboard.rules.rule_generation().rules
    cameras: list[dict[str, Any]] = [
        {"id": k, "name": c.name or k} for k, c in site.cameras.items()
    ]
    listed: list[dict[str, Any]] = [{"id": r.id, "kind": r.kind} for r in rules.rules]
    if stored:
        try:
            counted = dashboard.storage.repository.aggregate(["camera", "rule", "kind"])
        except StorageError as exc:
            # The page still filters by the site's cameras; its lists say the database is down.
            log.warning("page options without the stored cameras and rules: %s", exc)
            counted = []
        gone = sorted({b.camera for b in counted if b.camera and b.camera not in site.cameras})
        cameras += [{"id": k, "name": k, "removed": True} for k in gone]
        known = {r.id for r in rules.rules}
        old = {b.rule: b.kind for b in counted if b.rule and b.rule not in known}
        listed += [{"id": k, "kind": old[k], "removed": True} for k in sorted(old)]
    return {
        "cameras": cameras,
        "rules": listed,
        "kinds": sorted({r.kind for r in rules.rules}),
        "timezone": site.site.timezone,
    }


@router.get("/incidents", response_class=HTMLResponse)
async def incidents(request: Request, user: Viewer, dashboard: DashboardDep) -> HTMLResponse:
    """Incident list with filters and keyboard review."""
    options = await anyio.to_thread.run_sync(partial(_options, dashboard, stored=True))
    return _page(request, "incidents", user, dashboard, options)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident(
    incident_id: IncidentId, request: Request, user: Viewer, dashboard: DashboardDep
) -> HTMLResponse:
    """One incident: still, clip, timeline, actions, notes."""
    await anyio.to_thread.run_sync(dashboard.storage.repository.get, incident_id)
    data = {"id": incident_id, **_options(dashboard)}
    return _page(request, "incident", user, dashboard, data, incident_id=incident_id)


@router.get("/analytics", response_class=HTMLResponse)
async def analytics(request: Request, user: Viewer, dashboard: DashboardDep) -> HTMLResponse:
    """Charts of incidents by time, camera, rule and kind."""
    options = await anyio.to_thread.run_sync(partial(_options, dashboard, stored=True))
    return _page(request, "analytics", user, dashboard, options)


@router.get("/zones", response_class=HTMLResponse)
async def zones(request: Request, user: Viewer, dashboard: DashboardDep) -> HTMLResponse:
    """Draw zones and lines on camera stills."""
    listed = await anyio.to_thread.run_sync(camera_list, dashboard, readiness_of(request))
    cameras = [c.model_dump(mode="json") for c in listed]
    from safewatch.api.routes.rules import rule_files

    return _page(
        request,
        "zones",
        user,
        dashboard,
        {"cameras": cameras, "files": rule_files(dashboard).names()},
    )


@router.get("/rules", response_class=HTMLResponse)
async def rules(request: Request, user: Viewer, dashboard: DashboardDep) -> HTMLResponse:
    """YAML editor with validation, enable/disable and reload state."""
    from safewatch.api.routes.rules import rule_files

    return _page(request, "rules", user, dashboard, {"files": rule_files(dashboard).names()})


@router.get("/audit", response_class=HTMLResponse)
async def audit(request: Request, user: Viewer, dashboard: DashboardDep) -> HTMLResponse:
    """Run the pipeline on archived footage; browse results."""
    return _page(request, "audit", user, dashboard, _options(dashboard))


@router.get("/reports", response_class=HTMLResponse)
async def reports(request: Request, user: Viewer, dashboard: DashboardDep) -> HTMLResponse:
    """Export the filtered view and its analytics as a PDF."""
    options = await anyio.to_thread.run_sync(partial(_options, dashboard, stored=True))
    # The page said "(heads hidden)" even with privacy off: worded as the PDF words its stills.
    site = dashboard.site().config
    hidden = {site.privacy_for(c).mode != "off" for c in site.cameras}
    heads = heads_note(hidden or {site.privacy.mode != "off"})
    return _page(
        request,
        "reports",
        user,
        dashboard,
        options,
        heads=heads or "heads hidden only on cameras whose privacy mode is not off",
    )


@router.get("/settings", response_class=HTMLResponse)
async def settings(request: Request, user: Viewer, dashboard: DashboardDep) -> HTMLResponse:
    """Site summary, users (admins), API tokens, audit log."""
    site = dashboard.site()
    summary = {
        "site": site.config.site.name,
        "timezone": site.config.site.timezone,
        "site_file": str(site.path),
        "rules": str(dashboard.rules_path),
        "cameras": len(site.config.cameras),
        "privacy": site.config.privacy.mode,
        "keep_originals": site.config.evidence.keep_originals,
        "database": dashboard.storage.engine.url.render_as_string(hide_password=True),
        "evidence": dashboard.storage.evidence.location,
    }
    return _page(request, "settings", user, dashboard, {"summary": summary})
