"""``create_app(settings, services)``: the FastAPI application of ``safewatch serve``.

Built by a factory, never at import, so tests make their own app around a fake or a real service.
The app holds no state of its own: every endpoint asks ``services``, which the runtime implements
(:class:`~safewatch.runtime.service.RuntimeService`). For now it serves the operations endpoints:

* ``GET /healthz``: liveness only (200 alive, 503 hung), see :mod:`safewatch.api.health`;
* ``GET /readyz``: per-camera readiness and the database, 200 ready or degraded, 503 not ready;
  ``?camera=ID`` for one camera (404 for an unknown one);
* ``GET /metrics``: Prometheus text exposition.

The dashboard and incident endpoints will be added to the same factory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fastapi import FastAPI, Query, Response
from fastapi.responses import JSONResponse

from safewatch.api.health import METRICS_CONTENT_TYPE, Liveness, Readiness
from safewatch.api.live_video import close_at_shutdown

if TYPE_CHECKING:
    from safewatch.api.dashboard import Dashboard

__all__ = ["ApiServices", "ApiSettings", "create_app"]


class ApiServices(Protocol):
    """What the API needs from the running server."""

    def liveness(self) -> Liveness:
        """Whether the process should be restarted."""
        ...

    def readiness(self) -> Readiness:
        """What works now (database checked)."""
        ...

    def metrics(self) -> bytes:
        """Prometheus exposition text."""
        ...


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Settings of the HTTP app (more come with authentication and the dashboard).

    Attributes:
        title: Shown in the OpenAPI page.
        site_name: The site's name, in the OpenAPI description.
    """

    title: str = "safewatch"
    site_name: str = ""


def create_app(
    settings: ApiSettings, services: ApiServices, dashboard: Dashboard | None = None
) -> FastAPI:
    """The API app for one running server.

    With a ``dashboard`` (``safewatch serve`` always passes one) the app also serves the
    dashboard's pages, API and WebSockets, and every endpoint but ``/healthz`` requires a session
    or an API token (:mod:`safewatch.api.setup`). Without one it serves only the operations
    endpoints, unauthenticated (tests of those endpoints).
    """
    app = FastAPI(
        title=settings.title,
        description=f"safewatch server{f' for {settings.site_name}' if settings.site_name else ''}",
        docs_url="/docs",
        redoc_url=None,
        lifespan=close_at_shutdown,  # the live video feeds (made on first watch)
    )
    # -- dashboard, API and authentication (safewatch.api.setup) --------------------------------
    from safewatch.api.errors import install_error_handlers

    install_error_handlers(app)
    if dashboard is not None:
        from safewatch.api.setup import install_dashboard

        # Live tiles show each camera's state as the runtime sees it (api/camera_state.py).
        app.state.readiness = services.readiness
        install_dashboard(app, dashboard)
    # -- end of dashboard -----------------------------------------------------------------------

    @app.get("/healthz", response_model=Liveness, tags=["operations"])
    def healthz() -> JSONResponse:
        """Liveness: 200 while the process works, 503 when a core thread is dead or hung."""
        live = services.liveness()
        code = 200 if live.status == "alive" else 503
        return JSONResponse(live.model_dump(mode="json"), status_code=code)

    @app.get("/readyz", response_model=Readiness, tags=["operations"])
    def readyz(
        camera: str | None = Query(None, description="Only this camera; 503 if it is not ready."),
    ) -> JSONResponse:
        """Readiness: database, inference and rules threads, and every camera."""
        ready = services.readiness()
        if camera is not None:
            found = ready.cameras.get(camera)
            if found is None:
                known = ", ".join(sorted(ready.cameras)) or "none"
                return JSONResponse(
                    {
                        "error": "not_found",
                        "message": f"camera {camera!r} not found (cameras: {known})",
                    },
                    status_code=404,
                )
            body = found.model_dump(mode="json")
            return JSONResponse(body, status_code=200 if found.ready else 503)
        code = 503 if ready.status in ("not_ready", "stopping") else 200
        return JSONResponse(ready.model_dump(mode="json"), status_code=code)

    @app.get("/metrics", tags=["operations"])
    def metrics() -> Response:
        """Prometheus metrics of the server and its cameras."""
        return Response(services.metrics(), media_type=METRICS_CONTENT_TYPE)

    return app
