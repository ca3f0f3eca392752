"""SQLAlchemy table definitions (typed ORM, SQLAlchemy 2 style).

Times are stored as epoch seconds (UTC) in double-precision columns, the same representation the
pipeline's frame clock and :class:`safewatch.domain.Incident` use: no time-zone conversion on the
way in or out, millisecond precision kept exactly, and range filters are plain comparisons on every
engine. The schema is created with ``metadata.create_all`` at start-up for now; Alembic migrations
replace that in a later issue, before the first release that changes a table.
"""

from __future__ import annotations

from sqlalchemy import JSON, Double, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "IncidentRow"]


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

    __table_args__ = (
        Index("ix_incidents_camera_id", "camera_id"),
        Index("ix_incidents_rule_id", "rule_id"),
        Index("ix_incidents_started_at", "started_at"),
        Index("ix_incidents_status", "status"),
    )
