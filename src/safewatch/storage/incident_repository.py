"""Store and query incidents.

The repository is the only place that knows incidents live in SQL. The pipeline calls
:meth:`IncidentRepository.upsert` under at-least-once delivery, so storing the same incident again
must be harmless: the derived id turns a re-delivery into an update, and the update only moves
forward (the peak confidence never drops, an end time or a snapshot is never erased by a late,
older copy, and an operator's status is never reset by the pipeline).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from safewatch.domain import Incident, IncidentStatus, Severity
from safewatch.errors import NotFound, StorageError
from safewatch.storage.tables import Base, IncidentRow

__all__ = ["IncidentRepository", "create_schema"]

_MAX_LIMIT = 10_000


def create_schema(engine: Engine) -> None:
    """Create missing tables (idempotent).

    A stop-gap: Alembic migrations take over in a later issue, before any table changes shape.

    Raises:
        StorageError: The database refused (read-only file, no permission).
    """
    try:
        Base.metadata.create_all(engine)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot create tables: {getattr(exc, 'orig', None) or exc}") from exc


def _to_domain(row: IncidentRow) -> Incident:
    return Incident(
        id=row.id,
        camera_id=row.camera_id,
        rule_id=row.rule_id,
        rule_kind=row.rule_kind,
        severity=Severity(row.severity),
        track_ids=tuple(int(t) for t in row.track_ids),
        started_at=row.started_at,
        ended_at=row.ended_at,
        peak_confidence=row.peak_confidence,
        message=row.message,
        snapshot=row.snapshot,
        clip=row.clip,
        zone_id=row.zone_id,
        status=IncidentStatus(row.status),
    )


def _values(incident: Incident, now: float) -> dict[str, Any]:
    return {
        "id": incident.id,
        "camera_id": incident.camera_id,
        "rule_id": incident.rule_id,
        "rule_kind": incident.rule_kind,
        "severity": str(incident.severity),
        "track_ids": list(incident.track_ids),
        "started_at": incident.started_at,
        "ended_at": incident.ended_at,
        "duration": incident.duration,
        "peak_confidence": incident.peak_confidence,
        "message": incident.message,
        "snapshot": incident.snapshot,
        "clip": incident.clip,
        "zone_id": incident.zone_id,
        "status": str(incident.status),
        "created_at": now,
        "updated_at": now,
    }


class IncidentRepository:
    """Incidents in one SQL database.

    Each call runs in its own short transaction, so one repository can be shared by threads (the
    engine pools connections). Tables are created on construction.

    Args:
        engine: From :func:`safewatch.storage.create_engine_for`.
        clock: Wall clock for ``created_at`` / ``updated_at`` (bookkeeping, not frame time);
            injectable for tests.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        create_schema(engine)

    @contextmanager
    def _session(self, action: str) -> Iterator[Session]:
        try:
            with Session(self._engine) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            raise StorageError(f"cannot {action}: {reason}") from exc

    def upsert(self, incident: Incident) -> None:
        """Insert the incident, or merge it into the stored one with the same id.

        Merge rules, so that replays and out-of-order copies are harmless: ``peak_confidence``
        keeps the maximum; ``ended_at``, ``snapshot`` and ``clip`` keep the stored value when the
        new copy has none; ``status`` is left alone (operators own it, see :meth:`set_status`);
        ``track_ids`` and ``message`` take the newest copy; ``created_at`` never changes.

        Raises:
            StorageError: The database cannot be written.
        """
        values = _values(incident, self._clock())
        dialect = self._engine.dialect.name
        with self._session(f"store incident {incident.id}") as session:
            if dialect in ("sqlite", "postgresql"):
                insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
                stmt = insert(IncidentRow).values(**values)
                new = stmt.excluded
                table = IncidentRow.__table__.c
                ended_at = func.coalesce(new.ended_at, table.ended_at)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[table.id],
                    set_={
                        "track_ids": new.track_ids,
                        "message": new.message,
                        "severity": new.severity,
                        "ended_at": ended_at,
                        "duration": ended_at - table.started_at,
                        "peak_confidence": case(
                            (new.peak_confidence > table.peak_confidence, new.peak_confidence),
                            else_=table.peak_confidence,
                        ),
                        "snapshot": func.coalesce(new.snapshot, table.snapshot),
                        "clip": func.coalesce(new.clip, table.clip),
                        "updated_at": new.updated_at,
                    },
                )
                session.execute(stmt)
            else:
                self._merge_generic(session, values)

    @staticmethod
    def _merge_generic(session: Session, values: dict[str, Any]) -> None:
        row = session.get(IncidentRow, values["id"], with_for_update=True)
        if row is None:
            session.add(IncidentRow(**values))
            return
        row.track_ids = values["track_ids"]
        row.message = values["message"]
        row.severity = values["severity"]
        if values["ended_at"] is not None:
            row.ended_at = values["ended_at"]
            row.duration = row.ended_at - row.started_at
        row.peak_confidence = max(row.peak_confidence, values["peak_confidence"])
        if values["snapshot"] is not None:
            row.snapshot = values["snapshot"]
        if values["clip"] is not None:
            row.clip = values["clip"]
        row.updated_at = values["updated_at"]

    def get(self, incident_id: str) -> Incident:
        """The incident with this id.

        Raises:
            NotFound: No such incident.
            StorageError: The database cannot be read.
        """
        with self._session(f"read incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise NotFound("incident", incident_id)
            return _to_domain(row)

    def set_status(self, incident_id: str, status: IncidentStatus) -> Incident:
        """Record an operator's decision (acknowledged, resolved, false positive).

        Raises:
            NotFound: No such incident.
            StorageError: The database cannot be written.
        """
        with self._session(f"update incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise NotFound("incident", incident_id)
            row.status = str(status)
            row.updated_at = self._clock()
            return _to_domain(row)

    def list(
        self,
        *,
        camera: str | None = None,
        rule: str | None = None,
        status: IncidentStatus | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Incident]:
        """Incidents matching every given filter, newest first.

        Args:
            camera: Only this camera.
            rule: Only this rule id.
            status: Only this operator status.
            since: Only incidents that started at or after this time (epoch seconds).
            until: Only incidents that started before this time (epoch seconds).
            limit: Page size, 0 to 10,000.
            offset: Rows to skip (for pagination; order is stable: start time, then id).

        Raises:
            ValueError: ``limit`` or ``offset`` out of range.
            StorageError: The database cannot be read.
        """
        if not 0 <= limit <= _MAX_LIMIT:
            raise ValueError(f"limit must be between 0 and {_MAX_LIMIT}, got {limit}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        query = select(IncidentRow)
        if camera is not None:
            query = query.where(IncidentRow.camera_id == camera)
        if rule is not None:
            query = query.where(IncidentRow.rule_id == rule)
        if status is not None:
            query = query.where(IncidentRow.status == str(status))
        if since is not None:
            query = query.where(IncidentRow.started_at >= since)
        if until is not None:
            query = query.where(IncidentRow.started_at < until)
        query = (
            query.order_by(IncidentRow.started_at.desc(), IncidentRow.id)
            .limit(limit)
            .offset(offset)
        )
        with self._session("list incidents") as session:
            return [_to_domain(row) for row in session.scalars(query)]
