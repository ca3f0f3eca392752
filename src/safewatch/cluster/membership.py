"""The analyzer's side of the cluster: heartbeat, renew, claim, rebalance, and drain.

This is the interface ``safewatch serve --cluster`` codes against. A :class:`ClusterMember`
runs one background thread that, every ``renew_every`` seconds (a third of the lease by default),
heartbeats the analyzer's row, renews the leases it holds, claims the cameras placement gives it
(free or expired leases, ``FOR UPDATE SKIP LOCKED``) and gives back at most one camera another
analyzer should own. The :class:`OwnershipListener` is told when to start and stop a camera.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine

from safewatch.cluster.fencing import EpochFence

__all__ = ["ClusterMember", "OwnershipListener", "Takeover"]


@dataclass(frozen=True)
class Takeover:
    """What the new owner learned when it claimed another analyzer's expired lease.

    Attributes:
        previous_owner: The analyzer that held the lease and did not release it.
        previous_epoch: Its epoch (the new one is higher).
        closed_incidents: Ids of its open incidents of the camera, closed as ``analyzer_lost``.
        gap_started_at: Epoch seconds (database clock) the camera was last known analysed.
        gap_ended_at: Epoch seconds (database clock) of the claim.
    """

    previous_owner: str
    previous_epoch: int
    closed_incidents: tuple[str, ...]
    gap_started_at: float
    gap_ended_at: float


class OwnershipListener(Protocol):
    """Starts and stops cameras as ownership moves (called from the member's thread)."""

    def acquired(self, camera_id: str, epoch: int, takeover: Takeover | None) -> None:
        """Start analysing ``camera_id``; ``takeover`` is set when an expired lease was taken."""
        ...

    def released(self, camera_id: str, reason: str) -> None:
        """Stop analysing ``camera_id``: ``rebalance``, ``drain``, ``lost`` or ``removed``."""
        ...


class ClusterMember:
    """One analyzer's membership in the cluster (see the module docstring).

    Args:
        engine: A PostgreSQL engine with the schema at head (SQLite is refused).
        analyzer_id: Unique, stable name of this analyzer (host name, pod name).
        camera_ids: Every camera of the site (all analyzers are given the same list).
        listener: Told when to start and stop each camera.
        capacity: Relative weight in placement (cameras per unit of capacity are balanced).
        labels: This analyzer's labels (e.g. ``{"gpu": "true"}``).
        camera_labels: Labels each camera requires of its analyzer.
        lease_seconds: How long a lease lasts without renewal.
        renew_every: Heartbeat period; ``lease_seconds / 3`` by default.

    Raises:
        StorageError: The engine is not PostgreSQL, or the cluster tables are missing.
        ValueError: A bad capacity, lease or period.
    """

    fence: EpochFence

    def __init__(
        self,
        engine: Engine,
        analyzer_id: str,
        camera_ids: Sequence[str],
        listener: OwnershipListener,
        *,
        capacity: int = 1,
        labels: Mapping[str, str] | None = None,
        camera_labels: Mapping[str, Mapping[str, str]] | None = None,
        lease_seconds: float = 10.0,
        renew_every: float | None = None,
    ) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start the background thread (heartbeat, renew, claim, rebalance)."""
        raise NotImplementedError

    def drain(self, timeout: float) -> None:
        """Release every lease gracefully (``listener.released(..., "drain")`` first, then the
        row) and mark the analyzer gone; the SIGTERM path."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the thread without releasing anything (as a crash would); for tests."""
        raise NotImplementedError

    def set_cameras(
        self,
        camera_ids: Sequence[str],
        camera_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Replace the site's cameras (a site reload); removed cameras are released."""
        raise NotImplementedError

    def epoch_of(self, camera_id: str) -> int | None:
        """The epoch this analyzer holds for ``camera_id``, ``None`` when it is not the owner."""
        raise NotImplementedError

    def owned(self) -> frozenset[str]:
        """The cameras this analyzer owns now."""
        raise NotImplementedError
