"""The append-only hash chain that makes incident records and evidence tamper-evident.

Each entry is ``hash = sha256(prev_hash + canonical JSON of (seq, at, kind, incident id, subject,
digest, detail))``. ``digest`` is what the entry vouches for: the SHA-256 of the incident record's
canonical JSON (for incident entries) or of an evidence file's bytes (for evidence entries). So:

* editing an incident row or an evidence file no longer matches the newest digest chained for it;
* editing, deleting or reordering entries breaks the links from that entry on;
* cutting entries off the end no longer matches the ``chain_head`` row.

Appends happen inside the same transaction as the change they record, after :func:`lock_head`
has taken the head row: that serialises writers on SQLite and PostgreSQL alike, so sequence numbers
are gap-free and every entry links to the one before. The hashing is a stored format: entries
written today must verify in ten years, so :data:`RECORD_FIELDS` and :func:`entry_hash` never
change; a new format would get a new ``v`` in the record and a new function beside these.

The chain detects tampering by someone who edits the database or the evidence folder; someone who
can also rewrite the whole chain consistently is caught only by comparing the head hash with a copy
kept elsewhere (``safewatch verify`` prints it; ``--expect-head`` checks it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Engine, Table, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from safewatch.advice import command_for_site
from safewatch.errors import StorageError
from safewatch.storage.tables import ChainEntryRow, ChainHeadRow

__all__ = [
    "GENESIS",
    "HEAD_ID",
    "RECORD_FIELDS",
    "ChainEntry",
    "EntryKind",
    "append",
    "canonical_json",
    "entry_hash",
    "incident_record",
    "iter_entries",
    "lock_head",
    "read_head",
    "record_digest",
    "to_entry",
]

GENESIS = "0" * 64
"""``prev_hash`` of the first entry."""

HEAD_ID = 1
"""Primary key of the single ``chain_head`` row."""

RECORD_FIELDS: tuple[str, ...] = (
    "id",
    "camera_id",
    "rule_id",
    "rule_kind",
    "severity",
    "track_ids",
    "started_at",
    "ended_at",
    "duration",
    "peak_confidence",
    "message",
    "snapshot",
    "clip",
    "zone_id",
    "status",
    "created_at",
)
"""Incident columns covered by the record digest (format v1). ``updated_at`` is left out: it is
bookkeeping that a harmless re-delivery touches."""

_FLOATS = frozenset({"started_at", "ended_at", "duration", "peak_confidence", "created_at"})


class EntryKind(StrEnum):
    """What a chain entry records. Other kinds (``alert.sent``, ...) come from
    :meth:`safewatch.storage.IncidentRepository.record_event`."""

    INCIDENT_OPENED = "incident.opened"
    INCIDENT_UPDATED = "incident.updated"
    INCIDENT_CLOSED = "incident.closed"
    STATUS_CHANGED = "incident.status"
    NOTE = "incident.note"
    IMPORTED = "incident.imported"
    EVIDENCE_WRITTEN = "evidence.written"
    EVIDENCE_REMOVED = "evidence.removed"


RECORD_KINDS = frozenset(
    {
        EntryKind.INCIDENT_OPENED,
        EntryKind.INCIDENT_UPDATED,
        EntryKind.INCIDENT_CLOSED,
        EntryKind.STATUS_CHANGED,
        EntryKind.IMPORTED,
    }
)
"""Kinds whose ``digest`` is the incident record's digest after the change."""


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One entry as stored.

    Attributes:
        seq: Position, from 1, without gaps.
        at: Wall-clock seconds when it was recorded.
        kind: An :class:`EntryKind` value or a custom ``area.event`` kind.
        incident_id: The incident it belongs to, if any.
        subject: The evidence key, for evidence entries.
        digest: SHA-256 vouched for (record or file), if any.
        detail: Small JSON object (who, from/to status, note text, sizes, ...).
        prev_hash: Hash of the entry before.
        hash: This entry's hash.
    """

    seq: int
    at: float
    kind: str
    incident_id: str | None
    subject: str | None
    digest: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 text, no NaN (it is not JSON)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def incident_record(row: Any) -> dict[str, Any]:
    """The v1 record of an incident: :data:`RECORD_FIELDS` from an ORM row or a mapping.

    Values are normalised (floats as floats, track ids as ints) so the digest of what was
    written equals the digest of what is read back, on every engine.
    """
    record: dict[str, Any] = {"v": 1}
    for name in RECORD_FIELDS:
        value: Any = row[name] if isinstance(row, Mapping) else getattr(row, name)
        if name in _FLOATS and value is not None:
            value = float(value)
        elif name == "track_ids":
            value = [int(t) for t in value]
        record[name] = value
    return record


def record_digest(row: Any) -> str:
    """SHA-256 hex of the canonical JSON of :func:`incident_record`."""
    return hashlib.sha256(canonical_json(incident_record(row)).encode()).hexdigest()


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    at: float,
    kind: str,
    incident_id: str | None,
    subject: str | None,
    digest: str | None,
    detail: str,
) -> str:
    """The hash of one entry; ``detail`` is the stored canonical JSON text."""
    body = canonical_json(
        {
            "seq": seq,
            "at": float(at),
            "kind": kind,
            "incident_id": incident_id,
            "subject": subject,
            "digest": digest,
            "detail": detail,
        }
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


_ENTRIES = cast(Table, ChainEntryRow.__table__)
_HEAD = cast(Table, ChainHeadRow.__table__)

_HEAD_KEY = "safewatch.chain_head"
"""Where :func:`lock_head` leaves ``(seq, hash)`` of the head for this transaction's appends."""


def lock_head(session: Session) -> None:
    """Take the chain's write lock for the rest of the transaction.

    A no-op update of the head row that returns it: PostgreSQL locks the row until commit, SQLite
    takes the database write lock (waiting up to the busy timeout). Call it first in a write
    transaction, before reading anything the append depends on.

    Raises:
        StorageError: The head row is missing (the database was not migrated, or was tampered
            with).
    """
    statement = (
        update(_HEAD)
        .where(ChainHeadRow.id == HEAD_ID)
        .values(seq=ChainHeadRow.seq)
        .returning(ChainHeadRow.seq, ChainHeadRow.hash)
    )
    head = session.execute(statement).first()
    if head is None:
        raise StorageError(
            "the tamper-evidence chain has no head row: run "
            f"`{command_for_site('db upgrade', None)}`, then "
            f"`{command_for_site('verify', None)}` (SITE: your site file)"
        )
    session.info[_HEAD_KEY] = (int(head.seq), str(head.hash))


def append(
    session: Session,
    *,
    at: float,
    kind: str,
    incident_id: str | None = None,
    subject: str | None = None,
    digest: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> ChainEntry:
    """Add one entry after the head; the caller has called :func:`lock_head` in this transaction.

    Core statements (an insert and the head update), no ORM objects: this runs on every incident
    write.

    Returns:
        The entry as stored.
    """
    head = session.info.get(_HEAD_KEY)
    if head is None:
        raise RuntimeError("hash_chain.append needs lock_head first, in the same transaction")
    prev_seq, prev_hash = head
    detail_text = canonical_json(dict(detail or {}))
    seq = prev_seq + 1
    at = float(at)
    digest_hash = entry_hash(
        prev_hash,
        seq=seq,
        at=at,
        kind=kind,
        incident_id=incident_id,
        subject=subject,
        digest=digest,
        detail=detail_text,
    )
    session.execute(
        insert(_ENTRIES).values(
            seq=seq,
            at=at,
            kind=kind,
            incident_id=incident_id,
            subject=subject,
            digest=digest,
            detail=detail_text,
            prev_hash=prev_hash,
            hash=digest_hash,
        )
    )
    session.execute(
        update(_HEAD).where(ChainHeadRow.id == HEAD_ID).values(seq=seq, hash=digest_hash)
    )
    session.info[_HEAD_KEY] = (seq, digest_hash)
    return ChainEntry(
        seq, at, kind, incident_id, subject, digest, json.loads(detail_text), prev_hash, digest_hash
    )


def to_entry(row: Any) -> ChainEntry:
    """A stored row (ORM or Core) as a :class:`ChainEntry`; bad detail JSON reads as ``raw``."""
    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = {"raw": row.detail}
    if not isinstance(detail, dict):
        detail = {"raw": row.detail}
    return ChainEntry(
        row.seq,
        row.at,
        row.kind,
        row.incident_id,
        row.subject,
        row.digest,
        detail,
        row.prev_hash,
        row.hash,
    )


def iter_entries(engine: Engine, *, batch: int = 5000) -> Iterator[tuple[Any, ChainEntry]]:
    """Every entry in ``seq`` order, read in batches (the chain can be long): the raw row (with
    the stored ``detail`` text, to recompute hashes) and the parsed entry.

    Raises:
        StorageError: The chain cannot be read.
    """
    last: int | None = None
    while True:
        query = select(_ENTRIES).order_by(_ENTRIES.c.seq).limit(batch)
        if last is not None:
            query = query.where(_ENTRIES.c.seq > last)
        try:
            with engine.connect() as connection:
                rows = connection.execute(query).all()
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot read the tamper-evidence chain: {exc}") from exc
        if not rows:
            return
        for row in rows:
            yield row, to_entry(row)
        last = rows[-1].seq


def read_head(engine: Engine) -> tuple[int, str] | None:
    """``(seq, hash)`` of the head row, or ``None`` when it is missing."""
    with Session(engine) as session:
        head = session.get(ChainHeadRow, HEAD_ID)
        return None if head is None else (head.seq, head.hash)
