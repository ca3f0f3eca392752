"""Log in and out, and who am I.

Login checks the throttle first (:class:`~safewatch.api.auth.ratelimit.LoginLimiter`), then the
password (argon2, same time for unknown names), then starts a session: a random cookie value,
``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (other sites' requests do not carry it),
``Secure`` when the request came over HTTPS (directly or through a proxy that says so), and
``Path=/``. Every success and failure is written to the audit log, and a throttled address
once per throttling window. The JSON endpoint serves scripts and the page's own
JavaScript; the login page posts a plain form to ``/login`` (:mod:`safewatch.api.routes.pages`),
which shares :func:`login`.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response

from safewatch.api.auth.principal import Principal
from safewatch.api.auth.store import User
from safewatch.api.dashboard import Dashboard
from safewatch.api.deps import DashboardDep, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES, ApiError
from safewatch.api.schemas import LoginIn, MeOut

__all__ = ["login", "router", "set_session_cookie"]

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=ERROR_RESPONSES)


def login(dashboard: Dashboard, username: str, password: str, client: str) -> User:
    """Check the throttle and the password; audit the outcome.

    Raises:
        ApiError: 429 while throttled, 401 for wrong credentials (the same message for an unknown
            name and a wrong password).
    """
    wait = dashboard.limiter.retry_after(username, client)
    if wait > 0:
        # Once per address per limiter window (the first name it was refused): refusals come as
        # fast as a client asks, with any names.
        if dashboard.limiter.first_refusal(client):
            dashboard.auth.audit(
                "login.throttled", actor=username[:64], client=client, detail={"wait": round(wait)}
            )
        raise ApiError(
            429,
            "rate_limited",
            f"too many failed logins from this address; try again in {int(wait) + 1} s",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    user = dashboard.auth.authenticate(username, password)
    if user is None:
        dashboard.limiter.failed(username, client)
        dashboard.auth.audit("login.failed", actor=username[:64], client=client)
        raise ApiError(401, "invalid_credentials", "wrong user name or password")
    dashboard.limiter.succeeded(username, client)
    dashboard.auth.audit("login", actor=user.username, client=client)
    return user


def set_session_cookie(
    response: Response, request: Request, dashboard: Dashboard, value: str
) -> None:
    """Attach the session cookie (attributes in the module docstring)."""
    response.set_cookie(
        dashboard.settings.session_cookie,
        value,
        max_age=int(dashboard.auth.lifetime),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


@router.post("/login", response_model=MeOut, summary="Log in (starts a session)")
async def api_login(
    body: LoginIn, request: Request, response: Response, dashboard: DashboardDep
) -> MeOut:
    """Start a session; the cookie is set, and the CSRF token for changes is returned."""
    client = client_of(request)

    def run() -> tuple[User, str, str]:
        user = login(dashboard, body.username, body.password, client)
        cookie, session = dashboard.auth.create_session(user, client)
        return user, cookie, session.csrf_token

    user, cookie, csrf = await anyio.to_thread.run_sync(run, limiter=dashboard.password_checks)
    set_session_cookie(response, request, dashboard, cookie)
    return MeOut(username=user.username, role=user.role, method="session", csrf_token=csrf)


def end_session(dashboard: Dashboard, principal: Principal, client: str) -> None:
    """Log the session out and audit it."""
    if principal.session_id is not None:
        dashboard.auth.end_session(principal.session_id)
    dashboard.auth.audit("logout", actor=principal.username, client=client)


@router.post("/logout", status_code=204, summary="Log out")
async def api_logout(
    request: Request, response: Response, user: Viewer, dashboard: DashboardDep
) -> None:
    """End the session (a token stays valid: revoke it instead)."""
    await anyio.to_thread.run_sync(end_session, dashboard, user, client_of(request))
    response.delete_cookie(dashboard.settings.session_cookie, path="/")


@router.get("/me", response_model=MeOut, summary="Who am I")
async def me(user: Viewer) -> MeOut:
    """The authenticated user and, for sessions, the CSRF token."""
    return MeOut(
        username=user.username, role=user.role, method=user.method, csrf_token=user.csrf_token
    )
