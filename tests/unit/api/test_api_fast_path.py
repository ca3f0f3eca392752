"""The cheap path of a polled answer (issue 13): principals cached for a second by the
authentication gate, cached list/statistics answers sent without routing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from api_support import add_users, client_for, incident, login, make_dashboard
from safewatch.api.auth.gate import PrincipalCache
from safewatch.api.auth.principal import Principal
from safewatch.api.auth.store import AuthStore
from safewatch.config.loader import load_site


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


VIEWER = Principal(1, "viewer", "viewer", "token")


def test_a_cached_principal_holds_for_the_ttl_and_until_the_store_changes() -> None:
    clock = Clock()
    changes = [0]
    cache = PrincipalCache(1.0, lambda: changes[0], clock=clock)
    key = PrincipalCache.key("token", "sw_secret")
    assert key != PrincipalCache.key("session", "sw_secret")
    assert cache.get(key) is None
    cache.put(key, VIEWER, 0, None)
    clock.now += 0.9
    assert cache.get(key) == VIEWER
    clock.now += 0.2
    assert cache.get(key) is None  # older than the TTL: asked again

    cache.put(key, VIEWER, 0, None)
    changes[0] = 1  # a token revoked, a user changed, a logout: every entry goes at once
    assert cache.get(key) is None


def test_a_lookup_that_raced_a_change_is_not_believed() -> None:
    """The counter is read before the lookup: a revocation committed during it wins."""
    changes = [0]
    cache = PrincipalCache(60.0, lambda: changes[0], clock=Clock())
    key = PrincipalCache.key("token", "t")
    before = changes[0]
    changes[0] += 1  # committed while the lookup ran
    cache.put(key, VIEWER, before, None)
    assert cache.get(key) is None


def test_a_credential_expiring_within_the_ttl_is_not_believed_past_its_expiry() -> None:
    clock = Clock()
    cache = PrincipalCache(60.0, lambda: 0, clock=clock)
    key = PrincipalCache.key("session", "c")
    cache.put(key, VIEWER, 0, expires_at=clock.now + 0.5)
    assert cache.get(key) == VIEWER
    clock.now += 0.5
    assert cache.get(key) is None


def test_ttl_zero_turns_the_principal_cache_off() -> None:
    cache = PrincipalCache(0.0, lambda: 0, clock=Clock())
    key = PrincipalCache.key("token", "t")
    cache.put(key, VIEWER, 0, None)
    assert cache.get(key) is None


def test_polling_with_a_token_asks_the_database_once_and_changes_still_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    storage.repository.upsert(incident(1))
    issued = dashboard.auth.create_token("viewer", "wall screen")
    headers = {"Authorization": f"Bearer {issued.token}"}
    lookups: list[str] = []
    real = dashboard.auth.token

    def counted(token: str) -> object:
        lookups.append(token)
        return real(token)

    monkeypatch.setattr(dashboard.auth, "token", counted)
    with client_for(dashboard) as client:
        for _ in range(5):
            assert client.get("/api/v1/incidents", headers=headers).status_code == 200
        assert len(lookups) == 1
        # deactivated by another process (the CLI): no counter here moves; seen within the TTL
        AuthStore(storage.engine).update_user("viewer", active=False)
        time.sleep(1.2)
        assert client.get("/api/v1/incidents", headers=headers).status_code == 401
        # deactivated through this process: seen at the very next request
        dashboard.auth.update_user("viewer", active=True)
        assert client.get("/api/v1/incidents", headers=headers).status_code == 200
        dashboard.auth.update_user("viewer", active=False)
        assert client.get("/api/v1/incidents", headers=headers).status_code == 401
    storage.close()


def test_a_logout_ends_the_cached_session_at_once(tmp_path: Path) -> None:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    with client_for(dashboard) as client:
        csrf = login(client, "viewer")
        cookies = dict(client.cookies)
        assert client.get("/api/v1/incidents").status_code == 200
        out = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code in (200, 204), out.text
        client.cookies.update(cookies)  # an attacker replaying the old cookie
        assert client.get("/api/v1/incidents").status_code == 401
    storage.close()


def test_cached_answers_skip_routing_but_not_the_gate_or_the_headers(tmp_path: Path) -> None:
    dashboard, storage = make_dashboard(tmp_path, query_cache_seconds=3600)
    add_users(dashboard)
    storage.repository.upsert(incident(1))
    with client_for(dashboard) as client:
        login(client, "viewer")
        first = client.get("/api/v1/incidents", params={"limit": 5})
        hits = dashboard.queries.hits
        again = client.get("/api/v1/incidents", params={"limit": 5})
        assert again.content == first.content
        assert dashboard.queries.hits == hits + 1
        assert again.headers["content-type"] == "application/json"
        assert again.headers["x-content-type-options"] == "nosniff"
        # the same query string with a bad value was never cached: it is still validated
        assert client.get("/api/v1/incidents", params={"limit": 0}).status_code == 422
        client.cookies.clear()
        refused = client.get("/api/v1/incidents", params={"limit": 5})
        assert refused.status_code == 401
    storage.close()


def test_the_statistics_follow_a_new_time_zone(tmp_path: Path) -> None:
    """The statistics count hours in the site's zone: a site reload that changes it is seen at
    once, though the answers are keyed by the query string only."""
    dashboard, storage = make_dashboard(tmp_path, query_cache_seconds=3600)
    add_users(dashboard)
    storage.repository.upsert(incident(1))
    path = tmp_path / "site.yaml"
    current = [load_site(path)]
    dashboard.site = lambda: current[0]
    with client_for(dashboard) as client:
        login(client, "viewer")
        before = client.get("/api/v1/stats", params={"by": "hour"}).json()
        assert before["timezone"] == "Europe/Berlin"
        path.write_text(path.read_text().replace("Europe/Berlin", "America/New_York"))
        current[0] = load_site(path)
        answer = client.get("/api/v1/stats", params={"by": "hour"}).json()
        assert answer["timezone"] == "America/New_York"
    storage.close()
