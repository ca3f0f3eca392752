"""Prometheus metrics of cluster membership (on the default registry, which ``/metrics`` serves).

What an operator asks of a failover: which analyzer holds how many cameras, how often cameras
moved and why, whether an analyzer keeps losing the database, and whether any stale owner tried
to write (it must be refused: ``fenced_writes``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "CAMERAS_OWNED",
    "CAMERAS_UNOWNED",
    "CAMERAS_UNPLACED",
    "FENCED_WRITES",
    "HELD_OFF",
    "RELEASES",
    "RELEASE_REASONS",
    "ROUND_FAILURES",
    "TAKEOVERS",
    "start_at_zero",
]

FENCED_WRITES = Counter(
    "safewatch_cluster_fenced_writes_total",
    "Incident writes refused because this analyzer no longer held the camera's lease epoch.",
    ["camera"],
)
CAMERAS_OWNED = Gauge(
    "safewatch_cluster_cameras_owned",
    "Cameras whose lease this analyzer holds now.",
    ["analyzer"],
)
CAMERAS_UNPLACED = Gauge(
    "safewatch_cluster_cameras_unplaced",
    "Enabled cameras no live analyzer is eligible for (their labels match none): analysed by "
    "nobody, as this analyzer sees the cluster.",
    ["analyzer"],
)
CAMERAS_UNOWNED = Gauge(
    "safewatch_cluster_cameras_unowned",
    "Enabled cameras placed on a live analyzer that has not claimed them for several leases (its "
    "claim keeps failing, or it does not know the camera): analysed by nobody, as this analyzer "
    "sees the cluster.",
    ["analyzer"],
)
HELD_OFF = Gauge(
    "safewatch_cluster_held_off",
    "1 while this analyzer holds off claiming cameras because it lost its leases again and "
    "again (its database link keeps dropping): the others run its cameras meanwhile.",
    ["analyzer"],
)
TAKEOVERS = Counter(
    "safewatch_cluster_takeovers",
    "Expired leases this analyzer took over (their owner did not release them: it died, froze "
    "or lost the database); each closed the owner's open incidents and recorded a coverage gap.",
    ["analyzer"],
)
RELEASES = Counter(
    "safewatch_cluster_releases",
    "Cameras this analyzer stopped, by reason: rebalance, drain, removed (handed over), lost "
    "(could not renew in time).",
    ["analyzer", "reason"],
)
ROUND_FAILURES = Counter(
    "safewatch_cluster_round_failures",
    "Membership rounds (heartbeat, renew, claim) that failed, mostly an unreachable database.",
    ["analyzer"],
)

RELEASE_REASONS = ("rebalance", "drain", "removed", "lost")
"""The ``reason`` label values of :data:`RELEASES`."""


def start_at_zero(analyzer_id: str) -> None:
    """Create this analyzer's counter series at 0 (when it joins).

    A series created by its first ``inc()`` appears at 1, and ``increase()`` (which needs two
    samples of a series) reads that first takeover, release or failed round as nothing: an alert
    on it never fired for the first burst.
    """
    TAKEOVERS.labels(analyzer=analyzer_id)
    HELD_OFF.labels(analyzer=analyzer_id).set(0)
    ROUND_FAILURES.labels(analyzer=analyzer_id)
    for reason in RELEASE_REASONS:
        RELEASES.labels(analyzer=analyzer_id, reason=reason)
