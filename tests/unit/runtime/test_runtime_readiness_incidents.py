"""/readyz and /metrics on a full disk: the database refuses incident writes while ``SELECT 1``
still answers (only the incident manager knows that incidents, and the alerts queued with them,
wait in memory), and evidence that cannot be stored (only the recorder knows)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from evidence_frames import coded_frame, episode_events
from safewatch.api.health import ComponentHealth
from safewatch.config.runtime import WatchdogConfig
from safewatch.config.site import EvidenceConfig
from safewatch.errors import StorageError
from safewatch.incidents import EvidenceRecorder, EvidenceStore, IncidentManager
from safewatch.runtime import status as status_module
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.metrics import RuntimeMetrics
from safewatch.runtime.status import RuntimeStatus
from safewatch.storage import IncidentRepository, create_engine_for

OK = ComponentHealth(ok=True, message="ok")
FPS = 5.0


def test_incidents_the_database_refused_degrade_readiness_and_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a full disk refused every incident write while ``/readyz`` said ready (its
    ``SELECT 1`` answers) and only ``safewatch_runtime_errors_total{stage="storage"}`` moved,
    which no alert used: nothing was stored and no alert was sent, and nobody was told."""
    engine = create_engine_for("sqlite:///db/safewatch.db", tmp_path)
    full = threading.Event()

    @sa_event.listens_for(engine, "before_cursor_execute")
    def disk_full(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # SQLite's own error on a full disk, on every write; reads (SELECT 1) still answer
        if full.is_set() and not statement.lstrip().upper().startswith(("SELECT", "PRAGMA")):
            raise sqlite3.OperationalError("database or disk is full")

    wall = [0.0]
    manager = IncidentManager(
        IncidentRepository(engine), EvidenceStore(tmp_path / "evidence"), clock=lambda: wall[0]
    )
    metrics = RuntimeMetrics()
    status = RuntimeStatus(FrameMailbox(), metrics, "thread", WatchdogConfig(), threading.Event())
    monkeypatch.setattr(status, "_database_health", lambda: OK)  # SELECT 1 answers on a full disk
    monkeypatch.setattr(status, "_thread_health", lambda _worker, _now: OK)
    status.parts.incidents = manager

    def unsaved() -> float | None:
        status.metrics()  # a scrape
        return metrics.registry.get_sample_value("safewatch_incidents_unsaved")

    def frames(first: int, last: int) -> None:
        for index in range(first, last):
            wall[0] = index / FPS  # the process clock runs with the frames
            frame, tracked = coded_frame(index, FPS)
            events = episode_events(index, FPS, started=0, fired=5, ended=200)
            manager.handle(events, tracked, frame)

    try:
        frames(0, 3)
        ready = status.readiness()
        assert (ready.status, unsaved()) == ("ready", 0)
        assert ready.incidents is not None and ready.incidents.ok
        full.set()
        frames(3, 20)  # the incident opens at frame 5: refused, kept in memory
        ready = status.readiness()
        assert ready.status == "degraded"
        assert ready.incidents is not None and not ready.incidents.ok
        assert "1 incident(s) held in memory" in ready.incidents.message
        assert "database or disk is full" in ready.incidents.message
        assert unsaved() == 1
        full.clear()
        frames(20, 40)  # room again: the opening is stored on the next try
        ready = status.readiness()
        assert (ready.status, unsaved()) == ("ready", 0)
        assert ready.incidents is not None and ready.incidents.ok
    finally:
        engine.dispose()


def test_evidence_not_stored_is_counted_and_degrades_readiness_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full evidence disk: the incident is stored, its still is not. Before, only the log and
    the recorder's own ``stats`` (read by nothing) knew; ``/readyz`` said ready and no series
    existed, while docs/evidence.md said such failures were "counted"."""

    class FullDisk(EvidenceStore):
        def write_still(self, incident_id, image, *, camera_id, at):  # type: ignore[no-untyped-def]
            raise StorageError(f"cannot write evidence {incident_id}: No space left on device")

    engine = create_engine_for("sqlite:///db/safewatch.db", tmp_path)
    repo = IncidentRepository(engine)
    store = FullDisk(tmp_path / "evidence")
    recorder = EvidenceRecorder(store, repo, EvidenceConfig(clips=False), on_full="wait")
    manager = IncidentManager(repo, store, recorder=recorder)
    metrics = RuntimeMetrics()
    status = RuntimeStatus(FrameMailbox(), metrics, "thread", WatchdogConfig(), threading.Event())
    monkeypatch.setattr(status, "_database_health", lambda: OK)
    monkeypatch.setattr(status, "_thread_health", lambda _worker, _now: OK)
    status.parts.recorder = recorder
    metrics.watch(status.snapshot)

    def failures(kind: str) -> float | None:
        sample = metrics.registry.get_sample_value
        return sample("safewatch_evidence_failures_total", {"kind": kind})

    try:
        ready = status.readiness()
        assert ready.status == "ready" and ready.evidence is not None and ready.evidence.ok
        # every series exists from the start, so increase() sees the first failure
        assert (failures("still"), failures("clip"), failures("original")) == (0, 0, 0)
        assert metrics.registry.get_sample_value("safewatch_evidence_frames_dropped_total") == 0
        for index in range(10):
            frame, tracked = coded_frame(index, FPS)
            manager.handle(episode_events(index, FPS, started=0, fired=5, ended=99), tracked, frame)
        assert recorder.flush(60.0)
        assert [i.snapshot for i in repo.list()] == [None]  # stored, without its still
        assert failures("still") == 1
        ready = status.readiness()
        assert ready.status == "degraded"
        assert ready.evidence is not None and not ready.evidence.ok
        assert "1 still(s)" in ready.evidence.message
        monkeypatch.setattr(status_module, "EVIDENCE_RECENT", 0.0)  # the window has passed
        ready = status.readiness()
        assert ready.status == "ready" and ready.evidence is not None and ready.evidence.ok
        assert failures("still") == 1  # the count stays
    finally:
        recorder.close(60.0)
        engine.dispose()
