"""Refuse the incident writes of an analyzer that no longer owns the camera (fencing).

A lease alone cannot stop a stale owner: an analyzer frozen past its lease (GC pause, SIGSTOP, a
slow disk) wakes up believing it still owns its cameras and writes. So every incident write checks,
inside its own transaction, that the lease row still names this analyzer at the epoch it was
granted. The row is read ``FOR SHARE``: a claim (``FOR UPDATE``) by another analyzer waits for the
write to commit, and a write started after the claim sees the new owner and is refused, so the
table never holds a write of an analyzer that had already lost the camera.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.orm import Session

from safewatch.errors import SafewatchError

__all__ = ["FENCED_WRITES", "EpochFence", "FencedWrite"]

log = logging.getLogger(__name__)

FENCED_WRITES = Counter(
    "safewatch_cluster_fenced_writes_total",
    "Incident writes refused because this analyzer no longer held the camera's lease epoch.",
    ["camera"],
)


class FencedWrite(SafewatchError):
    """An incident write of a camera this analyzer no longer owns (its epoch is stale).

    The write's transaction was rolled back. Whoever gets it must treat it as "I am no longer the
    owner": drop the change, never retry it.
    """

    def __init__(self, camera_id: str, held: int | None, owner: str | None, epoch: int | None):
        self.camera_id = camera_id
        self.held = held
        self.owner = owner
        self.epoch = epoch
        super().__init__(
            f"camera {camera_id!r}: write refused, this analyzer holds epoch {held} but the "
            f"lease is now owner {owner!r} at epoch {epoch}"
        )


_CHECK = text("SELECT epoch, owner FROM camera_leases WHERE camera_id = :c FOR SHARE")


class EpochFence:
    """The check an :class:`~safewatch.storage.IncidentRepository` runs in every camera write.

    Args:
        analyzer_id: This analyzer.
        epoch_of: The epoch this analyzer holds for a camera, ``None`` when it does not own it
            (:meth:`safewatch.cluster.ClusterMember.epoch_of`).
    """

    def __init__(self, analyzer_id: str, epoch_of: Callable[[str], int | None]) -> None:
        self.analyzer_id = analyzer_id
        self._epoch_of = epoch_of

    def check(self, session: Session, camera_id: str) -> None:
        """Raise :class:`FencedWrite` unless this analyzer owns ``camera_id`` at its epoch.

        Runs inside the write transaction (after the chain lock), so the lease row stays as read
        until the write commits.
        """
        held = self._epoch_of(camera_id)
        row = session.execute(_CHECK, {"c": camera_id}).first()
        owner, epoch = (None, None) if row is None else (row.owner, int(row.epoch))
        if held is None or owner != self.analyzer_id or epoch != held:
            FENCED_WRITES.labels(camera=camera_id).inc()
            raise FencedWrite(camera_id, held, owner, epoch)
