"""Which incident a new one continues after a takeover (:meth:`EpochFence.continues`): measured
from the claim to the new incident's first violating frame, not to its write, which comes only
once the incident lasted its rule's ``min_duration``. The fence's clock is a stand-in moved by
the test; the incidents are real rows (SQLite and PostgreSQL)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from incident_factories import make_incident
from safewatch.cluster import fencing
from safewatch.cluster.fencing import EpochFence
from safewatch.storage import IncidentRepository

CLAIM = 1_800_000_000.0  # wall clock of the takeover


def test_an_incident_started_soon_after_a_takeover_continues_even_when_written_later(
    db_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule with a 55 s ``min_duration``: the violation goes on across the takeover, its new
    incident starts 5 s after the claim and is written 60 s after it: it continues the closed
    one. One that started 31 s after the claim does not (``continue_within`` 30 s)."""
    now = [CLAIM]
    clock = SimpleNamespace(time=lambda: now[0], monotonic=lambda: now[0])
    monkeypatch.setattr(fencing, "time", clock)
    repository = IncidentRepository(db_engine)
    lost = make_incident(1, camera="cam-0", started_at=CLAIM - 100.0, incident_id="lost")
    repository.upsert(lost)
    fence = EpochFence("b", lambda camera: 1)
    fence.taken_over("cam-0", [lost.id])
    now[0] = CLAIM + 60.0  # when the new incidents are written
    late = make_incident(2, camera="cam-0", started_at=CLAIM + 31.0)
    going_on = make_incident(3, camera="cam-0", started_at=CLAIM + 5.0)
    other_rule = make_incident(4, camera="cam-0", rule="zone", started_at=CLAIM + 5.0)
    with Session(db_engine) as session:
        assert fence.continues(session, late) is None
        assert fence.continues(session, other_rule) is None
        assert fence.continues(session, going_on) == "lost"
        assert fence.continues(session, going_on) is None  # continued once
