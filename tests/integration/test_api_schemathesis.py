"""Property-based fuzzing of the whole API from its OpenAPI document (schemathesis): every
operation, with generated valid and invalid parameters and bodies, as an admin (the widest rights),
against a real uvicorn server on a fresh SQLite site. The check: no answer is a server error (5xx);
every refusal is a 4xx with the standard error body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api_support import add_users, incident, make_app, make_dashboard

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from safewatch.runtime.http_server import HttpServer  # noqa: E402

pytestmark = pytest.mark.slow

STATS: dict[str, int] = {"calls": 0, "4xx": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    dashboard, storage = make_dashboard(tmp_path_factory.mktemp("fuzz"))
    add_users(dashboard)
    for n in range(5):
        storage.repository.upsert(incident(n))
    token = dashboard.auth.create_token("admin", "fuzz").token
    http = HttpServer(make_app(dashboard), "127.0.0.1", 0)
    http.start()
    headers = {"Authorization": f"Bearer {token}"}
    spec = httpx.get(f"{http.url}/openapi.json", headers=headers, timeout=10).json()
    yield {"url": http.url, "headers": headers, "spec": spec}
    http.stop()
    storage.close()


def test_no_operation_answers_with_a_server_error(server: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(server["spec"])
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        strategy = operation.as_strategy()

        @settings(
            max_examples=8,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(base_url=server["url"], headers=server["headers"], timeout=20)
            STATS["calls"] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            elif response.status_code >= 400 and "application/json" in str(
                response.headers.get("content-type", "")
            ):
                STATS["4xx"] += 1
                body = response.json()
                assert set(body) == {"error", "message", "details"}, body
            case.validate_response(response, checks=[not_a_server_error])

        from hypothesis import given

        given(strategy)(run)()
    assert operations > 40
    assert failures == []
    print(
        f"schemathesis: {operations} operations, {STATS['calls']} calls, {STATS['4xx']} 4xx, 0 5xx"
    )
