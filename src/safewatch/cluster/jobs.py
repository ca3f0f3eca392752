"""The cluster's audit and backtest jobs in PostgreSQL: submitted by any API node, claimed by an
analyzer with a free job slot.

The shape of the camera leases (:mod:`safewatch.cluster.leases`), for work that ends: a job is a
row of ``cluster_jobs``; an analyzer claims the oldest queued one with ``SELECT ... FOR UPDATE
SKIP LOCKED`` (two analyzers never claim the same job), and heartbeats it while it runs. A
running job whose heartbeat is older than ``expiry`` (its claimer died or froze) is claimed
again like a queued one and restarted from its first frame. Every write of a claimer names the
claim's ``attempt``, so a claimer that was presumed dead and wakes up writes nothing more: its
progress report finds the row taken over (:class:`JobLost`) and it stops. Times are the
database's clock.

Progress, result and cancellation live in the row, so every API node shows the same list. The
job's files are blobs in the site's evidence store (:mod:`safewatch.api.cluster_jobs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from safewatch.api.jobs import AuditJob
from safewatch.cluster.leases import db_now
from safewatch.errors import SafewatchError
from safewatch.storage.job_tables import ClusterJobRow

__all__ = ["Claim", "JobLost", "JobQueue"]

RECEIVING, QUEUED, RUNNING = "receiving", "queued", "running"
DONE, FAILED, CANCELLED = "done", "failed", "cancelled"


class JobLost(SafewatchError):
    """This claimer's hold on a job is gone: its heartbeat expired and another analyzer claimed
    it, or the job was deleted. The claimer stops and writes nothing more."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this analyzer claimed: its state when claimed, what it needs, and the attempt that
    fences this claimer's writes."""

    job: AuditJob
    spec: dict[str, Any]
    attempt: int
    analyzer_id: str


def to_job(row: ClusterJobRow) -> AuditJob:
    """The dashboard's view of a row (a job still receiving its inputs shows as queued)."""
    return AuditJob(
        id=row.id,
        video=row.video,
        camera=row.camera,
        submitted_by=row.submitted_by,
        submitted_at=row.submitted_at,
        state=QUEUED if row.state == RECEIVING else row.state,
        frames_done=int(row.frames_done),
        frames_total=None if row.frames_total is None else int(row.frames_total),
        started_at=row.started_at,
        finished_at=row.finished_at,
        message=row.message,
        incidents=row.incidents,
        kind=row.kind,
    )


class JobQueue:
    """The job table (see the module docstring); one per process, thread-safe.

    Args:
        engine: The cluster's PostgreSQL.
        expiry: Seconds without a heartbeat after which a running job is claimed again (the
            cluster's ``lease_seconds``).
    """

    def __init__(self, engine: Engine, *, expiry: float) -> None:
        self.engine = engine
        self.expiry = expiry

    # -- API nodes ---------------------------------------------------------------------------

    def insert(self, job: AuditJob) -> None:
        """Record a new job, not claimable until :meth:`queue` (its inputs are being stored)."""
        with Session(self.engine) as session, session.begin():
            session.add(
                ClusterJobRow(
                    id=job.id,
                    kind=job.kind,
                    camera=job.camera,
                    video=job.video,
                    submitted_by=job.submitted_by,
                    submitted_at=job.submitted_at,
                    state=RECEIVING,
                    spec={},
                    frames_done=0,
                    frames_total=None,
                    message="",
                    incidents=0,
                    attempt=0,
                    cancel_requested=False,
                )
            )

    def queue(self, job_id: str, spec: dict[str, Any]) -> None:
        """Its inputs are stored: analyzers may claim it."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(ClusterJobRow)
                .where(ClusterJobRow.id == job_id, ClusterJobRow.state == RECEIVING)
                .values(state=QUEUED, spec=spec)
            )

    def change(self, job_id: str, **values: Any) -> None:
        """Change columns of a job (an API node marking an upload that failed)."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(ClusterJobRow).where(ClusterJobRow.id == job_id).values(values))

    def all_jobs(self) -> list[AuditJob]:
        """Every job, newest first."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(ClusterJobRow).order_by(ClusterJobRow.submitted_at.desc())
            )
            return [to_job(row) for row in rows]

    def row(self, job_id: str) -> ClusterJobRow | None:
        """The job's row (detached), or ``None``."""
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(ClusterJobRow, job_id)

    def cancel(self, job_id: str) -> ClusterJobRow | None:
        """Cancel a job from any node: a queued one at once, a running one by asking its claimer
        (it stops at its next frame and marks it cancelled; if it died meanwhile, the next
        claim finds the request and marks it cancelled without running). Returns the row after,
        or ``None`` when there is no such job."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.scalars(
                select(ClusterJobRow).where(ClusterJobRow.id == job_id).with_for_update()
            ).first()
            if row is None:
                return None
            if row.state in (RECEIVING, QUEUED):
                row.state, row.finished_at = CANCELLED, time.time()
                row.message = "cancelled before it started"
            elif row.state == RUNNING:
                row.cancel_requested = True
            return row

    def delete(self, job_id: str) -> bool:
        """Remove a job's row unless it is queued or running; ``False`` when it is."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                delete(ClusterJobRow).where(
                    ClusterJobRow.id == job_id,
                    ClusterJobRow.state.not_in((RECEIVING, QUEUED, RUNNING)),
                )
            )
            return bool(getattr(result, "rowcount", 0))

    def remove(self, job_id: str) -> None:
        """Remove a job's row whatever its state (one refused while its inputs were staged)."""
        with Session(self.engine) as session, session.begin():
            session.execute(delete(ClusterJobRow).where(ClusterJobRow.id == job_id))

    # -- analyzers ---------------------------------------------------------------------------

    def claim(self, analyzer_id: str) -> Claim | None:
        """Claim the oldest queued job, or a running one whose claimer stopped heartbeating;
        ``None`` when there is none. A claimed job whose cancel was requested is marked
        cancelled instead of being returned."""
        expired = and_(
            ClusterJobRow.state == RUNNING, ClusterJobRow.heartbeat_at < db_now() - self.expiry
        )
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            while True:
                row = session.scalars(
                    select(ClusterJobRow)
                    .where(or_(ClusterJobRow.state == QUEUED, expired))
                    .order_by(ClusterJobRow.submitted_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if row is None:
                    return None
                if row.cancel_requested:
                    row.state, row.finished_at = CANCELLED, time.time()
                    row.message = f"cancelled (its analyzer {row.claimed_by} was lost)"
                    session.flush()
                    continue
                previous = row.claimed_by if row.state == RUNNING else None
                row.state = RUNNING
                row.claimed_by = analyzer_id
                row.attempt += 1
                row.frames_done = 0
                row.started_at = time.time()
                row.message = "" if previous is None else f"restarted: analyzer {previous} was lost"
                session.flush()
                session.execute(
                    update(ClusterJobRow)
                    .where(ClusterJobRow.id == row.id)
                    .values(heartbeat_at=db_now())
                )
                return Claim(to_job(row), dict(row.spec), row.attempt, analyzer_id)

    def heartbeat(self, claims: list[Claim]) -> set[str]:
        """Renew the claims (one statement); returns the ids of those no longer held."""
        if not claims:
            return set()
        with Session(self.engine) as session, session.begin():
            held = session.scalars(
                update(ClusterJobRow)
                .where(or_(*(self._held(c) for c in claims)))
                .values(heartbeat_at=db_now())
                .returning(ClusterJobRow.id)
            ).all()
        return {c.job.id for c in claims} - set(held)

    def progress(self, claim: Claim, **values: Any) -> bool:
        """Write the claim's progress (``frames_done``, ``frames_total``); returns whether a
        cancel was requested.

        Raises:
            JobLost: The claim is no longer held.
        """
        with Session(self.engine) as session, session.begin():
            cancel = session.scalars(
                update(ClusterJobRow)
                .where(self._held(claim))
                .values(values)
                .returning(ClusterJobRow.cancel_requested)
            ).first()
        if cancel is None:
            raise JobLost(f"job {claim.job.id} was claimed again or removed")
        return bool(cancel)

    def finish(self, claim: Claim, state: str, **values: Any) -> bool:
        """End the claim with ``state`` (``done``, ``failed``, ``cancelled``) and the result's
        columns; ``False`` when the claim was no longer held (nothing written)."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(ClusterJobRow)
                .where(self._held(claim))
                .values(state=state, finished_at=time.time(), heartbeat_at=None, **values)
            )
            return bool(getattr(result, "rowcount", 0))

    def release(self, claim: Claim) -> bool:
        """Give a running job back to the queue (this analyzer is stopping): another analyzer
        claims it at once instead of after the heartbeat expiry."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(ClusterJobRow)
                .where(self._held(claim))
                .values(
                    state=QUEUED,
                    claimed_by=None,
                    heartbeat_at=None,
                    message=f"given back by analyzer {claim.analyzer_id} (stopping)",
                )
            )
            return bool(getattr(result, "rowcount", 0))

    @staticmethod
    def _held(claim: Claim) -> Any:
        return and_(
            ClusterJobRow.id == claim.job.id,
            ClusterJobRow.state == RUNNING,
            ClusterJobRow.claimed_by == claim.analyzer_id,
            ClusterJobRow.attempt == claim.attempt,
        )
