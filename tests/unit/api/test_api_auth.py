"""Authentication and authorisation: no data without a session or token, CSRF on changes, roles,
login throttling, tokens, security headers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from starlette.routing import Route
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

from api_support import (
    PASSWORD,
    add_users,
    client_for,
    close_of,
    incident,
    login,
    make_app,
    make_dashboard,
    next_message,
    served_app,
    wait_until,
)
from safewatch.api.auth.gate import is_public
from safewatch.api.auth.ratelimit import LoginLimiter
from safewatch.api.auth.store import AuthStore
from safewatch.api.dashboard import Dashboard
from safewatch.domain import TrackedFrame
from safewatch.storage.auth_tables import SessionRow


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    for n in range(3):
        storage.repository.upsert(incident(n))
    yield dashboard
    storage.close()


@pytest.fixture
def client(dashboard: Dashboard) -> Iterator[TestClient]:
    with client_for(dashboard) as client:
        yield client


def _concrete(path: str) -> str:
    return (
        path.replace("{incident_id}", "0123456789abcdef0123")
        .replace("{camera_id}", "yard")
        .replace("{name}", "yard.yaml")
        .replace("{zone_id}", "drop_zone")
        .replace("{line_id}", "l1")
        .replace("{rule_id}", "hardhat-required")
        .replace("{username}", "viewer")
        .replace("{token_id}", "1")
        .replace("{job_id}", "abcdefabcdef")
        .replace("{which}", "still")
        .replace("{path:path}", "css/app.css")
    )


def _routes(routes: Iterable[Any], prefix: str = "") -> Iterator[Any]:
    """Every route, looking inside included routers (FastAPI keeps them as objects)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute | APIWebSocketRoute | Route):
            yield route


def test_no_endpoint_answers_without_a_session_or_token(client: TestClient) -> None:
    checked = 0
    for found in _routes(client.app.routes):  # type: ignore[attr-defined]
        route = found
        if isinstance(found, Route) and not isinstance(found, APIRoute):
            route = APIRoute(found.path, lambda: None, methods=list(found.methods or ["GET"]))
        if isinstance(route, APIRoute):
            for method in route.methods:
                path = _concrete(route.path)
                response = client.request(method, path, follow_redirects=False)
                if is_public(route.path):
                    continue
                checked += 1
                assert response.status_code in (401, 303), (method, path, response.status_code)
                if response.status_code == 303:
                    assert response.headers["location"].startswith("/login?next=")
                elif method != "HEAD":
                    assert response.json()["error"] == "unauthenticated"
                    assert "items" not in response.text
        elif isinstance(route, APIWebSocketRoute):
            with (
                pytest.raises(WebSocketDisconnect),
                client.websocket_connect(_concrete(route.path)) as ws,
            ):
                ws.receive_json()
            checked += 1
    assert checked > 40
    assert client.get("/healthz").status_code == 200


def test_a_wrong_token_or_stale_cookie_is_refused(client: TestClient) -> None:
    bad = client.get("/api/v1/incidents", headers={"Authorization": "Bearer swt_nope"})
    assert bad.status_code == 401
    assert "unknown" in bad.json()["message"]
    client.cookies.set("safewatch_session", "not-a-session")
    assert client.get("/api/v1/incidents").status_code == 401


def test_changes_with_a_session_need_the_csrf_token(client: TestClient) -> None:
    csrf = login(client, "operator")
    incident_id = client.get("/api/v1/incidents").json()["items"][0]["id"]
    body = {"status": "acknowledged"}
    missing = client.post(f"/api/v1/incidents/{incident_id}/transition", json=body)
    assert (missing.status_code, missing.json()["error"]) == (403, "csrf_failed")
    wrong = client.post(
        f"/api/v1/incidents/{incident_id}/transition", json=body, headers={"X-CSRF-Token": "x"}
    )
    assert wrong.status_code == 403
    # not ASCII (hmac.compare_digest refuses such a str: this was a 500)
    for token in (b"\xe9", b"\xc3\xa9" + csrf[1:].encode()):  # Latin-1 and UTF-8 bytes
        accented = client.post(
            f"/api/v1/incidents/{incident_id}/transition",
            json=body,
            headers={"X-CSRF-Token": token},
        )
        assert (accented.status_code, accented.json()["error"]) == (403, "csrf_failed")
    foreign = client.post(
        f"/api/v1/incidents/{incident_id}/transition",
        json=body,
        headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    ok = client.post(
        f"/api/v1/incidents/{incident_id}/transition", json=body, headers={"X-CSRF-Token": csrf}
    )
    assert ok.status_code == 200
    assert ok.json()["incident"]["status"] == "acknowledged"


def test_another_apps_malformed_cookie_does_not_log_the_user_out(client: TestClient) -> None:
    """Cookies ignore ports: another app on the same host may set one Python's ``SimpleCookie``
    refuses (a space in the value). It made the gate find no cookie at all, so the user was
    logged out while the login form kept succeeding (a login loop)."""
    login(client, "viewer")
    client.cookies.set("theme", "dark mode")
    client.cookies.set("prefs", '"unterminated')
    assert client.get("/api/v1/auth/me").json()["username"] == "viewer"
    page = client.get("/live", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 200


def test_a_basic_authorization_header_from_a_proxy_leaves_the_session_cookie_in_charge(
    client: TestClient,
) -> None:
    """A reverse proxy with HTTP basic authentication (nginx ``auth_basic``) forwards the
    browser's ``Authorization: Basic ...`` with every request: the gate refused it (401)
    without looking at the session cookie that came with it."""
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert client.get("/api/v1/auth/me", headers=basic).status_code == 401  # no session yet
    csrf = login(client, "viewer")
    me = client.get("/api/v1/auth/me", headers=basic)
    assert (me.status_code, me.json()["method"]) == (200, "session")
    # Still a session: its CSRF check applies.
    no_csrf = client.post("/api/v1/tokens", json={"name": "x"}, headers=basic)
    assert (no_csrf.status_code, no_csrf.json()["error"]) == (403, "csrf_failed")
    made = client.post(
        "/api/v1/tokens", json={"name": "x"}, headers={**basic, "X-CSRF-Token": csrf}
    )
    assert made.status_code in (200, 201), made.text
    # A malformed bearer is still refused, cookie or not.
    for header in ("Bearer", "Bearer   ", "bearer swt_unknown"):
        refused = client.get("/api/v1/auth/me", headers={"Authorization": header})
        assert refused.status_code == 401, header


def test_an_origin_refusal_says_what_was_compared(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a proxy that rewrites ``Host`` (nginx's default ``proxy_pass``) every change was
    refused with a bare "Origin mismatch": the operator could not see why."""
    csrf = login(client, "viewer")
    rewritten = {"X-CSRF-Token": csrf, "Origin": "http://cams.plant", "Host": "127.0.0.1:8080"}
    refused = client.post("/api/v1/tokens", json={"name": "x"}, headers=rewritten)
    assert (refused.status_code, refused.json()["error"]) == (403, "csrf_failed")
    message = refused.json()["message"]
    for shown in ("'http://cams.plant'", "http://127.0.0.1:8080", "proxy_set_header Host $host"):
        assert shown in message, message
    caplog.clear()
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/api/v1/ws/incidents", headers=rewritten),
    ):
        pass
    assert closed.value.code == 4403
    assert "'http://cams.plant' is not this server's http://127.0.0.1:8080" in caplog.text
    # Not even a parseable origin: refused, not a 500.
    broken = client.post(
        "/api/v1/tokens", json={"name": "x"}, headers={**rewritten, "Origin": "http://["}
    )
    assert (broken.status_code, broken.json()["error"]) == (403, "csrf_failed")


def test_a_database_failure_tells_anonymous_clients_nothing_about_the_database(
    dashboard: Dashboard, caplog: pytest.LogCaptureFixture
) -> None:
    """The 503 of the gate and of the login endpoint carried the database driver's text (with
    PostgreSQL: its host, address and user name) to clients nobody had authenticated. They get
    a generic sentence; the log keeps the cause."""
    with client_for(dashboard) as client:
        dashboard.auth._engine = create_engine(
            f"sqlite:///{dashboard.storage.engine.url.database}-gone/x.db"
        )
        client.cookies.set("safewatch_session", "anything")
        gate = client.get("/api/v1/incidents")
        client.cookies.clear()
        form = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert (gate.status_code, gate.json()["error"]) == (503, "storage_unavailable")
    assert gate.json()["message"] == "authentication unavailable: the database cannot be read"
    assert (form.status_code, form.json()["error"]) == (503, "storage_unavailable")
    assert form.json()["message"].startswith("the database is unavailable (error id ")
    for answer in (gate, form):
        assert "unable to open database file" not in answer.text
    assert caplog.text.count("unable to open database file") >= 2


def test_a_database_failure_shows_signed_in_users_an_error_id_not_the_drivers_text(
    dashboard: Dashboard, caplog: pytest.LogCaptureFixture
) -> None:
    """Signed-in users got the storage error's text, which was the driver's (with PostgreSQL its
    host and user; with a failed statement the SQL). They get a sentence with an error id now;
    the log has the whole error under that id. Database unreachable: 503; the database
    refusing a statement: 500."""
    with client_for(dashboard) as client:
        csrf = login(client, "operator")
        incident_id = client.get("/api/v1/incidents").json()["items"][0]["id"]
        with dashboard.storage.engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TRIGGER no_updates BEFORE UPDATE ON incidents "
                "BEGIN SELECT RAISE(ABORT, 'trigger-secret-text'); END"
            )
        refused = client.post(
            f"/api/v1/incidents/{incident_id}/transition",
            json={"status": "acknowledged"},
            headers={"X-CSRF-Token": csrf},
        )
        repository = dashboard.storage.repository
        repository._engine = create_engine(
            f"sqlite:///{dashboard.storage.engine.url.database}-gone/x.db"
        )
        down = client.get(f"/api/v1/incidents/{incident_id}")
    assert (down.status_code, down.json()["error"]) == (503, "storage_unavailable"), down.text
    assert (refused.status_code, refused.json()["error"]) == (500, "storage_error"), refused.text
    for answer, sentence, cause in (
        (down, "the database is unavailable", "unable to open database file"),
        (refused, "the database refused the operation", "trigger-secret-text"),
    ):
        message = answer.json()["message"]
        assert message.startswith(f"{sentence} (error id "), message
        error_id = message.split("(error id ", 1)[1].split(")", 1)[0]
        assert cause not in answer.text and "UPDATE" not in answer.text
        logged = [r for r in caplog.records if error_id in r.getMessage()]
        assert len(logged) == 1 and cause in logged[0].getMessage()


def test_a_viewer_reads_but_cannot_change_anything(client: TestClient) -> None:
    csrf = login(client, "viewer")
    headers = {"X-CSRF-Token": csrf}
    incident_id = client.get("/api/v1/incidents").json()["items"][0]["id"]
    assert client.get(f"/api/v1/incidents/{incident_id}").status_code == 200
    refused = [
        client.post(
            f"/api/v1/incidents/{incident_id}/transition",
            json={"status": "acknowledged"},
            headers=headers,
        ),
        client.post(f"/api/v1/incidents/{incident_id}/notes", json={"text": "hi"}, headers=headers),
        client.put("/api/v1/rules/files/yard.yaml", json={"text": "version: 1\n"}, headers=headers),
        client.put(
            "/api/v1/zones/z1",
            json={"camera": "yard", "points": [[0, 0], [1, 0], [1, 1]]},
            headers=headers,
        ),
        client.post(
            "/api/v1/users",
            json={"username": "mallory", "password": "x" * 12, "role": "admin"},
            headers=headers,
        ),
        client.get("/api/v1/reports/incidents.pdf"),
        client.post("/api/v1/rules/reload", headers=headers),
    ]
    for response in refused:
        assert response.status_code == 403, response.request.url
        assert response.json()["error"] == "forbidden"
    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    assert detail["incident"]["status"] == "open"
    assert len(detail["timeline"]) == 2  # opened and closed only: nothing was changed


def test_api_tokens_authenticate_without_csrf_and_can_be_revoked(
    client: TestClient, dashboard: Dashboard
) -> None:
    issued = dashboard.auth.create_token("operator", "script")
    headers = {"Authorization": f"Bearer {issued.token}"}
    incident_id = client.get("/api/v1/incidents", headers=headers).json()["items"][0]["id"]
    ok = client.post(
        f"/api/v1/incidents/{incident_id}/notes", json={"text": "from a script"}, headers=headers
    )
    assert ok.status_code == 200
    assert ok.json()["actor"] == "operator"
    dashboard.auth.revoke_token(issued.info.id)
    assert client.get("/api/v1/incidents", headers=headers).status_code == 401


def test_input_the_store_refuses_is_a_422_with_its_reason(
    client: TestClient, dashboard: Dashboard
) -> None:
    """Blank in Python's sense (``str.strip``) but not in the request schema's (12 spaces pass
    ``min_length``, ``\\x1c`` passes the ``\\S`` pattern): the store's ``ValueError`` was a 500."""
    headers = {"X-CSRF-Token": login(client, "admin")}
    incident_id = client.get("/api/v1/incidents").json()["items"][0]["id"]
    refused = {
        "only whitespace": [
            client.post(
                "/api/v1/users",
                json={"username": "bob", "password": " " * 12, "role": "viewer"},
                headers=headers,
            ),
            client.patch("/api/v1/users/viewer", json={"password": " " * 12}, headers=headers),
        ],
        "a note needs some text": [
            client.post(
                f"/api/v1/incidents/{incident_id}/notes", json={"text": "\x1c"}, headers=headers
            )
        ],
        "a token needs a name": [
            client.post("/api/v1/tokens", json={"name": "\x1c"}, headers=headers)
        ],
        "must not contain control or other non-printable characters": [
            client.post("/api/v1/tokens", json={"name": "ci\x1b[2J"}, headers=headers)
        ],
    }
    for reason, answers in refused.items():
        for answer in answers:
            assert (answer.status_code, answer.json()["error"]) == (422, "invalid_request")
            assert reason in answer.json()["message"], answer.request.url
    assert [u["username"] for u in client.get("/api/v1/users").json()] == [
        "admin",
        "operator",
        "viewer",
    ]
    assert client.get("/api/v1/tokens").json() == []
    assert dashboard.auth.authenticate("viewer", PASSWORD) is not None  # password unchanged


@pytest.mark.parametrize("change", ["disabled", "deleted", "logged out", "token revoked"])
def test_an_open_incident_feed_closes_when_its_credential_ends(
    dashboard: Dashboard, change: str
) -> None:
    """The gate checks a socket at its handshake; the socket must not outlive the access (a
    disabled viewer's open tab went on receiving the incident feed)."""
    app = make_app(dashboard)
    shown = incident(7)
    with TestClient(app) as viewer, TestClient(app) as admin:
        viewer_csrf = {"X-CSRF-Token": login(viewer, "viewer")}
        admin_csrf = {"X-CSRF-Token": login(admin, "admin")}
        issued = dashboard.auth.create_token("viewer", "wall screen")
        bearer = {"Authorization": f"Bearer {issued.token}"} if change == "token revoked" else {}
        with viewer.websocket_connect("/api/v1/ws/incidents", headers=bearer) as ws:
            dashboard.live.publish_incident("opened", shown, actor=None)
            assert next_message(ws, "incident")["incident"]["id"] == shown.id
            if change == "disabled":
                done = admin.patch(
                    "/api/v1/users/viewer", json={"active": False}, headers=admin_csrf
                )
            elif change == "deleted":
                done = admin.delete("/api/v1/users/viewer", headers=admin_csrf)
            elif change == "logged out":
                done = viewer.post("/api/v1/auth/logout", headers=viewer_csrf)
            else:
                done = admin.delete(f"/api/v1/tokens/{issued.info.id}", headers=admin_csrf)
            assert done.status_code in (200, 204), done.text
            code, reason = close_of(
                ws, nudge=lambda: dashboard.live.publish_incident("updated", shown, actor=None)
            )
        assert code == 4401, (code, reason)


def test_an_open_camera_feed_notices_a_change_made_by_another_process(tmp_path: Path) -> None:
    """``safewatch users`` (another process, its own store: this one's change counter does not
    move) disables a user: their open socket is checked again within ``socket_recheck_seconds``
    and closed."""
    dashboard, storage = make_dashboard(tmp_path, socket_recheck_seconds=0.5)
    add_users(dashboard)
    try:
        with client_for(dashboard) as viewer:
            login(viewer, "viewer")
            with viewer.websocket_connect("/api/v1/ws/cameras/yard") as ws:
                assert ws.receive_json()["type"] == "geometry"
                changes = dashboard.auth.changes
                AuthStore(storage.engine).update_user("viewer", active=False)
                assert dashboard.auth.changes == changes
                code, reason = close_of(ws)
            assert code == 4401, (code, reason)
    finally:
        storage.close()


@pytest.mark.parametrize("change", ["token revoked", "disabled", "disabled by another process"])
def test_an_open_mjpeg_stream_ends_when_its_credential_ends(tmp_path: Path, change: str) -> None:
    """``GET /cameras/{id}/mjpeg`` (``frames=0``: endless) was checked once, when it started: a
    revoked token or a disabled user's ``<img>`` went on receiving frames for as long as it
    stayed open. It now asks again like a WebSocket (``keep_access``) and ends."""
    dashboard, storage = make_dashboard(tmp_path, socket_recheck_seconds=0.5)
    add_users(dashboard)
    image = np.zeros((72, 128, 3), np.uint8)
    stop = threading.Event()

    def pump() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            dashboard.live.publish_frame(
                TrackedFrame("yard", n, 0.0, time.time(), 128, 72, ()), image
            )
            stop.wait(0.1)

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    try:
        with served_app(dashboard) as base, httpx.Client(base_url=base, timeout=10) as http:
            issued = dashboard.auth.create_token("viewer", "wall screen")
            if change == "token revoked":
                http.headers["Authorization"] = f"Bearer {issued.token}"
            else:
                http.post("/api/v1/auth/login", json={"username": "viewer", "password": PASSWORD})
            with http.stream("GET", "/api/v1/cameras/yard/mjpeg?fps=10") as stream:
                assert stream.status_code == 200
                chunks = stream.iter_raw()
                while b"image/jpeg" not in next(chunks):
                    pass
                if change == "token revoked":
                    dashboard.auth.revoke_token(issued.info.id)
                elif change == "disabled":
                    dashboard.auth.update_user("viewer", active=False)
                else:  # safewatch users: this process's change counter does not move
                    AuthStore(storage.engine).update_user("viewer", active=False)
                deadline = time.monotonic() + 10.0
                for _chunk in chunks:
                    assert time.monotonic() < deadline, "the stream outlived its credential"
    finally:
        stop.set()
        pumping.join()
        storage.close()


def test_an_mjpeg_stream_goes_on_while_its_credential_check_hangs(tmp_path: Path) -> None:
    """The stream asked the gate again inline before each frame: while the database hung each
    re-check held the stream for the recheck timeout (10 s), so an open view got a frame per
    10 s. The check now runs beside the stream, which keeps sending."""
    stalled, release = threading.Event(), threading.Event()
    hung_at: list[float] = []

    class StallingStore(AuthStore):
        def token(self, token: str, **options: Any) -> Any:
            if stalled.is_set():
                hung_at.append(time.monotonic())
                release.wait(60)
            return super().token(token, **options)

    dashboard, storage = make_dashboard(tmp_path, socket_recheck_seconds=0.2)
    dashboard.auth = StallingStore(storage.engine)
    add_users(dashboard)
    issued = dashboard.auth.create_token("viewer", "wall screen")
    image = np.zeros((72, 128, 3), np.uint8)
    stop = threading.Event()

    def pump() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            dashboard.live.publish_frame(
                TrackedFrame("yard", n, 0.0, time.time(), 128, 72, ()), image
            )
            stop.wait(0.05)

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    try:
        with served_app(dashboard) as base, httpx.Client(base_url=base, timeout=30) as http:
            http.headers["Authorization"] = f"Bearer {issued.token}"
            with http.stream("GET", "/api/v1/cameras/yard/mjpeg?fps=20") as stream:
                assert stream.status_code == 200
                frames = 0  # sent after a re-check had hung for a second
                started = time.monotonic()
                for chunk in stream.iter_raw():
                    stalled.set()  # a re-check hangs soon (1 s principal cache, 0.2 s checks)
                    now = time.monotonic()
                    hung = hung_at[0] if hung_at else started
                    assert now < hung + 6.0, f"no frame for {now - hung:.0f} s"
                    if hung_at and now > hung + 1.0:
                        frames += chunk.count(b"image/jpeg")
                        if frames >= 10:
                            break
                assert frames >= 10
    finally:
        release.set()
        stop.set()
        pumping.join()
        storage.close()


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_open_socket_does_not_keep_its_session_from_idling_out(tmp_path: Path) -> None:
    """A socket's re-checks are not requests: they leave the session's last-seen time alone (at
    one every few seconds a browser left on the Live page kept its session for the whole 7-day
    lifetime), and a session that idles out meanwhile closes the socket like any other end."""
    dashboard, storage = make_dashboard(tmp_path, socket_recheck_seconds=0.2)
    clock = _Clock(time.time())
    asked: list[int] = []

    class CountingStore(AuthStore):
        def session(self, cookie: str, **options: Any) -> Any:
            asked.append(1)
            return super().session(cookie, **options)

    dashboard.auth = CountingStore(storage.engine, clock=clock, idle=3600.0)
    add_users(dashboard)

    def last_seen() -> float:
        with Session(storage.engine) as session:
            return float(session.scalars(select(SessionRow.last_seen_at)).one())

    try:
        with client_for(dashboard) as viewer:
            login(viewer, "viewer")
            with viewer.websocket_connect("/api/v1/ws/cameras/yard") as ws:
                assert ws.receive_json()["type"] == "geometry"
                seen = last_seen()
                clock.now += 600  # a request now would move it (the store writes once a minute)
                before = len(asked)
                wait_until(lambda: len(asked) >= before + 2)  # the socket asked again
                assert last_seen() == seen
                clock.now = seen + 3600 + 1  # an hour without a request
                code, reason = close_of(ws)
            assert code == 4401, (code, reason)
    finally:
        storage.close()


def test_socket_rechecks_stalled_by_the_database_leave_requests_their_threads(
    tmp_path: Path,
) -> None:
    """Many open sockets whose re-checks hang in the database (a PostgreSQL stall) must not take
    the worker threads requests share (anyio's 40: sync ``/healthz``, the Helm probe, stopped
    answering), and a socket closed meanwhile must finish (its handler waited for the stuck
    lookup). Served by uvicorn: one event loop, as in production."""
    stalled, release = threading.Event(), threading.Event()
    entered: list[str] = []

    class StallingStore(AuthStore):
        def token(self, token: str, **options: Any) -> Any:
            if stalled.is_set():
                entered.append(token)
                release.wait(60)
            return super().token(token, **options)

    dashboard, storage = make_dashboard(tmp_path, socket_recheck_seconds=0.2)
    dashboard.auth = StallingStore(storage.engine)
    add_users(dashboard)
    tokens = [dashboard.auth.create_token("viewer", f"screen {n}").token for n in range(45)]
    try:
        with served_app(dashboard) as base, contextlib.ExitStack() as stack:
            url = base.replace("http", "ws", 1) + "/api/v1/ws/incidents"
            sockets = {
                token: stack.enter_context(
                    connect(url, additional_headers={"Authorization": f"Bearer {token}"})
                )
                for token in tokens
            }
            wait_until(lambda: dashboard.live.subscriber_count == len(tokens))
            stalled.set()
            wait_until(lambda: len(entered) >= 4)
            time.sleep(3)  # every socket's re-check is due (1 s principal cache, 0.2 s checks)
            assert httpx.get(f"{base}/healthz", timeout=20).status_code == 200
            sockets[entered[0]].close()
            wait_until(lambda: dashboard.live.subscriber_count == len(tokens) - 1)
            release.set()
    finally:
        release.set()
        storage.close()


def test_login_is_throttled_after_repeated_failures(
    client: TestClient, dashboard: Dashboard
) -> None:
    for _ in range(5):
        wrong = client.post("/api/v1/auth/login", json={"username": "admin", "password": "nope"})
        assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_credentials")
    throttled = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    actions = [r.action for r in dashboard.auth.audit_records(limit=20)[0]]
    assert actions.count("login.failed") == 5
    assert "login.throttled" in actions


def test_a_throttled_client_writes_one_audit_line_per_window(
    client: TestClient, dashboard: Dashboard
) -> None:
    """A throttled client is refused without a password check, as fast as it asks; each refusal
    was an audit row, so one address could grow the audit log without bound."""
    for _ in range(5):
        client.post("/api/v1/auth/login", json={"username": "admin", "password": "nope"})
    for name in ("admin", "ADMIN", "admin", "Admin"):  # the limiter ignores the case
        refused = client.post("/api/v1/auth/login", json={"username": name, "password": "x"})
        assert refused.status_code == 429
    throttled = dashboard.auth.audit_records(action="login.throttled")[0]
    assert [(r.actor, r.client) for r in throttled] == [("admin", "testclient")]


def test_a_throttled_client_writes_one_audit_line_per_window_whatever_the_names(
    client: TestClient, dashboard: Dashboard
) -> None:
    """A line per (name, address) let a throttled address write a row per fresh name it tried."""
    for n in range(20):  # 20 failures over any names: the address waits out the window
        client.post("/api/v1/auth/login", json={"username": f"u{n}", "password": "nope"})
    for n in range(10):
        refused = client.post("/api/v1/auth/login", json={"username": f"x{n}", "password": "x"})
        assert refused.status_code == 429
    throttled = dashboard.auth.audit_records(action="login.throttled")[0]
    assert [(r.actor, r.client) for r in throttled] == [("x0", "testclient")]


def test_limiter_reports_an_addresss_first_refusal_once_per_window() -> None:
    now = [0.0]
    limiter = LoginLimiter(window=60, clock=lambda: now[0])
    assert limiter.first_refusal("1.2.3.4")
    assert not limiter.first_refusal("1.2.3.4")
    assert limiter.first_refusal("5.6.7.8")  # another address: its own line
    now[0] = 59
    assert not limiter.first_refusal("1.2.3.4")
    now[0] = 60
    assert limiter.first_refusal("1.2.3.4")  # a new window
    assert limiter.retry_after("ann", "1.2.3.4") == 0  # refusals are no failures


def test_refusals_never_evict_the_failures_that_throttle_an_address() -> None:
    """Refusals shared the failures' bounded table: a throttled address sent refused attempts
    with fresh names until its own failure counts were evicted, and was free again (299.8 s
    wait -> 0 after ~10,000 refusals)."""
    now = [0.0]
    limiter = LoginLimiter(clock=lambda: now[0], max_keys=100)
    for n in range(20):
        limiter.failed(f"u{n}", "10.0.0.9")
    wait = limiter.retry_after("admin", "10.0.0.9")
    assert wait > 290
    firsts = 0
    for n in range(1000):
        assert limiter.retry_after(f"x{n}", "10.0.0.9") > 0
        firsts += limiter.first_refusal("10.0.0.9")
    assert firsts == 1
    for n in range(1000):  # nor do other addresses' refusals
        assert limiter.first_refusal(f"10.1.{n // 256}.{n % 256}")
    assert limiter.retry_after("admin", "10.0.0.9") == pytest.approx(wait)


def test_an_ipv6_client_is_counted_by_its_64_prefix() -> None:
    """Each IPv6 address was counted alone, and one subscriber is routed a whole /64: 20
    failures from 20 of its addresses left the 21st free (0 s wait, 5 more guesses per address,
    2^64 addresses). Now the /64 waits out the window; IPv4 stays per address."""
    now = [0.0]
    limiter = LoginLimiter(clock=lambda: now[0])
    for n in range(20):
        limiter.failed(f"u{n}", f"2001:db8:1:2::{n + 1:x}")
    assert limiter.retry_after("admin", "2001:db8:1:2:ffff:ffff:ffff:ffff") > 290
    assert limiter.retry_after("admin", "2001:db8:1:3::1") == 0  # the next /64 is someone else
    assert limiter.first_refusal("2001:db8:1:2::aa")  # one audit line for the /64
    assert not limiter.first_refusal("2001:db8:1:2::bb")
    for n in range(20):
        limiter.failed(f"u{n}", "10.0.0.1")
    assert limiter.retry_after("admin", "10.0.0.1") > 290
    assert limiter.retry_after("admin", "::ffff:10.0.0.1") > 290  # IPv4 on a dual-stack socket
    assert limiter.retry_after("admin", "10.0.0.2") == 0


def test_limiter_window_slides() -> None:
    now = [0.0]
    limiter = LoginLimiter(per_pair=2, per_client=10, window=60, backoff=100, clock=lambda: now[0])
    limiter.failed("ann", "1.2.3.4")
    limiter.failed("ann", "1.2.3.4")
    assert limiter.retry_after("ann", "1.2.3.4") == pytest.approx(100)
    assert limiter.retry_after("ann", "5.6.7.8") == 0
    assert limiter.retry_after("bob", "1.2.3.4") == 0
    now[0] = 61
    assert limiter.retry_after("ann", "1.2.3.4") == 0


def test_session_cookie_and_security_headers(client: TestClient) -> None:
    response = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    cookie = response.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/"):
        assert attribute in cookie
    page = client.get("/incidents")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline script: the CSP forbids it
    assert (
        client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": _csrf(client)}).status_code
        == 204
    )
    assert client.get("/api/v1/incidents").status_code == 401


def _csrf(client: TestClient) -> str:
    token: str = client.get("/api/v1/auth/me").json()["csrf_token"]
    return token


def test_login_form_needs_its_token_and_redirects_locally(client: TestClient) -> None:
    page = client.get("/login?next=/incidents")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    forged = client.post(
        "/login",
        data={"username": "admin", "password": PASSWORD, "login_token": "other", "next": "/"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    accented = client.post(
        "/login",
        data={"username": "admin", "password": PASSWORD, "login_token": "é" + token[1:]},
        follow_redirects=False,
    )
    assert accented.status_code == 403
    assert "the login form expired; sign in again" in accented.text
    assert client.get("/api/v1/auth/me").status_code == 401
    good = client.post(
        "/login",
        data={
            "username": "admin",
            "password": PASSWORD,
            "login_token": token,
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/live"
    assert client.get("/api/v1/auth/me").json()["username"] == "admin"


def _login_token(page: Any) -> str:
    return str(page.text.split('name="login_token" value="')[1].split('"')[0])


def test_login_forms_of_two_tabs_and_an_expired_one_all_sign_in(client: TestClient) -> None:
    """Each GET /login replaced the login cookie, so the form of the tab opened first was
    refused; a form whose cookie had expired was answered with a JSON error body, a dead end
    for the person reading it. Now the cookie is kept, and a stale form gets a fresh one."""
    first = _login_token(client.get("/login?next=/incidents"))
    second = _login_token(client.get("/login?next=/rules"))
    assert first == second == client.cookies["safewatch_login"]
    form = {"username": "admin", "password": PASSWORD, "next": "/rules"}
    signed_in = client.post("/login", data={**form, "login_token": first}, follow_redirects=False)
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/rules")
    other_tab = client.post("/login", data={**form, "login_token": second}, follow_redirects=False)
    assert other_tab.status_code == 303
    client.cookies.clear()  # an hour later: the login cookie (and the session) are gone
    stale = client.post("/login", data={**form, "login_token": first}, follow_redirects=False)
    assert stale.status_code == 403 and stale.headers["content-type"].startswith("text/html")
    assert 'role="alert">the login form expired; sign in again<' in stale.text
    assert 'name="next" value="/rules"' in stale.text
    fresh = _login_token(stale)
    assert fresh != first and client.cookies["safewatch_login"] == fresh
    again = client.post("/login", data={**form, "login_token": fresh}, follow_redirects=False)
    assert (again.status_code, again.headers["location"]) == (303, "/rules")
    assert client.get("/api/v1/auth/me").json()["username"] == "admin"


def test_the_login_page_shows_no_alert_a_link_chose(client: TestClient) -> None:
    """``/login?error=...`` put the link author's text in the page's alert (the server never
    sends such a link itself): a phishing line in the site's own login form."""
    page = client.get("/login", params={"error": "Account locked: call +1 555 0100", "next": "/"})
    assert page.status_code == 200
    assert "555 0100" not in page.text and 'role="alert"' not in page.text


def test_passwords_are_stored_as_argon2_and_policy_enforced(dashboard: Dashboard) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from safewatch.storage import UserRow

    with Session(dashboard.storage.engine) as session:
        stored = session.scalar(select(UserRow.password_hash).where(UserRow.username == "admin"))
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(ValueError, match="10 characters"):
        dashboard.auth.add_user("shorty", "short", "viewer")
    assert dashboard.auth.authenticate("admin", "wrong password") is None
    assert dashboard.auth.authenticate("nobody", PASSWORD) is None


class _HangingTokens:
    """An auth store whose token lookups hang, the first one per token listed in ``stuck``
    (a half-open pooled connection), until ``release`` is set."""

    changes = 0

    def __init__(self) -> None:
        self.stuck: set[str] = set()
        self.revoked: set[str] = set()
        self.release = threading.Event()
        self.entered = threading.Event()  # a stuck lookup has begun hanging

    def token(self, value: str, *, touch: bool = True) -> Any:
        from types import SimpleNamespace

        if value in self.stuck:
            self.stuck.discard(value)
            self.entered.set()
            self.release.wait(30)
        if value in self.revoked:
            return None
        return SimpleNamespace(id=1, username="u", role="admin"), SimpleNamespace(expires_at=None)


def test_socket_rechecks_stuck_in_the_database_do_not_stop_later_ones() -> None:
    """Re-checks waited on the database with no limit: one lookup abandoned by its closing
    socket kept its credential from ever being looked up again (a revoked token's other open
    sockets stayed open), and four hung lookups of open sockets held every re-check thread, so
    no other credential was checked again. Each lookup now has ``recheck_timeout`` seconds."""
    import anyio
    from starlette.datastructures import Headers

    from safewatch.api.auth.gate import AuthGate
    from safewatch.errors import StorageError

    store = _HangingTokens()
    gate = AuthGate(None, store, "sw", cache_seconds=0)  # type: ignore[arg-type]
    gate.recheck_timeout = 0.5

    def bearer(token: str) -> Headers:
        return Headers({"authorization": f"Bearer {token}"})

    async def scenario() -> None:
        # A socket's lookup of t1 hangs and the socket closes; then t1 is revoked.
        store.stuck.add("t1")
        with anyio.move_on_after(0.1):
            await gate.recheck(bearer("t1"))
        store.revoked.add("t1")
        answers: list[object] = []
        with anyio.fail_after(10):
            while not answers or answers[-1] is None or isinstance(answers[-1], StorageError):
                await anyio.sleep(0.2)
                try:
                    answers.append(await gate.recheck(bearer("t1")))
                except StorageError as exc:
                    answers.append(exc)
        principal, _why = answers[-1]  # type: ignore[misc]
        assert principal is None  # found revoked
        # Four open sockets' lookups hang: a fifth credential is still checked.
        store.stuck.update({"a", "b", "c", "d"})
        async with anyio.create_task_group() as group:
            for token in ("a", "b", "c", "d"):
                group.start_soon(_swallow, gate.recheck(bearer(token)))
            await anyio.sleep(0.1)
            store.revoked.add("t5")
            with anyio.fail_after(10):
                found = await gate.recheck(bearer("t5"))
            assert found is not None and found[0] is None
        store.release.set()

    anyio.run(scenario)


def test_an_access_watch_asks_again_every_seconds_after_a_check_that_found_nothing() -> None:
    """After a re-check that timed out (the database hung longer than ``every``) the next was
    due at once, so a stream asking before each frame waited on the database back to back; after
    one that found another socket's lookup still running, it asked again at every call."""
    import anyio
    from starlette.datastructures import Headers

    from safewatch.api.auth.gate import AccessWatch, AuthGate

    store = _HangingTokens()
    gate = AuthGate(None, store, "sw", cache_seconds=0)  # type: ignore[arg-type]
    asked: list[str] = []
    recheck = gate.recheck

    async def counting(headers: Headers) -> Any:
        asked.append(headers["authorization"])
        return await recheck(headers)

    gate.recheck = counting  # type: ignore[method-assign]

    def bearer(token: str) -> Headers:
        return Headers({"authorization": f"Bearer {token}"})

    async def scenario() -> None:
        # Another socket abandoned its lookup of t, which still hangs: the watch is told to ask
        # again later.
        watch = AccessWatch(gate, bearer("t"), "viewer", every=2.0)
        store.changes += 1  # due now
        store.stuck.add("t")
        with anyio.move_on_after(0.1):
            await gate.recheck(bearer("t"))
        asked.clear()
        assert await watch.lost() is None
        assert await watch.lost() is None
        assert asked == ["Bearer t"]
        # u's lookup hangs past the recheck timeout (longer than every): a StorageError.
        gate.recheck_timeout = 3.0
        store.stuck.add("u")
        watch = AccessWatch(gate, bearer("u"), "viewer", every=2.0)
        store.changes += 1
        asked.clear()
        assert await watch.lost() is None
        assert await watch.lost() is None
        assert asked == ["Bearer u"]

    try:
        anyio.run(scenario)
    finally:
        store.release.set()


async def _swallow(call: Any) -> None:
    with contextlib.suppress(Exception):
        await call


def test_a_socket_that_saw_a_change_does_not_take_an_answer_read_before_it() -> None:
    """Sockets of one credential share a running re-check; one that started before a logout
    or a revocation read the old state, and a socket woken by that change took its answer
    (still allowed) and was not checked again for 5 s."""
    import anyio
    from starlette.datastructures import Headers

    from safewatch.api.auth.gate import AuthGate

    store = _HangingTokens()
    gate = AuthGate(None, store, "sw", cache_seconds=0)  # type: ignore[arg-type]
    gate.recheck_timeout = 30.0  # (not what this is about)
    bearer = Headers({"authorization": "Bearer t"})

    async def scenario() -> None:
        store.stuck.add("t")
        async with anyio.create_task_group() as group:
            group.start_soon(_swallow, gate.recheck(bearer))  # hangs, before the change
            # (waited for, not slept on: on a busy machine the second lookup must not be the
            # one that finds the connection dead)
            assert await anyio.to_thread.run_sync(store.entered.wait, 10)
            store.revoked.add("t")
            store.changes += 1
            with anyio.fail_after(5):
                found = await gate.recheck(bearer)
            assert found is not None and found[0] is None
            store.release.set()

    anyio.run(scenario)
