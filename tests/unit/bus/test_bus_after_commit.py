"""Incident changes reach the bus only after their transaction committed, never on a rollback, and
the chain back-fill returns the same changes the hook published."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from incident_factories import make_incident
from safewatch.bus import Envelope, PublishAfterCommit
from safewatch.domain import IncidentStatus
from safewatch.storage import IncidentRepository
from safewatch.storage.incident_repository import StoredChange


class Recorder:
    """A publisher that checks, when called, that the change is already visible to others."""

    def __init__(self, repository: IncidentRepository) -> None:
        self.repository = repository
        self.seen: list[tuple[Envelope, IncidentStatus | None]] = []

    def publish(self, envelope: Envelope) -> None:
        incident = self.repository.get(envelope.body["incident"]["id"])  # a new connection
        self.seen.append((envelope, incident.status))


def test_changes_are_published_after_commit_in_chain_order(db_engine: Engine) -> None:
    repository = IncidentRepository(db_engine)
    recorder = Recorder(repository)
    hook = PublishAfterCommit(recorder)
    repository.add_change_hook(hook)
    repository.upsert(make_incident(1, ended_at=1003.0))  # opened and closed in one transaction
    repository.set_status(make_incident(1).id, IncidentStatus.ACKNOWLEDGED, actor="ann")
    kinds = [(e.body["kind"], e.body["actor"], e.seq) for e, _ in recorder.seen]
    assert kinds == [("opened", None, 1), ("closed", None, 2), ("status", "ann", 3)]
    # Visible from another connection when published: the publisher ran after the commit.
    assert recorder.seen[-1][1] is IncidentStatus.ACKNOWLEDGED
    assert hook.published == 3

    changes, last = repository.changes_after(0)
    assert last == 3
    assert [c.entry.seq for c in changes] == [1, 2, 3]
    assert repository.changes_after(3) == ([], 3)


def test_a_rolled_back_change_is_never_published(db_engine: Engine) -> None:
    repository = IncidentRepository(db_engine)
    recorder = Recorder(repository)
    repository.add_change_hook(PublishAfterCommit(recorder))

    def refuse(_session: Session, _change: StoredChange) -> None:
        raise RuntimeError("fenced")

    repository.add_change_hook(refuse)
    with pytest.raises(RuntimeError, match="fenced"):
        repository.upsert(make_incident(2))
    repository.remove_change_hook(refuse)
    repository.upsert(make_incident(3))
    assert [e.body["incident"]["track_ids"] for e, _ in recorder.seen] == [[3]]
    assert [e.seq for e, _ in recorder.seen] == [1]  # the refused write left no gap either


def test_a_failing_publisher_does_not_undo_or_fail_the_write(db_engine: Engine) -> None:
    repository = IncidentRepository(db_engine)

    class Broken:
        def publish(self, envelope: Envelope) -> None:
            raise ConnectionError("redis down")

    hook = PublishAfterCommit(Broken())
    repository.add_change_hook(hook)
    repository.upsert(make_incident(4))
    assert repository.get(make_incident(4).id).track_ids == (4,)
    assert hook.failed == 1


def test_changes_after_skips_entries_that_are_not_incident_changes(db_engine: Engine) -> None:
    repository = IncidentRepository(db_engine)
    repository.upsert(make_incident(5))
    repository.add_note(make_incident(5).id, "looked at it", actor="ann")
    repository.upsert(make_incident(5, ended_at=1002.0))
    changes, last = repository.changes_after(0, limit=2)
    assert ([c.entry.seq for c in changes], last) == ([1], 2)
    changes, last = repository.changes_after(2)
    assert ([(c.entry.seq, str(c.kind)) for c in changes], last) == ([(3, "incident.closed")], 3)
