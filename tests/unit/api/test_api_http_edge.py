"""The HTTP edge on a real uvicorn server: login throttling per (account, address), proxy headers
believed only from configured proxies, and the request-body limit."""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_support import PASSWORD, add_users, make_app, write_site
from safewatch.api.auth.ratelimit import LoginLimiter
from safewatch.api.dashboard import Dashboard
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage
from safewatch.runtime.http_server import HttpServer

LOGIN = "/api/v1/auth/login"


@contextmanager
def served(folder: Path, http: dict[str, Any] | None = None) -> Iterator[tuple[str, Dashboard]]:
    """The app ``safewatch serve`` serves, on a real uvicorn server on a free loopback port."""
    site = load_site(write_site(folder, extra={"runtime": {"http": http or {}}}))
    storage = open_site_storage(site)
    dashboard = Dashboard.create(lambda: site, folder / "rules", storage)
    add_users(dashboard)
    server = HttpServer(make_app(dashboard), "127.0.0.1", 0)
    server.start()
    try:
        yield server.url, dashboard
    finally:
        server.stop()
        storage.close()


def _login(base: str, password: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    body = {"username": "admin", "password": password}
    return httpx.post(base + LOGIN, json=body, headers=headers, timeout=10)


def _audit_clients(dashboard: Dashboard, action: str) -> list[str | None]:
    return [r.client for r in dashboard.auth.audit_records(action=action, limit=50)[0]]


def test_failures_from_one_address_never_lock_out_the_right_password_from_another(
    tmp_path: Path,
) -> None:
    with served(tmp_path, {"trusted_proxies": ["127.0.0.1"]}) as (base, dashboard):
        for _ in range(5):
            assert _login(base, "wrong guess", "203.0.113.66").status_code == 401
        refused = _login(base, "wrong guess", "203.0.113.66")
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        # The real admin, at another address, is let in at once.
        assert _login(base, PASSWORD, "198.51.100.7").status_code == 200
        assert _audit_clients(dashboard, "login") == ["198.51.100.7"]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    # Default site: no trusted proxies, not even loopback.
    with served(tmp_path) as (base, dashboard):
        for n in range(5):
            assert _login(base, "wrong guess", f"10.9.8.{n}").status_code == 401
        # Rotating the header does not make a new address: this one has failed five times.
        assert _login(base, "wrong guess", "10.9.8.200").status_code == 429
        assert set(_audit_clients(dashboard, "login.failed")) == {"127.0.0.1"}


def test_forwarded_for_from_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    with served(tmp_path, {"trusted_proxies": ["127.0.0.0/8"]}) as (base, dashboard):
        # The rightmost address that is not a trusted proxy is the client.
        assert _login(base, "wrong guess", "192.0.2.1, 203.0.113.9").status_code == 401
        assert _audit_clients(dashboard, "login.failed") == ["203.0.113.9"]


def test_a_body_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with served(tmp_path, {"max_body_bytes": "64KiB"}) as (base, _dashboard):
        big = b'{"username": "admin", "password": "' + b"x" * 100_000 + b'"}'
        declared = httpx.post(
            base + LOGIN, content=big, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert declared.status_code == 413
        assert declared.json()["error"] == "too_large"
        assert "65536 bytes" in declared.json()["message"]
        # Bodies under the limit still work.
        assert _login(base, PASSWORD).status_code == 200


def _read_answer(conn: socket.socket, answer: bytes) -> bytes:
    """The whole answer that began with ``answer``: headers and body may come in several
    segments, so read until the headers end and the body their Content-Length announces is in
    (or the server closes the connection)."""
    conn.settimeout(10)
    try:
        while True:
            head, found, body = answer.partition(b"\r\n\r\n")
            if found:
                lengths = [
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if len(body) >= (lengths[0] if lengths else 0):
                    return answer
            more = conn.recv(65536)
            if not more:
                return answer
            answer += more
    except ConnectionResetError:  # closed with our unread request bytes still in its buffer
        return answer


def _send_until_answered(host: str, port: int, head: bytes, chunk: bytes, total: int) -> bytes:
    """Send ``head`` then ``chunk`` until ``total`` bytes went or the server answers."""
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(head)
        sent = 0
        pending = memoryview(b"")
        conn.settimeout(0.0)
        while sent < total or pending:
            try:
                answer = conn.recv(65536)
            except BlockingIOError:
                answer = b""
            if answer:
                return _read_answer(conn, answer)
            if not pending:
                pending = memoryview(chunk)
            try:
                done = conn.send(pending)
            except BlockingIOError:
                continue
            except OSError:  # reset after the server answered and closed
                break
            sent += done
            pending = pending[done:]
        return _read_answer(conn, b"")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_50_mb_login_body_streams_no_further_than_the_limit(
    tmp_path: Path, chunked: bool
) -> None:
    total = 50 * 1024 * 1024
    piece = 64 * 1024
    with served(tmp_path, {"max_body_bytes": "1MiB"}) as (base, _dashboard):
        host, port = base.removeprefix("http://").split(":")
        framing = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}".encode()
        head = (
            f"POST {LOGIN} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n".encode()
            + framing
            + b"\r\n\r\n"
        )
        chunk = (f"{piece:x}\r\n".encode() + b"x" * piece + b"\r\n") if chunked else b"x" * piece
        tracemalloc.start()
        try:
            answer = _send_until_answered(host, int(port), head, chunk, total)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too_large"' in answer
    # The server (in this process) never held the 50 MB: a few MB at most.
    assert peak < 10 * 1024 * 1024, f"peak traced memory {peak / 1e6:.1f} MB"


def test_limiter_backs_off_only_the_failing_pair() -> None:
    now = [0.0]
    limiter = LoginLimiter(
        per_pair=2, per_client=10, per_account=100, window=600, backoff=2, clock=lambda: now[0]
    )
    for _ in range(2):
        limiter.failed("Ann", "1.1.1.1")
    assert limiter.retry_after("ann", "1.1.1.1") == pytest.approx(2)
    assert limiter.retry_after("ann", "2.2.2.2") == 0
    now[0] = 2.0
    assert limiter.retry_after("ann", "1.1.1.1") == 0
    limiter.failed("ann", "1.1.1.1")
    assert limiter.retry_after("ann", "1.1.1.1") == pytest.approx(4)  # doubles
    limiter.succeeded("ann", "1.1.1.1")
    assert limiter.retry_after("ann", "1.1.1.1") == 0


def test_limiter_under_a_distributed_guess_gives_failing_addresses_no_free_tries() -> None:
    now = [0.0]
    limiter = LoginLimiter(
        per_pair=5, per_client=10, per_account=3, window=600, clock=lambda: now[0]
    )
    for n in range(3):
        limiter.failed("admin", f"10.0.0.{n}")
    limiter.failed("admin", "10.0.0.99")
    assert limiter.retry_after("admin", "10.0.0.99") > 0  # one failure is enough now
    assert limiter.retry_after("admin", "192.0.2.1") == 0  # a clean address is never refused


def test_limiter_stops_an_address_spraying_many_names() -> None:
    now = [0.0]
    limiter = LoginLimiter(per_pair=5, per_client=3, window=60, clock=lambda: now[0])
    for name in ("a", "b", "c"):
        limiter.failed(name, "10.0.0.1")
    assert limiter.retry_after("d", "10.0.0.1") == pytest.approx(60)
    assert limiter.retry_after("d", "10.0.0.2") == 0
    now[0] = 61
    assert limiter.retry_after("d", "10.0.0.1") == 0
