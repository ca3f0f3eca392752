"""The cluster's tables (see :mod:`safewatch.cluster`): analyzers, camera leases, coverage gaps.

Every time here is epoch seconds from the DATABASE's clock (``clock_timestamp()``), never an
analyzer's: analyzers' clocks drift and a lease must mean the same instant to all of them (the
Kubernetes ``Lease`` rule). Cluster mode is PostgreSQL only, but the tables are plain so the
schema (and its migration test) stays the same on every engine. Registered on
:class:`safewatch.storage.tables.Base` by :mod:`safewatch.storage`; the migration is ``0008``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Double, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from safewatch.storage.tables import Base

__all__ = ["CameraLeaseRow", "ClusterAnalyzerRow", "CoverageGapRow"]


class ClusterAnalyzerRow(Base):
    """One analyzer process and its last heartbeat.

    ``state`` is ``active``, ``draining`` (handing its cameras over, placement leaves it out),
    ``held_off`` (its database link keeps dropping, placement leaves it out too; a plain string,
    no migration) or ``gone`` (drained). An ``active`` row whose heartbeat is older than a lease
    is dead.
    ``video_url`` is the base URL where API nodes reach its live video (migration ``0009``;
    ``None``: it serves none to other nodes, see :mod:`safewatch.api.cluster_video`).
    ``instance`` is the token of the process writing the row and ``site_digest`` a hash of the
    cameras it was given (migration ``0012``, :mod:`safewatch.cluster.membership`).
    """

    __tablename__ = "cluster_analyzers"

    analyzer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    capacity: Mapped[int] = mapped_column(Integer)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    heartbeat_at: Mapped[float] = mapped_column(Double)
    started_at: Mapped[float] = mapped_column(Double)
    state: Mapped[str] = mapped_column(String(16))
    video_url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    instance: Mapped[str | None] = mapped_column(String(64), nullable=True)
    site_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CameraLeaseRow(Base):
    """Who analyses a camera, until when, and at which epoch.

    ``owner`` is ``None`` when the lease was released (``released_by`` and ``released_at`` say who
    let it go and when); ``epoch`` grows by one every time the camera changes hands, and fences
    the incident writes of a stale owner (:mod:`safewatch.cluster.fencing`).
    """

    __tablename__ = "camera_leases"

    camera_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Double)
    acquired_at: Mapped[float] = mapped_column(Double)
    renewed_at: Mapped[float] = mapped_column(Double)
    released_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(128), nullable=True)

    __table_args__ = (Index("ix_camera_leases_owner", "owner"),)


class CoverageGapRow(Base):
    """A stretch of time a camera was analysed by nobody (a takeover or a handover).

    ``reason`` is ``analyzer_lost`` (the owner stopped renewing; the new owner took the expired
    lease) or ``handover`` (the owner released it: rebalance, drain, site change).
    """

    __tablename__ = "coverage_gaps"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[float] = mapped_column(Double)
    ended_at: Mapped[float] = mapped_column(Double)
    reason: Mapped[str] = mapped_column(String(32))
    previous_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    new_owner: Mapped[str] = mapped_column(String(128))

    __table_args__ = (Index("ix_coverage_gaps_camera", "camera_id", "started_at"),)
