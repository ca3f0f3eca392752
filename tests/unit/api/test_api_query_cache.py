"""The incident list and statistics answers: cached until an incident changes (issue 13)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from api_support import add_users, client_for, incident, login, make_dashboard
from safewatch.api.query_cache import QueryCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_reused_until_the_version_changes() -> None:
    version = [0]
    calls: list[int] = []

    def compute() -> bytes:
        calls.append(version[0])
        return f"v{version[0]}".encode()

    cache = QueryCache(60.0, lambda: version[0])
    assert cache.get("k", compute) == b"v0"
    assert cache.get("k", compute) == b"v0"
    assert cache.peek("k") == b"v0"
    assert calls == [0]
    version[0] = 1
    assert cache.peek("k") is None
    assert cache.get("k", compute) == b"v1"
    assert calls == [0, 1]


def test_an_answer_expires_after_ttl_even_without_a_change() -> None:
    clock = Clock()
    computed = iter([b"first", b"second"])
    cache = QueryCache(2.0, lambda: 0, clock=clock)
    assert cache.get("k", lambda: next(computed)) == b"first"
    clock.now += 1.9
    assert cache.get("k", lambda: next(computed)) == b"first"
    clock.now += 0.2
    assert cache.peek("k") is None
    assert cache.get("k", lambda: next(computed)) == b"second"


def test_ttl_zero_turns_the_cache_off() -> None:
    answers = iter([b"a", b"b"])
    cache = QueryCache(0.0, lambda: 0)
    assert cache.get("k", lambda: next(answers)) == b"a"
    assert cache.get("k", lambda: next(answers)) == b"b"
    assert cache.peek("k") is None


def test_least_recently_used_answers_are_dropped() -> None:
    cache = QueryCache(60.0, lambda: 0, max_entries=2)
    for key in ("a", "b", "c"):
        cache.get(key, key.encode)
    assert cache.peek("a") is None
    assert cache.peek("b") == b"b"
    assert cache.peek("c") == b"c"


def test_concurrent_misses_compute_once() -> None:
    release = threading.Event()
    started = threading.Event()
    calls = 0

    def slow() -> bytes:
        nonlocal calls
        calls += 1
        started.set()
        assert release.wait(30)
        return b"answer"

    cache = QueryCache(60.0, lambda: 0)
    results: list[bytes] = []
    leader = threading.Thread(target=lambda: results.append(cache.get("k", slow)))
    leader.start()
    assert started.wait(30)
    followers = [
        threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(5)
    ]
    for thread in followers:
        thread.start()
    release.set()
    for thread in (leader, *followers):
        thread.join(30)
    assert results == [b"answer"] * 6
    assert calls == 1


def test_a_failed_computation_is_not_cached() -> None:
    cache = QueryCache(60.0, lambda: 0)

    def broken() -> bytes:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        cache.get("k", broken)
    assert cache.get("k", lambda: b"fine") == b"fine"


def test_the_list_and_stats_follow_incident_changes(tmp_path: Path) -> None:
    """An incident stored behind the hub's back (another process) is seen once the hub
    publishes a change (or the answer ages out); a published change is seen at once."""
    dashboard, storage = make_dashboard(tmp_path, query_cache_seconds=3600)
    add_users(dashboard)
    storage.repository.upsert(incident(1))
    with client_for(dashboard) as client:
        login(client, "viewer")
        first = client.get("/api/v1/incidents").json()
        counts = client.get("/api/v1/stats", params={"by": "camera"}).json()
        assert first["total"] == 1 and counts["total"] == 1
        second = incident(2)
        storage.repository.upsert(second)
        assert client.get("/api/v1/incidents").json() == first  # cached: no change published
        dashboard.live.publish_incident("opened", second)
        assert client.get("/api/v1/incidents").json()["total"] == 2
        assert client.get("/api/v1/stats", params={"by": "camera"}).json()["total"] == 2
        # another query string is another answer
        page = client.get("/api/v1/incidents", params={"limit": 1}).json()
        assert page["limit"] == 1 and len(page["items"]) == 1
    storage.close()


def test_with_the_cache_off_every_request_reads_the_database(tmp_path: Path) -> None:
    dashboard, storage = make_dashboard(tmp_path, query_cache_seconds=0)
    add_users(dashboard)
    storage.repository.upsert(incident(1))
    with client_for(dashboard) as client:
        login(client, "viewer")
        assert client.get("/api/v1/incidents").json()["total"] == 1
        storage.repository.upsert(incident(2))
        assert client.get("/api/v1/incidents").json()["total"] == 2
    storage.close()
