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

A claim that ended in an expiry counts in ``lost``; the claim that would be the
:data:`MAX_LOST`-th restart marks the job failed instead ("analyzer lost 3 times while running
it"), so a video that crashes or exhausts its analyzer does not take down one analyzer after
another. A stopping analyzer's :meth:`JobQueue.release` does not count.

A row stays ``receiving`` while an API node stores the job's inputs; that node touches its
``heartbeat_at`` meanwhile. One whose node died or gave up is failed ("upload interrupted") by
any API node's periodic pass (:meth:`JobQueue.fail_interrupted_uploads`), with its blobs deleted.

Progress, result and cancellation live in the row, so every API node shows the same list. The
job's files are blobs in the site's evidence store (:mod:`safewatch.api.cluster_jobs`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from safewatch.api.jobs import AuditJob
from safewatch.cluster.leases import db_now
from safewatch.errors import SafewatchError
from safewatch.storage.job_tables import ClusterJobRow

__all__ = ["MAX_LOST", "UPLOAD_LIMIT", "Claim", "JobLost", "JobQueue"]

RECEIVING, QUEUED, RUNNING = "receiving", "queued", "running"
DONE, FAILED, CANCELLED = "done", "failed", "cancelled"

MAX_LOST = 3
"""Claims of one job that may end in a heartbeat expiry; the next one marks it failed."""

UPLOAD_LIMIT = 300.0
"""Seconds a ``receiving`` row may go untouched (database clock) before it counts as an
interrupted upload (its API node touches it every :data:`UPLOAD_TOUCH` seconds)."""

UPLOAD_TOUCH = 30.0
"""Seconds between two touches of a ``receiving`` row by the API node storing its inputs."""


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
    """The dashboard's view of a row (``receiving``: its inputs are still being stored)."""
    return AuditJob(
        id=row.id,
        video=row.video,
        camera=row.camera,
        submitted_by=row.submitted_by,
        submitted_at=row.submitted_at,
        state=row.state,
        frames_done=int(row.frames_done),
        frames_total=None if row.frames_total is None else int(row.frames_total),
        started_at=row.started_at,
        finished_at=row.finished_at,
        message=row.message,
        incidents=row.incidents,
        kind=row.kind,
        start=row.spec.get("start"),
    )


class JobQueue:
    """The job table (see the module docstring); one per process, thread-safe.

    Args:
        engine: The cluster's PostgreSQL.
        expiry: Seconds without a heartbeat after which a running job is claimed again (the
            cluster's ``lease_seconds``).
        claimer_engine: Where an analyzer's :meth:`heartbeat` and :meth:`claim` (its job
            runner's loop) get their connection; ``engine`` when ``None``. An analyzer passes
            its cluster membership's engine, the connection pool of its own that its lease
            renewals use: on the process's shared pool, incident writes of many cameras or a
            slow query could take every connection, the heartbeat waited for one past the
            expiry, and another analyzer restarted a job that had run for hours.
    """

    def __init__(
        self, engine: Engine, *, expiry: float, claimer_engine: Engine | None = None
    ) -> None:
        self.engine = engine
        self.expiry = expiry
        self._claimer_engine = engine if claimer_engine is None else claimer_engine

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
                    spec={} if job.start is None else {"start": job.start},
                    frames_done=0,
                    frames_total=None,
                    message="",
                    incidents=0,
                    attempt=0,
                    cancel_requested=False,
                    lost=0,
                )
            )
            session.flush()
            session.execute(
                update(ClusterJobRow)
                .where(ClusterJobRow.id == job.id)
                .values(heartbeat_at=db_now())
            )

    def touch(self, job_id: str) -> None:
        """The API node storing a job's inputs is still at it (see :data:`UPLOAD_LIMIT`)."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(ClusterJobRow)
                .where(ClusterJobRow.id == job_id, ClusterJobRow.state == RECEIVING)
                .values(heartbeat_at=db_now())
            )

    def queue(self, job_id: str, spec: dict[str, Any]) -> bool:
        """Its inputs are stored: analyzers may claim it. ``False`` when the row is no longer
        receiving (cancelled, or failed as an interrupted upload): the caller's blobs are its
        own to delete."""
        with Session(self.engine) as session, session.begin():
            row = session.get(ClusterJobRow, job_id, with_for_update=True)
            if row is None or row.state != RECEIVING:
                return False
            row.spec = {**row.spec, **spec}  # what insert recorded (the start time) stays
            row.state = QUEUED
            row.heartbeat_at = None
            return True

    def fail_interrupted_uploads(
        self, discard: Callable[[str], None], limit: float = UPLOAD_LIMIT
    ) -> list[str]:
        """Fail the ``receiving`` rows untouched for ``limit`` seconds ("upload interrupted"),
        calling ``discard(job_id)`` (delete its blobs) for each while its row is locked; returns
        their ids. Rows another node is handling are skipped (``SKIP LOCKED``), so any number of
        nodes may run this at once; a ``discard`` that fails leaves every row as it was, for the
        next pass."""
        last_seen = func.coalesce(ClusterJobRow.heartbeat_at, ClusterJobRow.submitted_at)
        with Session(self.engine) as session, session.begin():
            rows = session.scalars(
                select(ClusterJobRow)
                .where(ClusterJobRow.state == RECEIVING, last_seen < db_now() - limit)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                discard(row.id)
                row.state, row.finished_at, row.heartbeat_at = FAILED, time.time(), None
                row.message = "upload interrupted: its API node stopped storing the inputs"
            return [row.id for row in rows]

    def states(self, job_ids: Iterable[str]) -> dict[str, str]:
        """The state of each of ``job_ids`` that has a row."""
        ids = list(job_ids)
        if not ids:
            return {}
        with Session(self.engine) as session:
            found = session.execute(
                select(ClusterJobRow.id, ClusterJobRow.state).where(ClusterJobRow.id.in_(ids))
            )
            return {job_id: state for job_id, state in found}

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
        cancelled instead of being returned; one whose analyzer was lost :data:`MAX_LOST`
        times is marked failed."""
        expired = and_(
            ClusterJobRow.state == RUNNING, ClusterJobRow.heartbeat_at < db_now() - self.expiry
        )
        with Session(self._claimer_engine, expire_on_commit=False) as session, session.begin():
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
                    # claimed_by is None for a row given back before release() honoured it
                    by = f" (its analyzer {row.claimed_by} was lost)" if row.claimed_by else ""
                    row.message = f"cancelled{by}"
                    session.flush()
                    continue
                previous = row.claimed_by if row.state == RUNNING else None
                if previous is not None:
                    row.lost += 1
                    if row.lost >= MAX_LOST:
                        row.state, row.finished_at, row.heartbeat_at = FAILED, time.time(), None
                        row.message = (
                            f"analyzer lost {row.lost} times while running it "
                            f"(last: {previous}); not restarted"
                        )
                        session.flush()
                        continue
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
        with Session(self._claimer_engine) as session, session.begin():
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
        claims it at once instead of after the heartbeat expiry. A job whose cancel was
        requested meanwhile is marked cancelled instead: queued with the request, its next
        claim cancelled it as if an analyzer ``None`` had been lost. ``False`` when the claim
        was no longer held (nothing written)."""
        with Session(self.engine) as session, session.begin():
            cancelled = session.execute(
                update(ClusterJobRow)
                .where(self._held(claim), ClusterJobRow.cancel_requested.is_(True))
                .values(
                    state=CANCELLED,
                    finished_at=time.time(),
                    heartbeat_at=None,
                    message=f"cancelled (analyzer {claim.analyzer_id} was stopping)",
                )
            )
            if getattr(cancelled, "rowcount", 0):
                return True
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
