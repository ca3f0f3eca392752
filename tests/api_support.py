"""Helpers for the dashboard/API tests: a site on a fresh SQLite file, users, incidents, logins.

A module of its own (not a conftest) so unit, integration and e2e tests share one copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from patience import poll
from safewatch.api import ApiSettings, create_app
from safewatch.api.auth.passwords import use_parameters
from safewatch.api.dashboard import Dashboard, DashboardSettings
from safewatch.config.loader import load_site
from safewatch.domain import Incident, IncidentStatus, Severity, incident_id
from safewatch.incidents.site_storage import SiteStorage, open_site_storage
from safewatch.runtime.health import ComponentHealth, Liveness, Readiness

use_parameters(time_cost=1, memory_cost=1024)  # same algorithm, test-sized cost

PASSWORD = "correct horse battery"
"""Every test user's password (long enough for the policy)."""

FROM_START: list[str | None] = [
    None,
    "bytes=0-",
    "items=0-",
    "bytes=5-9,0-4",
    "bytes=00-",
    "bytes=-100000000",
]
"""``Range`` headers answered from a file's first byte (of 100 bytes or more): none, a player's
first request, ones the range parser does not take (another unit, a multi-range: the whole file),
a zero-padded start and a suffix longer than the file. Each is a view to audit."""

ELSEWHERE = ["bytes=10-19", "bytes=-10", "bytes=99999-"]
"""``Range`` headers of later pieces (seeks) and one outside the file: not new views."""

RULES = """\
version: 1
# Zones of the yard camera.
zones:
  drop_zone:
    camera: yard
    polygon: [[0.40, 0.42], [0.74, 0.38], [0.78, 0.95], [0.38, 0.95]]
    description: Material drop zone
rules:
  - id: hardhat-required
    kind: ppe
    cameras: [yard]
    require: [hardhat]
    min_duration: 1s
    severity: high
  - id: no-entry-drop-zone
    kind: zone_intrusion
    zone: drop_zone
    objects: [person]
    severity: medium
"""


def write_site(
    folder: Path, *, source: str = "yard.mp4", extra: dict[str, Any] | None = None
) -> Path:
    """``site.yaml`` (cameras ``yard`` and a disabled ``dock``) and ``rules/yard.yaml``."""
    site: dict[str, Any] = {
        "version": 1,
        "site": {"name": "Test yard", "timezone": "Europe/Berlin"},
        "models": {
            "coco": {"path": "model.onnx", "format": "yolox", "labels": {"person": "person"}},
            # the hard-hat rule needs a model that sees hard hats on its camera
            "ppe": {"path": "ppe.onnx", "format": "yolov8", "labels": {"Hardhat": "hardhat"}},
        },
        "cameras": {
            "yard": {"source": source, "fps": 5, "models": ["coco", "ppe"], "name": "Yard 01"},
            "dock": {"source": source, "fps": 5, "models": ["coco"], "enabled": False},
        },
        "storage": {"database": "sqlite:///data/safewatch.db", "evidence_dir": "data/evidence"},
    }
    site.update(extra or {})
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "yard.yaml").write_text(RULES)
    return path


class FakeOps:
    """Operations services for an app without the runtime."""

    def liveness(self) -> Liveness:
        return Liveness(status="alive", uptime_seconds=1.0)

    def readiness(self) -> Readiness:
        ok = ComponentHealth(ok=True, message="ok")
        return Readiness(status="ready", database=ok, inference=ok, rules=ok, site=ok, cameras={})

    def metrics(self) -> bytes:
        return b"# no metrics\n"


def make_dashboard(
    folder: Path, *, site_extra: dict[str, Any] | None = None, **settings: Any
) -> tuple[Dashboard, SiteStorage]:
    """A dashboard on a fresh site in ``folder`` (no cameras running); ``site_extra`` replaces
    top-level sections of the site file (:func:`write_site`)."""
    site = load_site(write_site(folder, extra=site_extra))
    storage = open_site_storage(site)
    dashboard = Dashboard.create(
        lambda: site, folder / "rules", storage, settings=DashboardSettings(**settings)
    )
    return dashboard, storage


def make_app(dashboard: Dashboard, ops: Any = None) -> FastAPI:
    """The app ``safewatch serve`` would serve, around ``dashboard`` (``ops``: what answers
    ``/healthz``, ``/readyz`` and the cameras' states; default :class:`FakeOps`)."""
    return create_app(ApiSettings(site_name="Test yard"), ops or FakeOps(), dashboard)


def add_users(dashboard: Dashboard) -> None:
    """``viewer``, ``operator`` and ``admin``, each with the role of their name."""
    for role in ("viewer", "operator", "admin"):
        dashboard.auth.add_user(role, PASSWORD, role)


def incident(
    n: int,
    *,
    camera: str = "yard",
    rule: str = "hardhat-required",
    kind: str = "ppe",
    severity: Severity = Severity.HIGH,
    started: float | None = None,
    status: IncidentStatus = IncidentStatus.OPEN,
    snapshot: str | None = None,
    clip: str | None = None,
) -> Incident:
    """The ``n``-th test incident (one minute apart, ending after 4 s)."""
    at = started if started is not None else 1_750_000_000.0 + 60 * n
    return Incident(
        id=incident_id(camera, rule, n, at),
        camera_id=camera,
        rule_id=rule,
        rule_kind=kind,
        severity=severity,
        track_ids=(n,),
        started_at=at,
        ended_at=at + 4.0,
        peak_confidence=0.8,
        message=f"person #{n} without hardhat",
        snapshot=snapshot,
        clip=clip,
        status=status,
    )


def write_still(storage: SiteStorage, found: Incident) -> Incident:
    """Store a small still for ``found`` and return it with the key set."""
    image = np.full((72, 128, 3), 90, np.uint8)
    key = storage.evidence.write_still(
        found.id, image, camera_id=found.camera_id, at=found.started_at
    )
    return _with(found, snapshot=key)


def _with(found: Incident, **changes: Any) -> Incident:
    from dataclasses import replace

    return replace(found, **changes)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log ``client`` in (session cookie kept by the client); returns the CSRF token."""
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    return token


@contextmanager
def client_for(dashboard: Dashboard) -> Iterator[TestClient]:
    """A test client of the app around ``dashboard`` (base URL http://testserver)."""
    with TestClient(make_app(dashboard)) as client:
        yield client


def wait_until(condition: Any, timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll until truthy; fail after ``timeout`` seconds."""
    return poll(condition, timeout, period=step)


def close_of(
    ws: Any, timeout: float = 10.0, nudge: Callable[[], None] | None = None
) -> tuple[int, str | None]:
    """The close code and reason of the test client's socket ``ws`` once the server closes it,
    reading (and dropping) whatever it sends until then; ``nudge``, called before each read,
    makes a quiet feed send something, so a socket that stays open fails the test after
    ``timeout`` seconds instead of blocking it."""

    def closed() -> tuple[int, str | None] | None:
        if nudge is not None:
            nudge()
        message = ws.receive()
        if message["type"] == "websocket.close":
            return int(message.get("code", 1000)), message.get("reason")
        return None

    found: tuple[int, str | None] = poll(closed, timeout, "the server to close the socket", 0.2)
    return found


def next_message(
    ws: Any, kind: str, skipped: tuple[str, ...] = ("state", "geometry", "ping")
) -> dict[str, Any]:
    """The next JSON message of ``kind`` on the test client's socket ``ws``. The messages a
    socket sends on its own in between (camera state once a second, geometry, pings) are
    skipped; any other kind fails the test, naming the message."""
    while True:
        message: dict[str, Any] = ws.receive_json()
        if message["type"] == kind:
            return message
        assert message["type"] in skipped, message


@contextmanager
def served_app(dashboard: Dashboard, ops: Any = None) -> Iterator[str]:
    """The app around ``dashboard`` (and ``ops``, see :func:`make_app`) served by uvicorn on a
    free loopback port in this process (for browser tests); yields its base URL and stops the
    server afterwards."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            make_app(dashboard, ops),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
