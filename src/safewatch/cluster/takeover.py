"""What an analyzer does when it takes a camera whose owner did not let it go.

An expired, unreleased lease means the owner died, froze or lost the database. Its open incidents
of the camera will never be closed by it (and any late write of it is fenced off), so the new owner
closes them as ``analyzer_lost`` at the last moment each was known to hold, in the same
transaction that takes the lease, and records the coverage gap. Their "closed" alerts are queued
in that transaction too (the repository's change hooks), as for any abandoned incident
(:mod:`safewatch.incidents.abandoned`). A violation still going on is then opened again by the new
owner, linked to the one it continues (:meth:`safewatch.cluster.EpochFence.continues`).

A graceful handover (rebalance, drain) closes the camera's open incidents on the old owner, with
the reason :data:`HANDED_OVER` in their chain entries; the new owner finds them
(:func:`handed_over`) and continues them the same way. Before, a violation going on across a
rolling restart or a rebalance became two unlinked incidents with two "opened" alerts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from safewatch.cluster.leases import Claimable, record_gap
from safewatch.storage.hash_chain import EntryKind
from safewatch.storage.incident_repository import IncidentRepository
from safewatch.storage.tables import ChainEntryRow, IncidentRow

__all__ = [
    "ANALYZER_LOST",
    "HANDED_OVER",
    "HANDOVER",
    "LEFT_OPEN",
    "Takeover",
    "close_left_open",
    "handed_over",
    "record_handover",
    "take_over",
]

log = logging.getLogger(__name__)

ANALYZER_LOST = "analyzer_lost"
"""Reason of the incidents closed and the gap recorded by a takeover."""

HANDOVER = "handover"
"""Reason of the gap between a graceful release and the next claim."""

HANDED_OVER = "camera handed over to another analyzer"
"""Reason, in their ``incident.closed`` chain entries, of the incidents a graceful stop of an
owned camera closed (:meth:`safewatch.runtime.ownership.CameraOwnership.stop_reason`)."""

LEFT_OPEN = "left_open"
"""Reason of the incidents a claim of a released or never-held lease finds still open."""


@dataclass(frozen=True)
class Takeover:
    """What the new owner learned when it claimed another analyzer's expired lease.

    Attributes:
        previous_owner: The analyzer that held the lease and did not release it (it may be this
            analyzer's own previous life, after a freeze or a lost database).
        previous_epoch: Its epoch (the new one is higher).
        closed_incidents: Ids of its open incidents of the camera, closed as ``analyzer_lost``.
        gap_started_at: Epoch seconds (database clock) of the previous owner's last renewal, the
            last moment the camera was known analysed.
        gap_ended_at: Epoch seconds (database clock) of the claim.
    """

    previous_owner: str
    previous_epoch: int
    closed_incidents: tuple[str, ...]
    gap_started_at: float
    gap_ended_at: float


def take_over(
    session: Session, incidents: IncidentRepository, analyzer_id: str, locked: Claimable
) -> Takeover:
    """Close the previous owner's open incidents of the camera and record the gap.

    Runs in the claim's transaction, which must already hold the chain lock (taken before the
    lease row, the order every incident write uses) and the lease row.
    """
    assert locked.previous_owner is not None, "a takeover needs a previous owner"
    closed = incidents.close_abandoned_of_camera(session, locked.camera_id, reason=ANALYZER_LOST)
    record_gap(
        session,
        locked.camera_id,
        started_at=locked.renewed_at,
        ended_at=locked.now,
        reason=ANALYZER_LOST,
        previous_owner=locked.previous_owner,
        new_owner=analyzer_id,
    )
    return Takeover(
        previous_owner=locked.previous_owner,
        previous_epoch=locked.epoch,
        closed_incidents=tuple(incident.id for incident in closed),
        gap_started_at=locked.renewed_at,
        gap_ended_at=locked.now,
    )


def record_handover(session: Session, analyzer_id: str, locked: Claimable) -> None:
    """Record the gap of a graceful handover (released, then claimed here), if there was one.

    A lease released because its camera was removed or disabled has no ``released_at``
    (:func:`~safewatch.cluster.leases.release` with ``handover=False``): the time it was off is
    a deliberate stop, not lost coverage, and records nothing here."""
    if locked.released_at is None or locked.released_by is None:
        return
    record_gap(
        session,
        locked.camera_id,
        started_at=float(locked.released_at),
        ended_at=locked.now,
        reason=HANDOVER,
        previous_owner=locked.released_by,
        new_owner=analyzer_id,
    )


def handed_over(session: Session, camera_id: str, since: float) -> tuple[str, ...]:
    """Ids of the camera's incidents closed as :data:`HANDED_OVER` at or after ``since`` (the
    old owner's clock; give a margin), for :meth:`~safewatch.cluster.EpochFence.taken_over`.

    One already continued by a later incident is left out: after quick handovers (A to B to C)
    C would otherwise also continue A's incident, which B's had continued, and a second subject
    of the same rule would read as its continuation and lose its "opened" alert.

    Runs under the chain lock (in the claim's transaction): the entries are found by their time
    (index ``ix_chain_entries_at``, migration ``0013``), not by reading the whole chain.
    """
    query = (
        select(ChainEntryRow.kind, ChainEntryRow.incident_id, ChainEntryRow.detail)
        .join(IncidentRow, IncidentRow.id == ChainEntryRow.incident_id)
        .where(
            IncidentRow.camera_id == camera_id,
            ChainEntryRow.kind.in_((EntryKind.INCIDENT_CLOSED, EntryKind.INCIDENT_OPENED)),
            ChainEntryRow.at >= since,
        )
    )
    closed: list[str] = []
    continued: set[str] = set()
    for kind, incident_id, detail in session.execute(query):
        try:
            fields = json.loads(detail)
        except ValueError:
            continue
        if not isinstance(fields, dict) or incident_id is None:
            continue
        if kind == EntryKind.INCIDENT_OPENED and fields.get("continues"):
            continued.add(str(fields["continues"]))
        elif kind == EntryKind.INCIDENT_CLOSED and fields.get("reason") == HANDED_OVER:
            closed.append(str(incident_id))
    return tuple(i for i in closed if i not in continued)


def close_left_open(session: Session, incidents: IncidentRepository, camera_id: str) -> None:
    """Close the incidents of a camera claimed without a takeover that are still open.

    Only the owner writes a camera's incidents, so at a claim every open one is an orphan: its
    owner released the lease without closing it (its stop could not write), or it dates from a
    single-host ``serve`` before the cluster (whose start-up close does not run in a cluster).
    """
    for incident in incidents.close_abandoned_of_camera(session, camera_id, reason=LEFT_OPEN):
        log.warning(
            "camera %s: incident %s (rule %s) was left open by a previous analyzer: closed at "
            "its last known moment",
            camera_id,
            incident.id,
            incident.rule_id,
        )
