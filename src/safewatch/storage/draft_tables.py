"""Rule drafts awaiting their operator's confirmation (see :mod:`safewatch.api.routes.rule_drafts`).

A draft lives here, in the site database, rather than in the API process that made it: behind a
load balancer (``serve --cluster``, several API nodes) the confirmation may reach another node
than the draft, and a restart of the API process must not lose the drafts in flight. Registered on
:class:`safewatch.storage.tables.Base` by :mod:`safewatch.storage`; the migration is ``0014``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Double, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from safewatch.storage.tables import Base

__all__ = ["RuleDraftRow"]


class RuleDraftRow(Base):
    """One draft: its random id (the only thing a confirmation names), who made it, when (epoch
    seconds, UTC) and the draft itself (:meth:`safewatch.llm.DraftResult.to_json`)."""

    __tablename__ = "rule_drafts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Double)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_rule_drafts_created_at", "created_at"),)
