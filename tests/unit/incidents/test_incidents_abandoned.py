"""Incidents left open by a dead process are closed at start-up, once, with the reason chained."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from test_incident_manager import CAM, T0, episode, run

from incident_factories import make_incident
from safewatch.config.site import SiteConfig
from safewatch.domain import Phase
from safewatch.incidents import EvidenceStore, IncidentManager, verify_chain
from safewatch.incidents.abandoned import close_abandoned_incidents, reason_for
from safewatch.storage import IncidentRepository
from safewatch.storage.incident_repository import StoredChange

SITE = {
    "version": 1,
    "models": {"coco": {"path": "m.onnx", "format": "yolox"}},
    "cameras": {
        CAM: {"source": "rtsp://cam/1", "models": ["coco"]},
        "dock": {"source": "rtsp://cam/2", "models": ["coco"], "enabled": False},
    },
}


def test_a_dead_managers_incident_is_closed_at_its_last_known_moment(
    engine: Engine, tmp_path: Path
) -> None:
    repo = IncidentRepository(engine)
    store = EvidenceStore(tmp_path / "evidence")
    manager = IncidentManager(repo, store, hold_interval=2.0)
    events = [e for e in episode() if e.phase is not Phase.ENDED and e.at <= T0 + 10.1]
    opened = run(manager, events)[0].incident  # ... and the process dies here
    assert repo.get(opened.id).ended_at is None

    changes: list[StoredChange] = []
    repo.add_change_hook(lambda _session, change: changes.append(change))
    site = SiteConfig.model_validate(SITE)
    closed = close_abandoned_incidents(repo, site)

    assert [i.id for i in closed] == [opened.id]
    # ONGOING every 0.2 s from +3.2 s; a note every 2 s: the last at +9.2 s (of +10 s seen).
    assert repo.get(opened.id).ended_at == pytest.approx(T0 + 9.2)
    assert [c.kind for c in changes] == ["incident.closed"]  # what the outbox hook sees
    entry = repo.timeline(opened.id)[-1]
    assert entry.kind == "incident.closed"
    assert entry.detail["abandoned"] is True
    assert entry.detail["reason"] == reason_for(CAM, site)
    assert close_abandoned_incidents(repo, site) == []  # a second start closes nothing
    assert verify_chain(engine, store.backend).ok  # a BlobStore, as verify gives it


def test_never_marked_incident_ends_at_its_start(engine: Engine) -> None:
    repo = IncidentRepository(engine)
    incident = make_incident(4, camera=CAM, started_at=T0)
    repo.upsert(incident)  # a row written without any note of holding
    close_abandoned_incidents(repo, SiteConfig.model_validate(SITE))
    assert repo.get(incident.id).duration == 0.0


def test_an_incident_killed_right_after_opening_ends_at_its_opening_event(
    engine: Engine, tmp_path: Path
) -> None:
    """The event that opens an incident comes min_duration after its start: a process killed
    before its first hold note (2 s later) still held it that long, not 0 s."""
    repo = IncidentRepository(engine)
    manager = IncidentManager(repo, EvidenceStore(tmp_path / "evidence"), hold_interval=2.0)
    opened = run(manager, episode()[:1])[0].incident  # STARTED at +3 s ... and the process dies
    close_abandoned_incidents(repo, SiteConfig.model_validate(SITE))
    closed = repo.get(opened.id)
    assert closed.ended_at == pytest.approx(T0 + 3.0)
    assert closed.duration == pytest.approx(3.0)


def test_reasons_name_a_removed_or_disabled_camera() -> None:
    site = SiteConfig.model_validate(SITE)
    assert "removed from the site file" in reason_for("gone", site)
    assert "disabled" in reason_for("dock", site)
    assert "process died" in reason_for(CAM, site)
