"""Store and query incidents, each change recorded in the tamper-evidence chain.

The repository is the only place that knows incidents live in SQL. The pipeline calls
:meth:`IncidentRepository.upsert` under at-least-once delivery, so storing the same incident again
must be harmless: the derived id turns a re-delivery into an update, and the update only moves
forward (the peak confidence never drops, an end time, a still or a clip is never erased by a late,
older copy, and an operator's status is never reset by the pipeline). A re-delivery that changes
nothing records nothing.

Every write runs in one short transaction that first takes the chain's head row
(:func:`safewatch.storage.hash_chain.lock_head`), changes the incident and appends the entry that
vouches for the result, so the table and the chain can never disagree. The chain entries of an
incident are also its timeline: episode opened, updates, closed, operator actions, notes, evidence
and (from the alerts) deliveries.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from safewatch import tracing
from safewatch.domain import Incident, IncidentStatus, Severity
from safewatch.errors import NotFound
from safewatch.storage import hash_chain
from safewatch.storage.engine import snapshot, transaction
from safewatch.storage.hash_chain import ChainEntry, EntryKind
from safewatch.storage.incident_queries import (
    Bucket,
    Dimension,
    IncidentFilter,
    OneOrMany,
    Page,
    aggregate_statement,
    check_paging,
    fold_buckets,
    zone,
)
from safewatch.storage.migrate import ensure_schema
from safewatch.storage.tables import ChainEntryRow, IncidentRow

__all__ = [
    "ChangeHook",
    "IncidentReads",
    "IncidentRepository",
    "StatusCheck",
    "StoredChange",
    "WriteFence",
    "check_note",
    "create_schema",
]

StatusCheck = Callable[[IncidentStatus, IncidentStatus], None]
"""Validates an operator's status change ``(current, new)``; raises to refuse it."""


@dataclass(frozen=True, slots=True)
class StoredChange:
    """An incident change as just written, seen from inside its transaction.

    Attributes:
        incident: The incident after the change.
        kind: ``incident.opened``, ``incident.updated``, ``incident.closed`` or
            ``incident.status`` (an operator's decision).
        entry: The chain entry that records it (its ``seq`` tells changes apart).
    """

    incident: Incident
    kind: EntryKind
    entry: ChainEntry


ChangeHook = Callable[[Session, StoredChange], None]
"""Called inside the write transaction of every incident change (the alerts outbox writes its
rows there, so a stored change always has its alerts queued). Whatever it adds to the session
commits with the change; if it raises, the change is rolled back and the error propagates."""

_PUBLISHED_KINDS = (
    EntryKind.INCIDENT_OPENED,
    EntryKind.INCIDENT_UPDATED,
    EntryKind.INCIDENT_CLOSED,
    EntryKind.STATUS_CHANGED,
)
"""Chain entries that change what a dashboard shows of an incident (and so reach its hooks)."""


class WriteFence(Protocol):
    """Whether this process may still write a camera's incidents (``serve --cluster``).

    Both methods run inside the write's transaction, after the chain lock
    (:class:`safewatch.cluster.EpochFence` reads the camera's lease row there).
    """

    def check(self, session: Session, camera_id: str) -> None:
        """Raise (a :class:`StorageError`) to refuse the write and roll it back."""
        ...

    def continues(self, session: Session, incident: Incident) -> str | None:
        """Id of the incident a newly opened one continues (after a takeover), or ``None``."""
        ...


_EVENT_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_RESERVED = {str(kind) for kind in EntryKind}


def create_schema(engine: Engine) -> None:
    """Bring the schema up to date with the migrations (kept for callers of the old API).

    Raises:
        StorageError: The database refused (read-only file, no permission).
    """
    ensure_schema(engine, auto_upgrade=True)


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
        "track_ids": [int(t) for t in incident.track_ids],
        "started_at": float(incident.started_at),
        "ended_at": None if incident.ended_at is None else float(incident.ended_at),
        "duration": incident.duration,
        "peak_confidence": float(incident.peak_confidence),
        "message": incident.message,
        "snapshot": incident.snapshot,
        "clip": incident.clip,
        "zone_id": incident.zone_id,
        "status": str(incident.status),
        "created_at": now,
        "updated_at": now,
    }


def _merge(row: IncidentRow, values: Mapping[str, Any]) -> None:
    """Merge a newer copy into the stored row (rules in :meth:`IncidentRepository.upsert`)."""
    row.track_ids = values["track_ids"]
    row.message = values["message"]
    row.severity = values["severity"]
    if values["ended_at"] is not None:
        row.ended_at = values["ended_at"]
    if row.ended_at is not None:
        row.duration = row.ended_at - row.started_at
    row.peak_confidence = max(row.peak_confidence, values["peak_confidence"])
    if values["snapshot"] is not None:
        row.snapshot = values["snapshot"]
    if values["clip"] is not None:
        row.clip = values["clip"]
    row.updated_at = values["updated_at"]


def check_note(text: str) -> str:
    """Return ``text`` if it is a note (not blank), else raise ``ValueError``.

    Used by :meth:`IncidentRepository.add_note` and by the API's request body: "blank" is what
    ``str.strip`` removes (``\\x1c`` too), which a JSON-schema pattern such as ``\\S`` does not
    mirror, so the request is refused with this message (422) before the repository is reached.
    """
    if not text.strip():
        raise ValueError("a note needs some text")
    return text


class IncidentRepository:
    """Incidents and their chain in one SQL database.

    Each call runs in its own short transaction, so one repository can be shared by threads (the
    engine pools connections). The schema is checked on construction and, for SQLite, migrated
    (see :mod:`safewatch.storage.migrate`).

    Args:
        engine: From :func:`safewatch.storage.create_engine_for`.
        clock: Wall clock for ``created_at`` / ``updated_at`` and chain entries (bookkeeping, not
            frame time); injectable for tests.
        auto_upgrade: Migrate an outdated schema; ``None`` means only for SQLite.
        on_change: A :data:`ChangeHook` to install now (more with :meth:`add_change_hook`).
        fence: Checked by every write of the analysis path (:meth:`upsert`, :meth:`hold`,
            :meth:`attach_evidence`, :meth:`evidence_written`); ``None`` (one host) checks
            nothing. Operators' writes (status, notes) and retention are not fenced. A public
            attribute, so a cluster member can install its fence on a repository built first.
        site_file: The site file, named by the ``db upgrade`` advised for an outdated schema.

    Raises:
        StorageError: The schema is outdated and may not be migrated here, or the database
            cannot be read.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        auto_upgrade: bool | None = None,
        on_change: ChangeHook | None = None,
        fence: WriteFence | None = None,
        site_file: str | Path | None = None,
    ) -> None:
        self.fence = fence
        self._engine = engine
        self._clock = clock
        self._hooks: tuple[ChangeHook, ...] = () if on_change is None else (on_change,)
        ensure_schema(engine, auto_upgrade=auto_upgrade, site_file=site_file)

    def add_change_hook(self, hook: ChangeHook) -> None:
        """Call ``hook`` inside the transaction of every later incident change."""
        self._hooks = (*self._hooks, hook)

    def remove_change_hook(self, hook: ChangeHook) -> None:
        """Stop calling ``hook`` (no error if it was not installed)."""
        self._hooks = tuple(h for h in self._hooks if h is not hook)

    def _changed(self, session: Session, row: IncidentRow, entry: ChainEntry) -> None:
        if self._hooks:
            change = StoredChange(_to_domain(row), EntryKind(entry.kind), entry)
            for hook in self._hooks:
                hook(session, change)

    @property
    def engine(self) -> Engine:
        """The database engine (for the verifier and retention, which read the chain)."""
        return self._engine

    def _session(self, action: str) -> AbstractContextManager[Session]:
        return transaction(self._engine, action)

    @contextmanager
    def _chained(self, action: str) -> Iterator[Session]:
        """A write transaction holding the chain lock (one ``incident.write`` span: the wait for
        the lock is part of what a write costs)."""
        with tracing.span("incident.write", {"action": action}), self._session(action) as session:
            hash_chain.lock_head(session)
            yield session

    def _fenced(self, session: Session, camera_id: str) -> None:
        if self.fence is not None:
            self.fence.check(session, camera_id)

    # -- writes -----------------------------------------------------------------------------

    def upsert(
        self, incident: Incident, *, reason: str | None = None, held_until: float | None = None
    ) -> None:
        """Insert the incident, or merge it into the stored one with the same id; chain it.

        Merge rules, so that replays and out-of-order copies are harmless: ``peak_confidence``
        keeps the maximum; ``ended_at``, ``snapshot`` and ``clip`` keep the stored value when the
        new copy has none; ``status`` is left alone (operators own it, see :meth:`set_status`);
        ``track_ids``, ``severity`` and ``message`` take the newest copy; ``created_at`` never
        changes. The chain gets ``incident.opened`` for a new incident (and ``incident.closed``
        too if it arrives already ended), ``incident.closed`` when the end first appears,
        ``incident.updated`` for other changes, and nothing when the record did not change.

        Args:
            incident: The incident as the pipeline knows it.
            reason: Why it closed, when not because its episode ended (e.g. its camera was
                removed from the site file); kept in the ``incident.closed`` entry.
            held_until: Frame time the incident is known to hold at, noted as :meth:`hold` does
                but in the same transaction: an incident's start lies ``min_duration`` before
                the event that opens it, and a process killed before its first :meth:`hold`
                would otherwise have it closed at its start (0 s) by :meth:`close_abandoned`.

        Raises:
            StorageError: The database cannot be written.
        """
        now = float(self._clock())
        values = _values(incident, now)
        with self._chained(f"store incident {incident.id}") as session:
            self._fenced(session, incident.camera_id)
            row = session.get(IncidentRow, incident.id)
            if row is None:
                row = IncidentRow(**values, held_until=held_until)
                session.add(row)
                opened = _opened(row)
                continued = None if self.fence is None else self.fence.continues(session, incident)
                if continued is not None:
                    opened["continues"] = continued
                entry = self._chain_record(session, row, EntryKind.INCIDENT_OPENED, now, opened)
                self._changed(session, row, entry)
                if row.ended_at is not None:
                    entry = self._chain_record(
                        session, row, EntryKind.INCIDENT_CLOSED, now, _closed(row, reason)
                    )
                    self._changed(session, row, entry)
                return
            if held_until is not None and row.ended_at is None:  # not chained: bookkeeping
                row.held_until = max(float(held_until), row.held_until or float("-inf"))
            self._change(session, row, now, lambda stored: _merge(stored, values), reason)

    def attach_evidence(
        self, incident_id: str, *, snapshot: str | None = None, clip: str | None = None
    ) -> None:
        """Point a stored incident at its still or clip, changing nothing else; chain it.

        The evidence thread stores these after the incident's row (so an incident never points
        at a file not yet written), holding a copy of the incident that may be older than the
        row: :meth:`upsert` of that copy would put back an older message or track list.

        Raises:
            NotFound: No such incident.
            StorageError: The database cannot be written.
        """
        now = float(self._clock())

        def attach(row: IncidentRow) -> None:
            if snapshot is not None:
                row.snapshot = snapshot
            if clip is not None:
                row.clip = clip
            row.updated_at = now

        with self._chained(f"attach evidence to incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise NotFound("incident", incident_id)
            self._fenced(session, row.camera_id)
            self._change(session, row, now, attach)

    def _change(
        self,
        session: Session,
        row: IncidentRow,
        now: float,
        apply: Callable[[IncidentRow], None],
        reason: str | None = None,
    ) -> None:
        """Apply a change to a stored row; chain it (closed, with ``reason`` if given, or
        updated) unless nothing changed."""
        before = hash_chain.incident_record(row)
        was_open = row.ended_at is None
        apply(row)
        after = hash_chain.incident_record(row)
        if after == before:
            return
        if was_open and row.ended_at is not None:
            detail = _closed(row, reason)
            entry = self._chain_record(session, row, EntryKind.INCIDENT_CLOSED, now, detail)
        else:
            changed = sorted(name for name in after if after[name] != before[name])
            detail = {"changed": changed, "peak_confidence": row.peak_confidence}
            entry = self._chain_record(session, row, EntryKind.INCIDENT_UPDATED, now, detail)
        self._changed(session, row, entry)

    def hold(self, incident_id: str, at: float) -> None:
        """Note that the open incident still held at frame time ``at`` (not chained: bookkeeping).

        The manager calls it every few seconds of an open episode, so that if the process dies
        the next start can close the incident at the last moment it was known to hold
        (:meth:`close_abandoned`) rather than leave it open or guess an end.

        Raises:
            StorageError: The database cannot be written.
        """
        with self._session(f"mark incident {incident_id} as holding") as session:
            row = session.get(IncidentRow, incident_id)
            if row is not None and row.ended_at is None:
                self._fenced(session, row.camera_id)
                row.held_until = max(float(at), row.held_until or float("-inf"))

    def close_abandoned(
        self, incident_id: str, *, reason: str, at: float | None = None
    ) -> Incident | None:
        """Close an incident that no running process will close, recording why in the chain.

        The end is ``at`` when given, else the last moment the incident was known to hold
        (:meth:`hold`, or its start when it was never marked). The ``incident.closed`` entry
        carries ``reason`` and ``abandoned: true``, and the change hooks run as for any close,
        so its "closed" alerts are queued in the same transaction.

        Returns:
            The closed incident, or ``None`` when it was already closed (nothing is written).

        Raises:
            NotFound: No such incident.
            StorageError: The database cannot be written.
        """
        with self._chained(f"close abandoned incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise NotFound("incident", incident_id)
            if row.ended_at is not None:
                return None
            return self._abandon(session, row, reason, at)

    def close_abandoned_of_camera(
        self, session: Session, camera_id: str, *, reason: str
    ) -> builtins.list[Incident]:
        """:meth:`close_abandoned` every open incident of a camera, inside the caller's
        transaction (a cluster takeover closes them in the transaction that takes the lease).

        Takes the chain lock in ``session`` (callers that lock other rows should take it first,
        with :func:`safewatch.storage.hash_chain.lock_head`, so the lock order is the writers').
        Not fenced: the caller is taking the camera over.

        Returns:
            The incidents closed, oldest first.
        """
        hash_chain.lock_head(session)
        query = (
            select(IncidentRow)
            .where(IncidentRow.camera_id == camera_id, IncidentRow.ended_at.is_(None))
            .order_by(IncidentRow.started_at, IncidentRow.id)
        )
        return [self._abandon(session, row, reason, None) for row in session.scalars(query)]

    def _abandon(
        self, session: Session, row: IncidentRow, reason: str, at: float | None
    ) -> Incident:
        held = row.held_until if at is None else at
        row.ended_at = max(row.started_at, row.started_at if held is None else held)
        row.duration = row.ended_at - row.started_at
        row.updated_at = float(self._clock())
        detail = {**_closed(row, reason), "abandoned": True}
        entry = self._chain_record(session, row, EntryKind.INCIDENT_CLOSED, row.updated_at, detail)
        self._changed(session, row, entry)
        return _to_domain(row)

    def open_ids(self) -> builtins.list[tuple[str, str]]:
        """``(incident id, camera id)`` of every incident without an end, oldest first.

        Raises:
            StorageError: The database cannot be read.
        """
        query = (
            select(IncidentRow.id, IncidentRow.camera_id)
            .where(IncidentRow.ended_at.is_(None))
            .order_by(IncidentRow.started_at, IncidentRow.id)
        )
        with self._session("list open incidents") as session:
            return [(row.id, row.camera_id) for row in session.execute(query)]

    def spans(self, where: IncidentFilter) -> builtins.list[tuple[str, float, float | None]]:
        """``(camera id, start, end)`` of **every** incident matching ``where`` (``end`` ``None``
        while its episode runs), oldest first.

        Unpaged on purpose, for callers that must see all of them (recording retention spares
        the footage of every unreviewed incident; a page of the newest would let the oldest
        lose it). Three columns per row, so even many thousands stay cheap.

        Raises:
            StorageError: The database cannot be read.
        """
        query = (
            select(IncidentRow.camera_id, IncidentRow.started_at, IncidentRow.ended_at)
            .where(*where.clauses())
            .order_by(IncidentRow.started_at, IncidentRow.id)
        )
        with self._session("list incident spans") as session:
            return [(row[0], row[1], row[2]) for row in session.execute(query)]

    @staticmethod
    def _chain_record(
        session: Session, row: IncidentRow, kind: EntryKind, at: float, detail: Mapping[str, Any]
    ) -> ChainEntry:
        return hash_chain.append(
            session,
            at=at,
            kind=kind,
            incident_id=row.id,
            digest=hash_chain.record_digest(row),
            detail=detail,
        )

    def set_status(
        self,
        incident_id: str,
        status: IncidentStatus,
        *,
        actor: str | None = None,
        note: str | None = None,
        check: StatusCheck | None = None,
    ) -> Incident:
        """Record an operator's decision (acknowledged, resolved, false positive) in the chain.

        Args:
            incident_id: The incident.
            status: The new status.
            actor: Who decided (user name), kept in the timeline.
            note: Why, kept in the timeline.
            check: Validates ``(current, new)`` inside the transaction, so two operators acting at
                once cannot both pass a check against a stale status
                (:func:`safewatch.incidents.lifecycle.check_transition`).

        Raises:
            NotFound: No such incident.
            StorageError: The database cannot be written.
        """
        with self._chained(f"update incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise NotFound("incident", incident_id)
            current = IncidentStatus(row.status)
            if check is not None:
                check(current, status)
            row.status = str(status)
            row.updated_at = float(self._clock())
            detail = {"from": str(current), "to": str(status), "actor": actor, "note": note}
            entry = self._chain_record(
                session, row, EntryKind.STATUS_CHANGED, row.updated_at, detail
            )
            self._changed(session, row, entry)
            return _to_domain(row)

    def add_note(self, incident_id: str, text: str, *, actor: str | None = None) -> ChainEntry:
        """Add an operator's note to the incident's timeline.

        Raises:
            NotFound: No such incident.
            ValueError: The note is empty.
            StorageError: The database cannot be written.
        """
        check_note(text)
        return self._append_for(incident_id, EntryKind.NOTE, {"text": text, "actor": actor})

    def record_event(
        self, incident_id: str, kind: str, detail: Mapping[str, Any] | None = None
    ) -> ChainEntry:
        """Add another stage's event (e.g. ``alert.sent``) to the incident's timeline and chain.

        Args:
            incident_id: The incident.
            kind: Dotted lower-case name, ``area.event``; the kinds safewatch records itself
                (``incident.*``, ``evidence.*``) are refused.
            detail: Small JSON-able object (channel, recipient, attempt, error, ...).

        Raises:
            NotFound: No such incident.
            ValueError: ``kind`` is malformed or reserved, or ``detail`` is not JSON.
            StorageError: The database cannot be written.
        """
        if not _EVENT_KIND.match(kind) or kind in _RESERVED or kind.startswith("evidence."):
            raise ValueError(
                f"event kind must look like 'alert.sent' and not be a kind safewatch records "
                f"itself; got {kind!r}"
            )
        return self._append_for(incident_id, kind, dict(detail or {}))

    def _append_for(self, incident_id: str, kind: str, detail: Mapping[str, Any]) -> ChainEntry:
        try:
            hash_chain.canonical_json(dict(detail))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"event detail is not JSON: {exc}") from exc
        with self._chained(f"record {kind} for incident {incident_id}") as session:
            if session.get(IncidentRow, incident_id) is None:
                raise NotFound("incident", incident_id)
            return hash_chain.append(
                session, at=self._clock(), kind=kind, incident_id=incident_id, detail=detail
            )

    def evidence_written(
        self, incident_id: str, key: str, sha256: str, size: int, *, camera_id: str
    ) -> None:
        """Chain an evidence file (the :class:`safewatch.incidents.evidence.EvidenceLog` hook).

        The incident may not be stored yet (its still is written first): then the fence checks
        ``camera_id`` as the writer names it (the key's first folder is only a sanitised copy
        of it, which may name another camera or none).

        Raises:
            StorageError: The database cannot be written.
        """
        with self._chained(f"record evidence {key}") as session:
            if self.fence is not None:
                row = session.get(IncidentRow, incident_id)
                self._fenced(session, camera_id if row is None else row.camera_id)
            hash_chain.append(
                session,
                at=self._clock(),
                kind=EntryKind.EVIDENCE_WRITTEN,
                incident_id=incident_id,
                subject=key,
                digest=sha256,
                detail={"size": int(size)},
            )

    def evidence_removed(
        self, incident_id: str | None, key: str, *, reason: str, detail: Mapping[str, Any]
    ) -> ChainEntry:
        """Chain the removal of an evidence file (retention), before the file is deleted.

        In the same transaction the incident stops pointing at the file (``snapshot`` or
        ``clip`` set to none, chained as ``incident.updated`` like the :meth:`attach_evidence`
        that set it): otherwise the API went on saying ``has_still: true`` and the pages asked
        for a still that answered 404. The record digest the verifier compares the row with is
        the one that entry vouches for.

        Raises:
            StorageError: The database cannot be written.
        """
        now = float(self._clock())

        def forget(row: IncidentRow) -> None:
            if row.snapshot == key:
                row.snapshot = None
                row.updated_at = now
            if row.clip == key:
                row.clip = None
                row.updated_at = now

        with self._chained(f"record removal of evidence {key}") as session:
            entry = hash_chain.append(
                session,
                at=now,
                kind=EntryKind.EVIDENCE_REMOVED,
                incident_id=incident_id,
                subject=key,
                detail={"reason": reason, **detail},
            )
            row = session.get(IncidentRow, incident_id) if incident_id is not None else None
            if row is not None:
                self._change(session, row, now, forget)
            return entry

    # -- reads ------------------------------------------------------------------------------

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

    def changes_after(
        self, after_seq: int, *, limit: int = 1000
    ) -> tuple[builtins.list[StoredChange], int]:
        """Incident changes chained after ``after_seq``, oldest first, with the current record.

        The bus's readers back-fill from here when they missed changes (a sequence gap, Redis
        restarted or trimmed): the chain is the record, the bus only a fast path. The incident is
        the row as it is now (the chain keeps a digest of each past state, not the state), so a
        back-filled ``opened`` may already show the incident's later end.

        Returns:
            The changes (``incident.opened``, ``updated``, ``closed``, ``status``) among the next
            ``limit`` entries of any kind, and the highest ``seq`` looked at (``after_seq`` when
            the chain ends there): call again from it until the list comes back short.

        Raises:
            StorageError: The database cannot be read.
        """
        kinds = [str(k) for k in _PUBLISHED_KINDS]
        query = (
            select(ChainEntryRow.seq)
            .where(ChainEntryRow.seq > after_seq)
            .order_by(ChainEntryRow.seq)
            .limit(limit)
        )
        with self._session("read incident changes") as session:
            seqs = [int(seq) for seq in session.scalars(query)]
            if not seqs:
                return [], after_seq
            rows = session.execute(
                select(ChainEntryRow, IncidentRow)
                .join(IncidentRow, IncidentRow.id == ChainEntryRow.incident_id)
                .where(ChainEntryRow.seq.between(seqs[0], seqs[-1]))
                .where(ChainEntryRow.kind.in_(kinds))
                .order_by(ChainEntryRow.seq)
            ).all()
            changes = [
                StoredChange(_to_domain(row), EntryKind(entry.kind), hash_chain.to_entry(entry))
                for entry, row in rows
            ]
            return changes, seqs[-1]

    def timeline(self, incident_id: str) -> builtins.list[ChainEntry]:
        """What happened to the incident, oldest first: its chain entries.

        Raises:
            NotFound: No such incident and nothing chained for it.
            StorageError: The database cannot be read.
        """
        query = (
            select(ChainEntryRow)
            .where(ChainEntryRow.incident_id == incident_id)
            .order_by(ChainEntryRow.seq)
        )
        with self._session(f"read the timeline of incident {incident_id}") as session:
            entries = [hash_chain.to_entry(row) for row in session.scalars(query)]
            if not entries and session.get(IncidentRow, incident_id) is None:
                raise NotFound("incident", incident_id)
            return entries

    def list(
        self,
        *,
        camera: OneOrMany = None,
        rule: OneOrMany = None,
        kind: OneOrMany = None,
        severity: OneOrMany = None,
        status: OneOrMany = None,
        since: float | None = None,
        until: float | None = None,
        ended_since: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Incident]:
        """Incidents matching every given filter, newest first (see :class:`IncidentFilter`).

        Args:
            camera: Only this camera (or these cameras).
            rule: Only this rule id (or these).
            kind: Only this rule kind (or these).
            severity: Only this severity (or these).
            status: Only this operator status (or these).
            since: Only incidents that started at or after this time (epoch seconds).
            until: Only incidents that started before this time (epoch seconds).
            ended_since: Only incidents that ended at or after this time, or are still open.
            limit: Page size, 0 to 10,000.
            offset: Rows to skip (for pagination; order is stable: start time, then id).

        Raises:
            ValueError: ``limit`` or ``offset`` out of range.
            StorageError: The database cannot be read.
        """
        where = IncidentFilter(camera, rule, kind, severity, status, since, until, ended_since)
        return self.page(where, limit=limit, offset=offset, count=False).items

    def page(
        self,
        where: IncidentFilter | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        count: bool = True,
    ) -> Page:
        """One page of the incidents matching ``where``, newest first (:meth:`IncidentReads.page`).

        Raises:
            ValueError: ``limit`` or ``offset`` out of range.
            StorageError: The database cannot be read.
        """
        with self._session("list incidents") as session:
            return IncidentReads(session).page(where, limit=limit, offset=offset, count=count)

    def aggregate(
        self,
        by: Sequence[Dimension],
        where: IncidentFilter | None = None,
        *,
        tz: str = "UTC",
    ) -> builtins.list[Bucket]:
        """Count incidents per group, in SQL (:meth:`IncidentReads.aggregate`).

        Raises:
            ValueError: Unknown dimension or time zone.
            StorageError: The database cannot be read.
        """
        with self._session("count incidents") as session:
            return IncidentReads(session).aggregate(by, where, tz=tz)

    @contextmanager
    def snapshot(self, action: str) -> Iterator[IncidentReads]:
        """Reads that all see one state of the table (:func:`safewatch.storage.engine.snapshot`).

        For a view built from several queries (a report's total, charts and table) that must
        agree although cameras keep storing incidents meanwhile.

        Raises:
            StorageError: The database cannot be read.
        """
        with snapshot(self._engine, action) as session:
            yield IncidentReads(session)


class IncidentReads:
    """The incident queries, over one session: the repository's own short transactions, or one
    :meth:`IncidentRepository.snapshot` shared by several reads."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def page(
        self,
        where: IncidentFilter | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        count: bool = True,
    ) -> Page:
        """One page of the incidents matching ``where``, newest first, with the total count.

        Args:
            where: The filter; ``None`` for every incident.
            limit: Page size, 0 to 10,000.
            offset: Incidents to skip.
            count: Count the matches (one more query); ``False`` leaves ``total`` at -1.

        Raises:
            ValueError: ``limit`` or ``offset`` out of range.
            StorageError: The database cannot be read.
        """
        check_paging(limit, offset)
        clauses = (where or IncidentFilter()).clauses()
        query = (
            select(IncidentRow)
            .where(*clauses)
            .order_by(IncidentRow.started_at.desc(), IncidentRow.id)
            .limit(limit)
            .offset(offset)
        )
        items = [_to_domain(row) for row in self._session.scalars(query)]
        total = -1
        if count:
            counted = select(func.count()).select_from(IncidentRow).where(*clauses)
            total = int(self._session.scalar(counted) or 0)
        return Page(items, total, limit, offset)

    def aggregate(
        self,
        by: Sequence[Dimension],
        where: IncidentFilter | None = None,
        *,
        tz: str = "UTC",
    ) -> builtins.list[Bucket]:
        """Count incidents per group, in SQL (see :mod:`safewatch.storage.incident_queries`).

        Args:
            by: Dimensions, e.g. ``["day"]``, ``["camera"]``, ``["hour", "rule"]``; at most one
                of ``hour`` and ``day``.
            where: Which incidents; ``None`` for all.
            tz: IANA time zone whose hours and days are meant (the site's).

        Returns:
            Non-empty groups, sorted by start time, then by the other keys.

        Raises:
            ValueError: Unknown dimension or time zone.
            StorageError: The database cannot be read.
        """
        zone_info = zone(tz)
        dialect = self._session.get_bind().dialect.name
        statement = aggregate_statement(by, where or IncidentFilter(), dialect)
        rows = self._session.execute(statement).all()
        return fold_buckets(rows, by, zone_info)


def _opened(row: IncidentRow) -> dict[str, Any]:
    return {
        "started_at": row.started_at,
        "camera_id": row.camera_id,
        "rule_id": row.rule_id,
        "peak_confidence": row.peak_confidence,
    }


def _closed(row: IncidentRow, reason: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "ended_at": row.ended_at,
        "duration": row.duration,
        "peak_confidence": row.peak_confidence,
    }
    if reason is not None:
        detail["reason"] = reason
    return detail
