"""/readyz's database check has a deadline: a stalled database is "not ready", not a hang."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine, event

from safewatch.api.health import ComponentHealth
from safewatch.config.runtime import WatchdogConfig
from safewatch.runtime import status as status_module
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.metrics import RuntimeMetrics
from safewatch.runtime.status import RuntimeStatus

OK = ComponentHealth(ok=True, message="ok")


def test_a_database_that_does_not_answer_is_not_ready_after_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``SELECT 1`` ran on the asking thread with no bound: a PostgreSQL host behind a
    network stall held readiness (and, in the API process, everything behind it) for as long
    as the operating system took to give up on the connection."""
    monkeypatch.setattr(status_module, "DB_CHECK_TIMEOUT", 0.5)
    release = threading.Event()
    connects: list[int] = []
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")

    @event.listens_for(engine, "connect")
    def stalled(_dbapi: Any, _record: Any) -> None:  # a new connection hangs until released
        connects.append(1)
        assert release.wait(60.0)

    status = RuntimeStatus(
        FrameMailbox(), RuntimeMetrics(), "thread", WatchdogConfig(), threading.Event()
    )
    status.parts.storage = SimpleNamespace(engine=engine)  # type: ignore[assignment]
    monkeypatch.setattr(status, "_thread_health", lambda _worker, _now: OK)
    try:
        ready = status.readiness()
        assert not release.is_set()  # the check still hangs ...
        assert ready.status == "not_ready"  # ... and readiness answered anyway
        assert not ready.database.ok and "no answer to SELECT 1" in ready.database.message
        again = status.readiness()  # no second check beside the hanging one
        assert not again.database.ok and len(connects) == 1
        release.set()
        check = status._db_check
        assert check is None or check.done.wait(30.0)
        status._db_checked = 0.0  # the next question checks again
        recovered = status.readiness()
        assert recovered.database.ok, recovered.database.message
        assert recovered.status == "ready"
    finally:
        release.set()
        engine.dispose()
