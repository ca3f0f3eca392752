"""Where the live video one cluster node relays from another is served, and what the analyzer
checks before it serves it (:mod:`safewatch.api.cluster_video`): never on a dashboard's port
(roles ``api`` and ``all`` build their dashboard app the same way), and on the analyzer's own
listener only for a grant signed for it, used once, for a camera it owns now; a raw stream is
audited there too, under the grant's user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api_support import add_users, login, make_app, write_site
from assets import asset
from safewatch.api.cluster_video import (
    GRANT_HEADER,
    INTERNAL_PREFIX,
    install_cluster_video,
    internal_video_app,
    sign_grant,
)
from safewatch.api.dashboard import Dashboard
from safewatch.api.live import LiveHub
from safewatch.config.loader import LoadedSite, load_site
from safewatch.incidents.site_storage import SiteStorage, open_site_storage

CLIP = "video/construction_cctv_640x352_24s.mp4"
SECRET = "a-cluster-secret-of-32-characters"
URL = f"{INTERNAL_PREFIX}yard/video"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[LoadedSite, SiteStorage]]:
    loaded = load_site(
        write_site(
            tmp_path,
            source=str(asset(CLIP)),
            extra={"cluster": {"secret": SECRET}},
        )
    )
    storage = open_site_storage(loaded)
    yield loaded, storage
    storage.close()


def refusal(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    """The close code and reason of a socket closed before any video (fails on video)."""
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(URL, headers=headers) as ws,
    ):
        data = ws.receive_bytes()
        pytest.fail(f"video sent to a refused client: {len(data)} bytes")
    return closed.value.code, str(closed.value.reason)


def test_a_dashboard_port_never_serves_the_internal_video(
    site: tuple[LoadedSite, SiteStorage], tmp_path: Path
) -> None:
    """The dashboard app of role ``api`` and ``all`` (the relay installed), even with a valid
    grant, logged out or logged in as an admin: no route, no video."""
    loaded, storage = site
    dashboard = Dashboard.create(lambda: loaded, tmp_path / "rules", storage, live=LiveHub())
    add_users(dashboard)
    app = make_app(dashboard)
    install_cluster_video(app, storage.engine, lambda: loaded)
    assert not any(INTERNAL_PREFIX in getattr(r, "path", "") for r in app.router.routes)
    with TestClient(app) as client:
        for logged_in in (False, True):
            if logged_in:
                login(client, "admin")
            for analyzer in ("api-1", "n1"):
                grant = sign_grant(SECRET, analyzer, "yard", "raw", "admin")
                code, _ = refusal(client, {GRANT_HEADER: grant})  # (no video: refusal())
                # logged out: the session gate (4401); logged in: no such route (1000)
                assert code == (1000 if logged_in else 4401), (logged_in, analyzer, code)
    assert dashboard.auth.audit_records(action="live.raw_view")[1] == 0


def internal_app(loaded: LoadedSite, storage: SiteStorage, owned: set[str]) -> FastAPI:
    return internal_video_app(
        LiveHub(),
        lambda: loaded,
        SECRET,
        analyzer_id="a1",
        owns=lambda camera: camera in owned,
        engine=storage.engine,
    )


def test_the_analyzer_serves_only_its_own_grants_once_for_cameras_it_owns(
    site: tuple[LoadedSite, SiteStorage],
) -> None:
    loaded, storage = site
    owned: set[str] = set()
    with TestClient(internal_app(loaded, storage, owned)) as client:
        # a camera whose lease another analyzer holds now
        code, reason = refusal(
            client, {GRANT_HEADER: sign_grant(SECRET, "a1", "yard", "raw", "al")}
        )
        assert (code, reason) == (4409, "analyzer a1 does not own camera 'yard' now")
        owned.add("yard")
        # a grant the relay signed for another analyzer
        code, reason = refusal(
            client, {GRANT_HEADER: sign_grant(SECRET, "a2", "yard", "raw", "al")}
        )
        assert code == 4401 and reason == "grant is for analyzer 'a2', not 'a1'"
        # a valid raw grant: video, audited here under the grant's user
        grant = {GRANT_HEADER: sign_grant(SECRET, "a1", "yard", "raw", "alice")}
        with client.websocket_connect(URL, headers=grant) as ws:
            assert len(ws.receive_bytes()) > 100  # the init
        # the same grant again: a replay
        code, reason = refusal(client, grant)
        assert code == 4401 and reason.startswith("grant already used")
        # a blurred grant is not audited
        blurred = {GRANT_HEADER: sign_grant(SECRET, "a1", "yard", "blurred", "bob")}
        with client.websocket_connect(URL, headers=blurred) as ws:
            assert len(ws.receive_bytes()) > 100
    from safewatch.api.auth.store import AuthStore

    records, total = AuthStore(storage.engine).audit_records(action="live.raw_view")
    assert total == 1
    assert (records[0].actor, records[0].subject) == ("alice", "yard")
    assert records[0].detail == {"mode": "raw", "served_by": "a1"}
