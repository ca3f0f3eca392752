"""The alert outbox table (see :mod:`safewatch.alerts.outbox`).

One row per delivery: an alert of one route to one channel. Rows are written in the same
transaction as the incident change they announce, so a stored incident always has its alerts queued
and an alert never announces an incident that was rolled back. The dispatcher claims due rows,
sends them, and moves them to ``delivered``, back to ``pending`` with a later ``due_at`` (retry),
or to ``dead``; nothing is deleted, so the table is also the delivery log. Kept in its own module
(registered on :class:`safewatch.storage.tables.Base` by :mod:`safewatch.storage`) because the
alerts own it; the migration is ``0005``.
"""

from __future__ import annotations

from sqlalchemy import Double, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from safewatch.storage.tables import Base

__all__ = ["AlertOutboxRow"]


class AlertOutboxRow(Base):
    """One alert to one channel, and where its delivery stands.

    ``status`` is ``pending`` (due at ``due_at``), ``sending`` (claimed by ``claimed_by`` until
    ``claimed_until``), ``delivered``, ``dead`` (gave up; ``last_error`` says why), ``held``
    (waiting for its route's digest at ``due_at``), ``digested`` (sent inside the digest row
    ``digest_id``) or ``cancelled`` (an escalation whose incident was acknowledged in time).
    """

    __tablename__ = "alert_outbox"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    route_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[float] = mapped_column(Double)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[float | None] = mapped_column(Double, nullable=True)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    delivered_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    payload: Mapped[str] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    digest_id: Mapped[str | None] = mapped_column(String(100), nullable=True)

    __table_args__ = (
        Index("ix_alert_outbox_status_due", "status", "due_at"),
        Index("ix_alert_outbox_incident", "incident_id"),
        Index("ix_alert_outbox_route", "route_id", "channel", "created_at"),
    )
