"""Refuse the incident writes of an analyzer that no longer owns the camera (fencing).

A lease alone cannot stop a stale owner: an analyzer frozen past its lease (GC pause, SIGSTOP, a
slow disk) wakes up believing it still owns its cameras and writes. So every incident write checks,
inside its own transaction, that the lease row still names this analyzer at the epoch it was
granted, and that the lease has not expired by the database's clock. The row is read ``FOR
SHARE``: a claim (``FOR UPDATE SKIP LOCKED``) by another analyzer skips the row until the write has
committed, and a write that starts after the claim waits for it, sees the new owner and is refused,
so the table never holds a write of an analyzer that had already lost the camera.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from safewatch.cluster.leases import db_now
from safewatch.cluster.metrics import FENCED_WRITES
from safewatch.domain import Incident
from safewatch.errors import FencedWrite
from safewatch.storage.cluster_tables import CameraLeaseRow
from safewatch.storage.tables import IncidentRow

__all__ = ["FENCED_WRITES", "EpochFence", "FencedWrite", "UnleasedFence"]


def _check(camera_id: str) -> Select[int, str | None, bool]:
    """The camera's lease row, read ``FOR SHARE``, and whether it is live by the database's
    clock (:func:`~safewatch.cluster.leases.db_now`, the one definition of "now")."""
    return (
        select(
            CameraLeaseRow.epoch,
            CameraLeaseRow.owner,
            (CameraLeaseRow.expires_at > db_now()).label("live"),
        )
        .where(CameraLeaseRow.camera_id == camera_id)
        .with_for_update(read=True)
    )


class EpochFence:
    """The check an :class:`~safewatch.storage.IncidentRepository` runs in every camera write.

    Args:
        analyzer_id: This analyzer.
        epoch_of: The epoch this analyzer holds for a camera, ``None`` when it does not own it
            (:meth:`safewatch.cluster.ClusterMember.epoch_of`).
        continue_within: Seconds after a takeover within which a new incident of the same camera
            and rule that *started* (its first violating frame) continues one the takeover
            closed (:meth:`continues`).
    """

    def __init__(
        self,
        analyzer_id: str,
        epoch_of: Callable[[str], int | None],
        *,
        continue_within: float = 30.0,
    ) -> None:
        self.analyzer_id = analyzer_id
        self.continue_within = continue_within
        self._epoch_of = epoch_of
        self._lock = threading.Lock()
        self._taken: dict[str, tuple[float, set[str]]] = {}

    def check(self, session: Session, camera_id: str) -> None:
        """Raise :class:`FencedWrite` unless this analyzer owns ``camera_id`` at its epoch.

        Runs inside the write transaction (after the chain lock), so the lease row stays as read
        until the write commits. Besides owner and epoch, the lease must not have expired by the
        database's clock: an owner past its lease has already been told to stop (its own
        deadline comes earlier).
        """
        held = self._epoch_of(camera_id)
        row = session.execute(_check(camera_id)).first()
        owner, epoch = (None, None) if row is None else (row.owner, int(row.epoch))
        live = row is not None and bool(row.live)
        if held is None or owner != self.analyzer_id or epoch != held or not live:
            FENCED_WRITES.labels(camera=camera_id).inc()
            raise FencedWrite(camera_id, held, owner, epoch)

    def taken_over(self, camera_id: str, closed_incidents: Iterable[str]) -> None:
        """Remember the incidents a takeover of ``camera_id`` closed, and when (wall clock, the
        clock of an incident's ``started_at``), for :meth:`continues`."""
        with self._lock:
            self._taken[camera_id] = (time.time(), set(closed_incidents))

    def continues(self, session: Session, incident: Incident) -> str | None:
        """The incident a newly opened one continues: one of the same camera and rule that a
        takeover closed (``analyzer_lost``, or a graceful handover), when the new one's first
        violating frame (``started_at``) came less than ``continue_within`` seconds after the
        takeover.

        Measured to the incident's start, not to its write: an incident is written only once
        it lasted its rule's ``min_duration``, so measuring to the write never linked one of a
        rule with a ``min_duration`` near ``continue_within`` or longer (and
        ``suppress_continued`` let its second "opened" alert through). The entry is kept after
        the window: an incident of another rule, started within it, may be written later.

        Each closed incident is continued at most once (the newest first), so a violation that
        went on across the takeover reads as one story, and a second subject is a new one.
        """
        with self._lock:
            taken = self._taken.get(incident.camera_id)
            if taken is None or incident.started_at - taken[0] > self.continue_within:
                return None
            candidates = set(taken[1])
        if not candidates:
            return None
        query = (
            select(IncidentRow.id)
            .where(
                IncidentRow.id.in_(candidates),
                IncidentRow.rule_id == incident.rule_id,
                IncidentRow.rule_kind == incident.rule_kind,
            )
            .order_by(IncidentRow.started_at.desc(), IncidentRow.id)
            .limit(1)
        )
        previous = session.scalar(query)
        if previous is None:
            return None
        with self._lock:
            taken = self._taken.get(incident.camera_id)
            if taken is not None:
                taken[1].discard(previous)
        return str(previous)


class UnleasedFence:
    """The check of writes for a camera *nobody* runs (disabled or removed from the site).

    The sweep of such a camera's clips (:class:`safewatch.runtime.clip_sweep.ClipSweeper`) holds
    no lease to be fenced by; its writes must still never land beside an owner's. So a write is
    refused when the camera has a live lease (it was enabled again and someone owns it: its
    clips are that owner's to adopt). The row is read ``FOR SHARE`` as in :class:`EpochFence`:
    a claim waits for the write, or the write sees the claim.
    """

    def check(self, session: Session, camera_id: str) -> None:
        """Raise :class:`FencedWrite` if ``camera_id`` has a live owner."""
        row = session.execute(_check(camera_id)).first()
        if row is not None and row.owner is not None and bool(row.live):
            FENCED_WRITES.labels(camera=camera_id).inc()
            raise FencedWrite(camera_id, None, row.owner, int(row.epoch))

    def continues(self, session: Session, incident: Incident) -> str | None:
        """A sweep opens no incident: nothing continues."""
        return None
