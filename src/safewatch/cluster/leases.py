"""The SQL of membership: heartbeat, read the cluster, renew, claim and release leases.

Every time is the database's (``clock_timestamp()``, epoch seconds), so analyzers with drifting
clocks agree on when a lease expires. Each function runs inside the caller's transaction and
does one thing; :mod:`safewatch.cluster.membership` decides when to call which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Double, and_, cast, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from safewatch.cluster.placement import Analyzer
from safewatch.storage.cluster_tables import CameraLeaseRow, ClusterAnalyzerRow, CoverageGapRow

__all__ = [
    "Claimable",
    "LeaseView",
    "OwnerView",
    "add_cameras",
    "claim",
    "db_now",
    "heartbeat",
    "live_analyzers",
    "owner_of",
    "read_leases",
    "release",
    "renew",
    "set_state",
    "site_digests",
]

ACTIVE, DRAINING, GONE = "active", "draining", "gone"
HELD_OFF = "held_off"
"""A live analyzer holding off placement (:mod:`safewatch.cluster.hold_off`): left out like a
``draining`` one, but told apart, so analyzers held off together agree which of them waives."""


def db_now() -> ColumnElement[float]:
    """The database's clock now, epoch seconds (``clock_timestamp()``: not frozen per transaction
    like ``now()``, so a long transaction does not see time stand still)."""
    return cast(func.extract("epoch", func.clock_timestamp()), Double)


@dataclass(frozen=True)
class LeaseView:
    """A camera's lease as read: ``owner`` is ``None`` when released or expired."""

    camera_id: str
    owner: str | None
    epoch: int


def heartbeat(
    session: Session,
    analyzer_id: str,
    capacity: int,
    labels: Mapping[str, str],
    state: str = ACTIVE,
    video_url: str | None = None,
    *,
    instance: str,
    site_digest: str | None = None,
    within: float,
) -> bool:
    """Insert or refresh this analyzer's row in ``state`` (``active``, also for a drained
    analyzer coming back; ``draining`` while it hands its cameras over; ``held_off``), advertising
    ``video_url`` (where API nodes reach its live video; ``None``: nowhere) and ``site_digest``.

    The row is this process's (``instance``) unless another process wrote it less than
    ``within`` seconds ago and has not left (``gone``): then nothing is written.

    Returns:
        Whether the row was written: ``False`` means another live process uses this analyzer id.
    """
    now = db_now()
    row = ClusterAnalyzerRow
    statement = insert(row).values(
        analyzer_id=analyzer_id,
        capacity=capacity,
        labels=dict(labels),
        heartbeat_at=now,
        started_at=now,
        state=state,
        video_url=video_url,
        instance=instance,
        site_digest=site_digest,
    )
    upsert = statement.on_conflict_do_update(
        index_elements=[row.analyzer_id],
        set_={
            "capacity": statement.excluded.capacity,
            "labels": statement.excluded.labels,
            "heartbeat_at": statement.excluded.heartbeat_at,
            "state": statement.excluded.state,
            "video_url": statement.excluded.video_url,
            "instance": statement.excluded.instance,
            "site_digest": statement.excluded.site_digest,
        },
        where=or_(
            row.instance == statement.excluded.instance,
            row.instance.is_(None),  # written before migration 0012
            row.state == GONE,
            row.heartbeat_at <= now - within,
        ),
    ).returning(row.analyzer_id)
    return session.execute(upsert).first() is not None


def site_digests(session: Session, within: float) -> dict[str, str | None]:
    """``{analyzer: site digest}`` of the active analyzers whose heartbeat is younger than
    ``within`` seconds (``None``: written before migration 0012)."""
    query = select(ClusterAnalyzerRow.analyzer_id, ClusterAnalyzerRow.site_digest).where(
        ClusterAnalyzerRow.state == ACTIVE, ClusterAnalyzerRow.heartbeat_at > db_now() - within
    )
    return {row.analyzer_id: row.site_digest for row in session.execute(query)}


def set_state(session: Session, analyzer_id: str, state: str) -> None:
    """Mark the analyzer ``draining`` (placement leaves it out) or ``gone``."""
    session.execute(
        update(ClusterAnalyzerRow)
        .where(ClusterAnalyzerRow.analyzer_id == analyzer_id)
        .values(state=state)
    )


def live_analyzers(session: Session, within: float, state: str = ACTIVE) -> list[Analyzer]:
    """Analyzers in ``state`` (active ones by default) whose heartbeat is younger than
    ``within`` seconds."""
    query = select(ClusterAnalyzerRow).where(
        ClusterAnalyzerRow.state == state, ClusterAnalyzerRow.heartbeat_at > db_now() - within
    )
    return [
        Analyzer(row.analyzer_id, row.capacity, {str(k): str(v) for k, v in row.labels.items()})
        for row in session.scalars(query)
    ]


def add_cameras(session: Session, camera_ids: Sequence[str]) -> None:
    """Create a free lease row (epoch 0) for each camera that has none yet."""
    if not camera_ids:
        return
    now = db_now()
    rows = [
        {
            "camera_id": camera,
            "owner": None,
            "epoch": 0,
            "expires_at": now,
            "acquired_at": now,
            "renewed_at": now,
        }
        for camera in sorted(set(camera_ids))
    ]
    session.execute(insert(CameraLeaseRow).values(rows).on_conflict_do_nothing())


def read_leases(session: Session, camera_ids: Sequence[str]) -> dict[str, LeaseView]:
    """The lease of each camera that has a row; an expired lease reads as having no owner."""
    live = and_(CameraLeaseRow.owner.is_not(None), CameraLeaseRow.expires_at > db_now())
    query = select(
        CameraLeaseRow.camera_id, CameraLeaseRow.owner, CameraLeaseRow.epoch, live.label("live")
    ).where(CameraLeaseRow.camera_id.in_(list(camera_ids)))
    return {
        row.camera_id: LeaseView(row.camera_id, row.owner if row.live else None, int(row.epoch))
        for row in session.execute(query)
    }


@dataclass(frozen=True)
class OwnerView:
    """Who analyses a camera now and where its video is served, as an API node needs it.

    ``owner`` is ``None`` when the lease is free or expired (``released_by``/``expired_owner``
    then say who had it); ``video_url`` is ``None`` when the owner advertises no video.
    """

    camera_id: str
    owner: str | None
    epoch: int
    video_url: str | None
    previous_owner: str | None


def owner_of(session: Session, camera_id: str) -> OwnerView | None:
    """The camera's owner now (an unexpired lease) and the video URL it advertises; ``None``
    if the camera has no lease row (no analyzer ever saw it)."""
    live = and_(CameraLeaseRow.owner.is_not(None), CameraLeaseRow.expires_at > db_now())
    query = (
        select(
            CameraLeaseRow.owner,
            CameraLeaseRow.epoch,
            CameraLeaseRow.released_by,
            ClusterAnalyzerRow.video_url,
            live.label("live"),
        )
        .select_from(CameraLeaseRow)
        .outerjoin(ClusterAnalyzerRow, ClusterAnalyzerRow.analyzer_id == CameraLeaseRow.owner)
        .where(CameraLeaseRow.camera_id == camera_id)
    )
    row = session.execute(query).first()
    if row is None:
        return None
    if not row.live:
        return OwnerView(camera_id, None, int(row.epoch), None, row.owner or row.released_by)
    return OwnerView(camera_id, row.owner, int(row.epoch), row.video_url, None)


def renew(
    session: Session, analyzer_id: str, held: Mapping[str, int], lease_seconds: float
) -> dict[str, int]:
    """Extend the unexpired leases this analyzer holds at the epochs it holds them.

    Returns:
        ``{camera: epoch}`` of the leases renewed; a held camera missing here was lost.
    """
    if not held:
        return {}
    now = db_now()
    statement = (
        update(CameraLeaseRow)
        .where(
            CameraLeaseRow.owner == analyzer_id,
            CameraLeaseRow.expires_at > now,
            tuple_(CameraLeaseRow.camera_id, CameraLeaseRow.epoch).in_(list(held.items())),
        )
        .values(expires_at=now + lease_seconds, renewed_at=now)
        .returning(CameraLeaseRow.camera_id, CameraLeaseRow.epoch)
    )
    return {row.camera_id: int(row.epoch) for row in session.execute(statement)}


def release(
    session: Session, analyzer_id: str, camera_id: str, epoch: int, *, handover: bool = True
) -> bool:
    """Give a lease back (owner cleared, who and when kept for the coverage gap).

    ``handover=False``: the camera was removed from the site or disabled, a deliberate stop and
    not lost coverage. ``released_at`` is then cleared, so the claim after it is enabled again
    (maybe hours later) records no ``handover`` gap spanning the time it was off
    (:func:`~safewatch.cluster.takeover.record_handover` needs it).

    Returns:
        Whether this analyzer still held it at ``epoch`` (otherwise nothing changed).
    """
    now = db_now()
    statement = (
        update(CameraLeaseRow)
        .where(
            CameraLeaseRow.camera_id == camera_id,
            CameraLeaseRow.owner == analyzer_id,
            CameraLeaseRow.epoch == epoch,
        )
        .values(
            owner=None,
            expires_at=now,
            released_at=now if handover else None,
            released_by=analyzer_id,
        )
    )
    result = session.execute(statement)
    return isinstance(result, CursorResult) and result.rowcount > 0


@dataclass(frozen=True)
class Claimable:
    """A lease row locked for a claim (``FOR UPDATE``), as it was before the claim.

    ``previous_owner`` is set when the lease expired unreleased (a takeover), and ``now`` is the
    database's clock at the lock.
    """

    camera_id: str
    epoch: int
    previous_owner: str | None
    renewed_at: float
    released_at: float | None
    released_by: str | None
    now: float


def lock_claimable(session: Session, analyzer_id: str, camera_id: str) -> Claimable | None:
    """Lock the camera's lease if it may be claimed now: free, expired, or still under this
    analyzer's name (a previous life of it, whose epoch it no longer holds).

    ``SKIP LOCKED``: a lease another analyzer is claiming, renewing or fencing against right now
    is skipped rather than waited for; the next round looks again.

    Returns:
        The locked row, or ``None`` (locked elsewhere, or owned by a live other analyzer).
    """
    now = db_now()
    query = (
        select(
            CameraLeaseRow.epoch,
            CameraLeaseRow.owner,
            CameraLeaseRow.renewed_at,
            CameraLeaseRow.released_at,
            CameraLeaseRow.released_by,
            now.label("now"),
        )
        .where(
            CameraLeaseRow.camera_id == camera_id,
            or_(
                CameraLeaseRow.owner.is_(None),
                CameraLeaseRow.expires_at <= now,
                CameraLeaseRow.owner == analyzer_id,
            ),
        )
        .with_for_update(skip_locked=True)
    )
    row = session.execute(query).first()
    if row is None:
        return None
    return Claimable(
        camera_id,
        int(row.epoch),
        row.owner,
        float(row.renewed_at),
        row.released_at,
        row.released_by,
        float(row.now),
    )


def claim(session: Session, analyzer_id: str, locked: Claimable, lease_seconds: float) -> int:
    """Take the locked lease: owner = this analyzer, epoch + 1; returns the new epoch."""
    epoch = locked.epoch + 1
    now = db_now()
    session.execute(
        update(CameraLeaseRow)
        .where(CameraLeaseRow.camera_id == locked.camera_id)
        .values(
            owner=analyzer_id,
            epoch=epoch,
            expires_at=now + lease_seconds,
            acquired_at=now,
            renewed_at=now,
            released_at=None,
            released_by=None,
        )
    )
    return epoch


def record_gap(
    session: Session,
    camera_id: str,
    *,
    started_at: float,
    ended_at: float,
    reason: str,
    previous_owner: str | None,
    new_owner: str,
) -> None:
    """Insert a coverage gap: the camera was analysed by nobody from ``started_at`` to
    ``ended_at`` (database clock)."""
    session.add(
        CoverageGapRow(
            camera_id=camera_id,
            started_at=started_at,
            ended_at=max(started_at, ended_at),
            reason=reason,
            previous_owner=previous_owner,
            new_owner=new_owner,
        )
    )
