"""FastAPI dependencies: the dashboard, the request's principal, and role checks.

Authentication itself happens in :class:`~safewatch.api.auth.gate.AuthGate` before any route; a
route only declares the role it needs::

    @router.post("/incidents/{incident_id}/transition")
    def transition(..., user: Operator, dashboard: DashboardDep) -> ...

A viewer calling it gets 403 ``forbidden`` naming the role needed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from safewatch.api.auth.principal import Principal, Role
from safewatch.api.dashboard import Dashboard
from safewatch.api.errors import ApiError

if TYPE_CHECKING:
    from safewatch.api.auth.gate import AccessWatch

__all__ = [
    "Admin",
    "DashboardDep",
    "Operator",
    "Viewer",
    "access_watch",
    "client_of",
    "get_dashboard",
    "principal_of",
    "require",
]


def get_dashboard(request: HTTPConnection) -> Dashboard:
    """The app's dashboard services."""
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def principal_of(connection: HTTPConnection) -> Principal:
    """The principal the gate found; 401 if none (the gate was not installed)."""
    principal = getattr(connection.state, "principal", None)
    if not isinstance(principal, Principal):
        raise ApiError(401, "unauthenticated", "authentication required")
    return principal


def access_watch(connection: HTTPConnection, needed: Role) -> AccessWatch | None:
    """The re-check of an open stream's credential (:class:`~safewatch.api.auth.gate.AccessWatch`),
    looked up at least every ``socket_recheck_seconds``; ``None`` when the gate is not installed
    (then :func:`principal_of` refused the stream already)."""
    from safewatch.api.auth.gate import AccessWatch, AuthGate

    gate = connection.scope.get("state", {}).get("auth_gate")
    if not isinstance(gate, AuthGate):
        return None
    every = get_dashboard(connection).settings.socket_recheck_seconds
    return AccessWatch(gate, connection.headers, needed, every)


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency returning the principal if it has at least ``role``, else 403.

    Dependencies here are coroutines: FastAPI runs a plain function in a worker thread, and
    that round trip per dependency per request was a measurable part of a cached incident
    list's CPU under 50 clients (issue 13).
    """

    async def check(request: Request) -> Principal:
        principal = principal_of(request)
        if not principal.can(role):
            raise ApiError(
                403,
                "forbidden",
                f"this needs the {role} role; {principal.username} is {principal.role}",
            )
        return principal

    check.__name__ = f"require_{role}"
    return check


def client_of(connection: HTTPConnection) -> str:
    """The client's address, for the audit log and login throttling."""
    return connection.client.host if connection.client is not None else "unknown"


async def _dashboard(request: HTTPConnection) -> Dashboard:
    """:func:`get_dashboard` as a coroutine dependency (see :func:`require`)."""
    return get_dashboard(request)


DashboardDep = Annotated[Dashboard, Depends(_dashboard)]
Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
