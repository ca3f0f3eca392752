"""The cluster's audit and backtest job queue (see :mod:`safewatch.cluster.jobs`).

Under ``serve --cluster`` a job submitted to any API node is a row here, claimed by an analyzer
with a free job slot (``FOR UPDATE SKIP LOCKED``), heartbeated while it runs and claimed again when
its claimer's heartbeat expired. Its inputs and results are blobs in the site's evidence store
(``_jobs/<id>/...``), so every node reaches them. Times are the database's clock, as for the
camera leases. Registered on :class:`safewatch.storage.tables.Base` by :mod:`safewatch.storage`;
the migrations are ``0010`` and ``0011`` (``lost``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Double, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from safewatch.storage.tables import Base

__all__ = ["ClusterJobRow"]


class ClusterJobRow(Base):
    """One audit or backtest job of a cluster.

    ``state`` is ``receiving`` (the API node is still storing its inputs: nobody claims it),
    ``queued``, ``running`` (``claimed_by`` heartbeats it; ``attempt`` counts its claims and
    fences a stale claimer's writes; ``lost`` counts the claims that ended in a heartbeat expiry),
    ``done``, ``failed`` or ``cancelled``. A ``receiving`` row's ``heartbeat_at`` is the last
    sign of life of the API node storing its inputs (database clock). ``spec`` holds what
    the run needs besides the row: where the video is (a blob key or a server path) and, for a
    backtest, the proposed rule files' keys. ``result_prefix`` is where the finished attempt's
    output went.
    """

    __tablename__ = "cluster_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    camera: Mapped[str] = mapped_column(String(128))
    video: Mapped[str] = mapped_column(String(256))
    submitted_by: Mapped[str] = mapped_column(String(128))
    submitted_at: Mapped[float] = mapped_column(Double)
    state: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    frames_done: Mapped[int] = mapped_column(BigInteger)
    frames_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    message: Mapped[str] = mapped_column(String(2048))
    incidents: Mapped[int] = mapped_column(Integer)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    result_prefix: Mapped[str | None] = mapped_column(String(256), nullable=True)
    lost: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (Index("ix_cluster_jobs_state", "state", "submitted_at"),)
