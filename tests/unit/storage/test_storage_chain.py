"""The hash chain behind every repository write, on SQLite and PostgreSQL: what gets chained,
that links hold, that concurrent writers stay gap-free, that digests survive the round trip."""

from __future__ import annotations

import dataclasses
import threading
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

import incident_factories
from safewatch.domain import IncidentStatus
from safewatch.errors import NotFound, StorageError
from safewatch.storage import (
    ChainEntryRow,
    ChainHeadRow,
    EntryKind,
    IncidentRepository,
    IncidentRow,
)
from safewatch.storage.hash_chain import GENESIS, entry_hash, record_digest

T0 = 1_700_000_000.0


make_incident = partial(
    incident_factories.make_incident, track=4, rule="hardhat-required", started_at=T0
)
"""The shared incident factory with this module's rule, track and start."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


@pytest.fixture
def repo(db_engine: Engine) -> IncidentRepository:
    return IncidentRepository(db_engine, clock=Clock())


def rows(engine: Engine) -> list[ChainEntryRow]:
    with Session(engine) as session:
        return list(session.scalars(select(ChainEntryRow).order_by(ChainEntryRow.seq)))


def assert_chain_intact(engine: Engine) -> None:
    prev = GENESIS
    entries = rows(engine)
    for expected_seq, row in enumerate(entries, start=1):
        assert row.seq == expected_seq
        assert row.prev_hash == prev
        assert row.hash == entry_hash(
            row.prev_hash,
            seq=row.seq,
            at=row.at,
            kind=row.kind,
            incident_id=row.incident_id,
            subject=row.subject,
            digest=row.digest,
            detail=row.detail,
        )
        prev = row.hash
    with Session(engine) as session:
        head = session.get(ChainHeadRow, 1)
        assert head is not None and (head.seq, head.hash) == (len(entries), prev)


def test_episode_is_chained_opened_updated_closed(repo: IncidentRepository) -> None:
    opened = make_incident()
    repo.upsert(opened)
    repo.upsert(dataclasses.replace(opened, peak_confidence=0.8))
    repo.upsert(dataclasses.replace(opened, ended_at=T0 + 12, peak_confidence=0.8))
    timeline = repo.timeline(opened.id)
    assert [e.kind for e in timeline] == ["incident.opened", "incident.updated", "incident.closed"]
    assert timeline[0].detail["started_at"] == T0
    assert timeline[1].detail["changed"] == ["peak_confidence"]
    assert timeline[2].detail["duration"] == 12.0
    assert [e.seq for e in timeline] == [1, 2, 3]
    assert_chain_intact(repo.engine)


def test_redelivery_that_changes_nothing_records_nothing(repo: IncidentRepository) -> None:
    incident = make_incident(ended_at=T0 + 5)
    repo.upsert(incident)
    before = len(rows(repo.engine))
    repo.upsert(incident)
    repo.upsert(dataclasses.replace(incident, ended_at=None, peak_confidence=0.1))  # older copy
    assert len(rows(repo.engine)) == before == 2  # opened + closed (arrived already ended)
    assert repo.get(incident.id).peak_confidence == 0.6


def test_chained_digest_matches_the_stored_record(repo: IncidentRepository) -> None:
    """Integers where floats belong (a peak of 1) must hash the same after the round trip."""
    incident = make_incident(peak=1, ended_at=T0 + 3)
    repo.upsert(incident)
    repo.set_status(incident.id, IncidentStatus.ACKNOWLEDGED, actor="ana")
    with Session(repo.engine) as session:
        row = session.get(IncidentRow, incident.id)
        assert row is not None
        stored = record_digest(row)
    assert repo.timeline(incident.id)[-1].digest == stored


def test_status_and_notes_are_in_the_timeline(repo: IncidentRepository) -> None:
    incident = make_incident()
    repo.upsert(incident)
    repo.set_status(incident.id, IncidentStatus.ACKNOWLEDGED, actor="ana", note="on my way")
    repo.add_note(incident.id, "talked to the crew", actor="ana")
    repo.record_event(incident.id, "alert.sent", {"channel": "email", "to": "shift@plant"})
    kinds = [(e.kind, e.detail.get("actor")) for e in repo.timeline(incident.id)]
    assert kinds == [
        ("incident.opened", None),
        ("incident.status", "ana"),
        ("incident.note", "ana"),
        ("alert.sent", None),
    ]
    status = repo.timeline(incident.id)[1].detail
    assert status == {"from": "open", "to": "acknowledged", "actor": "ana", "note": "on my way"}
    assert_chain_intact(repo.engine)


def test_evidence_entries_carry_key_digest_and_size(repo: IncidentRepository) -> None:
    incident = make_incident()
    repo.evidence_written(
        incident.id, "cam-1/2023-11-14/x.jpg", "ab" * 32, 1234, camera_id=incident.camera_id
    )
    repo.upsert(incident)
    repo.evidence_removed(incident.id, "cam-1/2023-11-14/x.jpg", reason="retention", detail={})
    timeline = repo.timeline(incident.id)
    assert [e.kind for e in timeline] == ["evidence.written", "incident.opened", "evidence.removed"]
    assert timeline[0].subject == "cam-1/2023-11-14/x.jpg"
    assert timeline[0].digest == "ab" * 32
    assert timeline[0].detail == {"size": 1234}
    assert timeline[2].detail == {"reason": "retention"}


@pytest.mark.parametrize(
    ("kind", "detail", "error"),
    [
        ("incident.opened", {}, "kind"),
        ("evidence.written", {}, "kind"),
        ("Alert Sent", {}, "kind"),
        ("alert", {}, "kind"),
        ("alert.sent", {"bad": float("nan")}, "not JSON"),
        ("alert.sent", {"bad": object()}, "not JSON"),
    ],
)
def test_record_event_refuses_bad_kinds_and_details(
    repo: IncidentRepository, kind: str, detail: dict[str, object], error: str
) -> None:
    incident = make_incident()
    repo.upsert(incident)
    with pytest.raises(ValueError, match=error):
        repo.record_event(incident.id, kind, detail)
    assert len(rows(repo.engine)) == 1


def test_events_for_unknown_incidents_are_not_found(repo: IncidentRepository) -> None:
    with pytest.raises(NotFound):
        repo.add_note("nope", "text")
    with pytest.raises(NotFound):
        repo.record_event("nope", "alert.sent")
    with pytest.raises(NotFound):
        repo.timeline("nope")
    with pytest.raises(ValueError, match="needs some text"):
        repo.add_note("nope", "   ")
    assert rows(repo.engine) == []


def test_refused_status_check_changes_nothing(repo: IncidentRepository) -> None:
    incident = make_incident()
    repo.upsert(incident)

    def refuse(current: IncidentStatus, new: IncidentStatus) -> None:
        raise RuntimeError(f"no {current} -> {new}")

    with pytest.raises(RuntimeError, match="no open -> resolved"):
        repo.set_status(incident.id, IncidentStatus.RESOLVED, check=refuse)
    assert repo.get(incident.id).status is IncidentStatus.OPEN
    assert len(rows(repo.engine)) == 1
    assert_chain_intact(repo.engine)


def test_concurrent_writers_keep_the_chain_gap_free(repo: IncidentRepository) -> None:
    """Four threads writing at once (the head row serialises them) on both engines."""
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(15):
                incident = make_incident(track=worker * 100 + i)
                repo.upsert(incident)
                repo.upsert(dataclasses.replace(incident, ended_at=T0 + 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(rows(repo.engine)) == 4 * 15 * 2
    assert_chain_intact(repo.engine)


def test_missing_head_row_says_to_upgrade(repo: IncidentRepository) -> None:
    with repo.engine.begin() as connection:
        connection.execute(delete(ChainHeadRow))
    with pytest.raises(StorageError, match="safewatch db upgrade"):
        repo.upsert(make_incident())
    assert repo.page().total == 0


def test_fresh_sqlite_file_gets_the_schema_on_open(tmp_path: Path) -> None:
    from safewatch.storage import create_engine_for

    engine = create_engine_for("sqlite:///new.db", tmp_path)
    repo = IncidentRepository(engine)
    repo.upsert(make_incident())
    assert [e.kind for e in repo.timeline(make_incident().id)] == [EntryKind.INCIDENT_OPENED]
    engine.dispose()
