"""Operator lifecycle on SQLite and PostgreSQL: allowed and refused transitions, notes, the
timeline, and two operators acting at once."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sqlalchemy import Engine

from incident_factories import make_incident
from safewatch.domain import Incident, IncidentStatus
from safewatch.errors import NotFound, SafewatchError
from safewatch.incidents.lifecycle import (
    ALLOWED,
    IncidentLifecycle,
    InvalidTransition,
    check_transition,
)
from safewatch.storage import IncidentRepository

T0 = 1_700_000_000.0
OPEN, ACK, RESOLVED, FALSE = (
    IncidentStatus.OPEN,
    IncidentStatus.ACKNOWLEDGED,
    IncidentStatus.RESOLVED,
    IncidentStatus.FALSE_POSITIVE,
)


@pytest.fixture
def repo(db_engine: Engine) -> IncidentRepository:
    return IncidentRepository(db_engine)


@pytest.fixture
def incident(repo: IncidentRepository) -> Incident:
    incident = make_incident(4, camera="yard", started_at=T0)
    repo.upsert(incident)
    repo.upsert(dataclasses.replace(incident, ended_at=T0 + 6.5))
    return incident


@pytest.fixture
def lifecycle(repo: IncidentRepository) -> IncidentLifecycle:
    return IncidentLifecycle(repo)


@pytest.mark.parametrize(
    ("current", "requested", "allowed"),
    [
        (OPEN, ACK, True),
        (OPEN, RESOLVED, False),
        (OPEN, FALSE, False),
        (OPEN, OPEN, False),
        (ACK, RESOLVED, True),
        (ACK, FALSE, True),
        (ACK, ACK, False),
        (ACK, OPEN, False),
        (RESOLVED, OPEN, False),
        (RESOLVED, ACK, False),
        (RESOLVED, FALSE, False),
        (FALSE, RESOLVED, False),
        (FALSE, OPEN, False),
    ],
)
def test_transition_table(
    current: IncidentStatus, requested: IncidentStatus, allowed: bool
) -> None:
    if allowed:
        check_transition(current, requested)
    else:
        with pytest.raises(InvalidTransition):
            check_transition(current, requested)
    assert (requested in ALLOWED[current]) is allowed


def test_refusals_say_what_is_possible() -> None:
    with pytest.raises(
        InvalidTransition,
        match="incident is open, cannot become resolved: it can only become acknowledged",
    ):
        check_transition(OPEN, RESOLVED)
    with pytest.raises(InvalidTransition, match="is resolved, cannot become open: it is closed"):
        check_transition(RESOLVED, OPEN)
    assert issubclass(InvalidTransition, SafewatchError)


def test_acknowledge_then_resolve_with_timeline(
    lifecycle: IncidentLifecycle, repo: IncidentRepository, incident: Incident
) -> None:
    acked = lifecycle.acknowledge(incident.id, actor="ana", note="on my way")
    assert acked.status is ACK
    resolved = lifecycle.resolve(incident.id, actor="ben", note="helmet issued")
    assert resolved.status is RESOLVED and repo.get(incident.id).status is RESOLVED
    lifecycle.add_note(incident.id, "crew briefed on Monday", actor="ana")
    timeline = lifecycle.timeline(incident.id)
    assert [(e.kind, e.actor, e.summary) for e in timeline] == [
        ("incident.opened", None, "episode started"),
        ("incident.closed", None, "episode ended after 6.5 s"),
        ("incident.status", "ana", "open -> acknowledged by ana: on my way"),
        ("incident.status", "ben", "acknowledged -> resolved by ben: helmet issued"),
        ("incident.note", "ana", "note by ana: crew briefed on Monday"),
    ]
    assert [e.seq for e in timeline] == sorted(e.seq for e in timeline)


def test_false_positive_after_acknowledging(
    lifecycle: IncidentLifecycle, incident: Incident
) -> None:
    lifecycle.acknowledge(incident.id, actor="ana")
    assert (
        lifecycle.mark_false_positive(incident.id, actor="ana", note="a cap, not a head").status
        is FALSE
    )


def test_refused_transition_changes_nothing(
    lifecycle: IncidentLifecycle, repo: IncidentRepository, incident: Incident
) -> None:
    before = lifecycle.timeline(incident.id)
    with pytest.raises(InvalidTransition, match="cannot become resolved"):
        lifecycle.resolve(incident.id, actor="ana")
    assert repo.get(incident.id).status is OPEN
    assert lifecycle.timeline(incident.id) == before


def test_unknown_incident(lifecycle: IncidentLifecycle) -> None:
    with pytest.raises(NotFound, match="incident 'nope' not found"):
        lifecycle.acknowledge("nope", actor="ana")
    with pytest.raises(NotFound):
        lifecycle.timeline("nope")


def test_pipeline_updates_never_reset_an_operators_status(
    lifecycle: IncidentLifecycle, repo: IncidentRepository, incident: Incident
) -> None:
    lifecycle.acknowledge(incident.id, actor="ana")
    repo.upsert(dataclasses.replace(incident, ended_at=T0 + 9, peak_confidence=0.95))
    assert repo.get(incident.id).status is ACK


def test_two_operators_acknowledging_at_once(
    lifecycle: IncidentLifecycle, incident: Incident
) -> None:
    """The check runs under the chain lock: exactly one acknowledgement wins."""
    results: list[str] = []
    barrier = threading.Barrier(4)

    def act(name: str) -> None:
        barrier.wait()
        try:
            lifecycle.acknowledge(incident.id, actor=name)
            results.append("ok")
        except InvalidTransition:
            results.append("refused")

    threads = [threading.Thread(target=act, args=(f"op{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ok", "refused", "refused", "refused"]
    statuses = [e for e in lifecycle.timeline(incident.id) if e.kind == "incident.status"]
    assert len(statuses) == 1
