"""A login flood checks at most ``password_checks`` passwords at once (issue 13)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_support import make_app, make_dashboard


@pytest.mark.parametrize("bound", [1, 2])
def test_concurrent_logins_are_checked_at_most_bound_at_once(tmp_path: Path, bound: int) -> None:
    dashboard, storage = make_dashboard(tmp_path, password_checks=bound, login_per_client=1000)
    turn = threading.Condition()
    running = 0
    most = 0

    def slow_check(username: str, password: str) -> None:
        """Hold the slot until ``bound`` checks run together (8 is a multiple of each bound),
        so the overlap does not depend on timing; 10 s is only a safety net."""
        nonlocal running, most
        with turn:
            running += 1
            most = max(most, running)
            turn.notify_all()
            turn.wait_for(lambda: running >= bound, timeout=10)
        with turn:
            running -= 1

    dashboard.auth.authenticate = slow_check  # type: ignore[method-assign]
    app = make_app(dashboard)

    async def flood() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def one(i: int) -> int:
                body: dict[str, Any] = {"username": f"nobody{i}", "password": "wrong"}
                return (await client.post("/api/v1/auth/login", json=body)).status_code

            return list(await asyncio.gather(*(one(i) for i in range(8))))

    statuses = asyncio.run(flood())
    assert statuses == [401] * 8
    assert most == bound
    storage.close()
