"""SQLAlchemy table definitions (typed ORM, SQLAlchemy 2 style).

Times are stored as epoch seconds (UTC) in double-precision columns, the same representation the
pipeline's frame clock and :class:`safewatch.domain.Incident` use: no time-zone conversion on the
way in or out, millisecond precision kept exactly, and range filters are plain comparisons on every
engine. The schema is owned by the Alembic migrations in :mod:`safewatch.storage.migrations`: a
change here needs a new migration there (``tests/unit/storage/test_storage_migrations.py`` fails
when the two disagree).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Double, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "ChainEntryRow", "ChainHeadRow", "IncidentRow"]


class Base(DeclarativeBase):
    """Declarative base of every safewatch table; ``Base.metadata`` is the whole schema."""


class IncidentRow(Base):
    """One incident, keyed by the domain's derived :func:`safewatch.domain.incident_id`.

    The derived key is what makes re-delivery harmless: storing the same episode twice hits the
    same primary key and becomes an update.
    """

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(128))
    rule_id: Mapped[str] = mapped_column(String(128))
    rule_kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    track_ids: Mapped[list[int]] = mapped_column(JSON)
    started_at: Mapped[float] = mapped_column(Double)
    ended_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    duration: Mapped[float | None] = mapped_column(Double, nullable=True)
    peak_confidence: Mapped[float] = mapped_column(Double)
    message: Mapped[str] = mapped_column(Text)
    snapshot: Mapped[str | None] = mapped_column(String(512), nullable=True)
    clip: Mapped[str | None] = mapped_column(String(512), nullable=True)
    zone_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    held_until: Mapped[float | None] = mapped_column(Double, nullable=True)
    """Frame time an open incident was last known to hold (see ``IncidentRepository.hold``)."""

    __table_args__ = (
        Index("ix_incidents_camera_id", "camera_id"),
        Index("ix_incidents_rule_id", "rule_id"),
        Index("ix_incidents_rule_kind", "rule_kind"),
        Index("ix_incidents_severity", "severity"),
        Index("ix_incidents_started_at", "started_at"),
        Index("ix_incidents_status", "status"),
    )


class ChainEntryRow(Base):
    """One link of the append-only tamper-evidence chain (see :mod:`safewatch.storage.hash_chain`).

    ``hash`` is SHA-256 of ``prev_hash`` and the canonical JSON of the other columns, so editing,
    deleting or reordering any entry breaks every link after it. The entries of one incident are
    also its timeline (episode opened, updates, closed, operator actions, notes, evidence, alerts).
    No foreign key to ``incidents`` on purpose: the chain must outlive a deleted incident to tell
    that it was deleted.
    """

    __tablename__ = "chain_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Double)
    kind: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(512), nullable=True)
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_chain_entries_incident_id", "incident_id", "seq"),
        Index("ix_chain_entries_subject", "subject", "seq"),
        # A claim after a graceful handover reads the entries written since the release
        # (cluster.takeover.handed_over) under the chain lock: a range, not the whole chain.
        Index("ix_chain_entries_at", "at"),
    )


class ChainHeadRow(Base):
    """The chain's newest link, in a single row (``id`` 1).

    Every writer updates this row first, which serialises appends on every engine (a row lock in
    PostgreSQL, the write lock in SQLite); ``safewatch verify`` compares it with the last entry to
    notice entries cut off the end.
    """

    __tablename__ = "chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
