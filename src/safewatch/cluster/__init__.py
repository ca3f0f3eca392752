"""Cluster mode: analyzers share a plant's cameras through leases in PostgreSQL.

One camera is the unit of ownership: its whole pipeline runs on the analyzer that holds its lease
(a row in ``camera_leases``, the Kubernetes ``Lease`` shape, times from the database's clock).
An epoch, bumped on every change of hands, fences a stale owner's incident writes; the analyzer
that takes over an expired lease closes the previous owner's open incidents and records the gap.

Modules, one idea each: :mod:`~safewatch.cluster.tables` (the rows), :mod:`~.placement`
(which analyzer should own which camera), :mod:`~.leases` (the SQL of claim, renew, release),
:mod:`~.takeover` (what the new owner of an expired lease does), :mod:`~.fencing` (the epoch check
inside the incident write) and :mod:`~.membership` (the background loop an analyzer runs).
"""

from safewatch.cluster.fencing import EpochFence, FencedWrite
from safewatch.cluster.membership import ClusterMember, OwnershipListener, Takeover

__all__ = ["ClusterMember", "EpochFence", "FencedWrite", "OwnershipListener", "Takeover"]
