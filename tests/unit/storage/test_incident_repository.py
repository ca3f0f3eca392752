"""Incident repository on SQLite and PostgreSQL: idempotent upsert, merge rules, filters, paging."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import incident_factories
from safewatch.domain import IncidentStatus
from safewatch.errors import NotFound, StorageError
from safewatch.storage import IncidentRepository, IncidentRow, create_engine_for

T0 = 1_700_000_000.0


make_incident = partial(
    incident_factories.make_incident, track=4, rule="hardhat-required", started_at=T0
)
"""The shared incident factory with this module's rule, track and start."""


@pytest.fixture
def repo(db_engine: Engine) -> IncidentRepository:
    """A repository on a fresh database, once on SQLite and once on PostgreSQL."""
    return IncidentRepository(db_engine, clock=lambda: 42.0)


def row_count(repo: IncidentRepository) -> int:
    with Session(repo._engine) as session:
        return int(session.scalar(select(func.count()).select_from(IncidentRow)) or 0)


def test_round_trip(repo: IncidentRepository) -> None:
    incident = make_incident(ended_at=T0 + 3.5, snapshot="cam-1/2023-11-14/x.jpg")
    repo.upsert(incident)
    assert repo.get(incident.id) == incident
    assert repo.get(incident.id).duration == pytest.approx(3.5)


def test_upsert_same_incident_twice_keeps_one_row(repo: IncidentRepository) -> None:
    incident = make_incident()
    repo.upsert(incident)
    repo.upsert(incident)
    assert row_count(repo) == 1
    assert repo.get(incident.id) == incident


def test_upsert_updates_end_peak_and_snapshot(repo: IncidentRepository) -> None:
    opened = make_incident(peak=0.5)
    repo.upsert(opened)
    closed = dataclasses.replace(opened, ended_at=T0 + 10, peak_confidence=0.9, snapshot="a.jpg")
    repo.upsert(closed)
    stored = repo.get(opened.id)
    assert stored.ended_at == T0 + 10
    assert stored.peak_confidence == 0.9
    assert stored.snapshot == "a.jpg"
    assert row_count(repo) == 1


def test_late_older_copy_does_not_erase_progress(repo: IncidentRepository) -> None:
    opened = make_incident(peak=0.5)
    closed = dataclasses.replace(opened, ended_at=T0 + 10, peak_confidence=0.9, snapshot="a.jpg")
    repo.upsert(closed)
    repo.upsert(opened)  # re-delivered STARTED copy arrives after the close
    stored = repo.get(opened.id)
    assert stored.ended_at == T0 + 10
    assert stored.peak_confidence == 0.9
    assert stored.snapshot == "a.jpg"


def test_upsert_does_not_reset_operator_status(repo: IncidentRepository) -> None:
    incident = make_incident()
    repo.upsert(incident)
    repo.set_status(incident.id, IncidentStatus.ACKNOWLEDGED)
    repo.upsert(dataclasses.replace(incident, ended_at=T0 + 2))
    stored = repo.get(incident.id)
    assert stored.status is IncidentStatus.ACKNOWLEDGED
    assert stored.ended_at == T0 + 2


def test_get_unknown_is_not_found(repo: IncidentRepository) -> None:
    with pytest.raises(NotFound, match="incident 'nope' not found"):
        repo.get("nope")
    with pytest.raises(NotFound):
        repo.set_status("nope", IncidentStatus.RESOLVED)


@pytest.fixture
def filled(repo: IncidentRepository) -> IncidentRepository:
    for i in range(10):
        repo.upsert(
            make_incident(
                camera="cam-1" if i % 2 == 0 else "cam-2",
                rule="hardhat-required" if i < 5 else "no-entry",
                track=i,
                started_at=T0 + i * 60,
            )
        )
    return repo


def test_list_is_newest_first(filled: IncidentRepository) -> None:
    started = [i.started_at for i in filled.list()]
    assert started == sorted(started, reverse=True)
    assert len(started) == 10


@pytest.mark.parametrize(
    ("filters", "tracks"),
    [
        ({"camera": "cam-1"}, [8, 6, 4, 2, 0]),
        ({"rule": "no-entry"}, [9, 8, 7, 6, 5]),
        ({"camera": "cam-2", "rule": "hardhat-required"}, [3, 1]),
        ({"since": T0 + 7 * 60}, [9, 8, 7]),
        ({"until": T0 + 2 * 60}, [1, 0]),
        ({"since": T0 + 60, "until": T0 + 3 * 60}, [2, 1]),
        ({"status": IncidentStatus.OPEN}, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]),
        ({"status": IncidentStatus.RESOLVED}, []),
        ({"camera": "missing"}, []),
    ],
)
def test_list_filters(
    filled: IncidentRepository, filters: dict[str, object], tracks: list[int]
) -> None:
    result = filled.list(**filters)  # type: ignore[arg-type]
    assert [i.track_ids[0] for i in result] == tracks


def test_list_pagination_covers_everything_once(filled: IncidentRepository) -> None:
    pages = [filled.list(limit=3, offset=offset) for offset in range(0, 12, 3)]
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    ids = [i.id for page in pages for i in page]
    assert len(set(ids)) == 10


def test_list_status_filter_after_change(filled: IncidentRepository) -> None:
    target = filled.list(limit=1)[0]
    filled.set_status(target.id, IncidentStatus.FALSE_POSITIVE)
    assert [i.id for i in filled.list(status=IncidentStatus.FALSE_POSITIVE)] == [target.id]


@pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (10_001, 0), (10, -1)])
def test_list_rejects_bad_paging(repo: IncidentRepository, limit: int, offset: int) -> None:
    with pytest.raises(ValueError):
        repo.list(limit=limit, offset=offset)


def test_database_errors_become_storage_errors(tmp_path: Path) -> None:
    engine = create_engine_for("sqlite:///gone.db", tmp_path)
    repo = IncidentRepository(engine)
    with engine.begin() as connection:
        IncidentRow.__table__.drop(connection)
    with pytest.raises(StorageError, match="cannot store incident"):
        repo.upsert(make_incident())
    engine.dispose()
