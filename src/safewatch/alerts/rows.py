"""Outbox rows: their states, keys and payloads, shared by the writer, the outbox and the CLI.

A row's ``id`` is ``KEY:CHANNEL``: the idempotency key names the alert (incident, route, event),
the channel names the delivery. Inserting the same alert again therefore hits the same primary
key and is skipped, rather than failing the incident transaction it belongs to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from safewatch.domain import Incident
from safewatch.storage.alert_tables import AlertOutboxRow

__all__ = [
    "OUTBOX",
    "STATUSES",
    "OutboxItem",
    "idempotency_key",
    "incident_json",
    "insert_ignoring_duplicates",
    "new_row",
    "to_item",
]

STATUSES = ("pending", "sending", "delivered", "dead", "held", "digested", "cancelled")
"""Every state of an outbox row (see :class:`safewatch.storage.alert_tables.AlertOutboxRow`)."""

OUTBOX = cast(Table, AlertOutboxRow.__table__)
"""The outbox table, for Core statements."""


def idempotency_key(*parts: str) -> str:
    """A stable key for (incident, route, event): 32 hex digits of SHA-256."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def incident_json(incident: Incident) -> dict[str, Any]:
    """The incident as JSON-able fields (the outbox payload and the webhook body use it)."""
    return {
        "id": incident.id,
        "camera_id": incident.camera_id,
        "rule_id": incident.rule_id,
        "rule_kind": incident.rule_kind,
        "severity": str(incident.severity),
        "track_ids": [int(t) for t in incident.track_ids],
        "started_at": incident.started_at,
        "ended_at": incident.ended_at,
        "duration": incident.duration,
        "peak_confidence": incident.peak_confidence,
        "message": incident.message,
        "snapshot": incident.snapshot,
        "clip": incident.clip,
        "zone_id": incident.zone_id,
        "status": str(incident.status),
    }


def insert_ignoring_duplicates(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows; a row whose id exists already is skipped (a replay, not an error)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(OUTBOX).on_conflict_do_nothing(), list(rows))
    elif dialect == "sqlite":
        session.execute(sqlite.insert(OUTBOX).on_conflict_do_nothing(), list(rows))
    else:  # pragma: no cover - safewatch supports SQLite and PostgreSQL
        existing = set(
            session.scalars(select(OUTBOX.c.id).where(OUTBOX.c.id.in_([r["id"] for r in rows])))
        )
        fresh = [r for r in rows if r["id"] not in existing]
        if fresh:
            session.execute(OUTBOX.insert(), fresh)


def new_row(
    key: str,
    channel: str,
    *,
    incident_id: str | None,
    route_id: str,
    event: str,
    status: str,
    due_at: float,
    now: float,
    payload: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "id": f"{key}:{channel}",
        "key": key,
        "incident_id": incident_id,
        "route_id": route_id,
        "channel": channel,
        "event": event,
        "status": status,
        "attempts": 0,
        "due_at": due_at,
        "claimed_by": None,
        "claimed_until": None,
        "created_at": now,
        "updated_at": now,
        "delivered_at": None,
        "payload": json.dumps(payload, sort_keys=True, separators=(",", ":")),
        "last_error": None,
        "digest_id": None,
    }


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One claimed (or listed) delivery."""

    id: str
    key: str
    incident_id: str | None
    route_id: str
    channel: str
    event: str
    status: str
    attempts: int
    due_at: float
    created_at: float
    delivered_at: float | None
    last_error: str | None
    payload: dict[str, Any]


def to_item(row: Any) -> OutboxItem:
    try:
        payload = json.loads(row.payload)
    except (TypeError, ValueError):
        payload = {}
    return OutboxItem(
        id=row.id,
        key=row.key,
        incident_id=row.incident_id,
        route_id=row.route_id,
        channel=row.channel,
        event=row.event,
        status=row.status,
        attempts=int(row.attempts),
        due_at=float(row.due_at),
        created_at=float(row.created_at),
        delivered_at=None if row.delivered_at is None else float(row.delivered_at),
        last_error=row.last_error,
        payload=payload if isinstance(payload, dict) else {},
    )
