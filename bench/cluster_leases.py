"""Cluster lease figures, in one process against a throwaway PostgreSQL (``safewatch.cluster``).

* ``failover``: three members share six cameras; one is stopped as a crash (no release); seconds
  from the crash until every one of its cameras was acquired by another member (listener time).
  Bounded by the lease (the survivors wait for it to expire) plus one poll.
* ``drain``: one member drains; per camera, seconds from its ``released("drain")`` to the next
  owner's ``acquired`` (the handover gap the issue bounds at 2 s).
* ``fence``: incident upserts per second through a fenced repository against an unfenced one on
  the same database, alternated in rounds; the ratio is the cost of the ``FOR SHARE`` check.

Run: ``python -m bench.cluster_leases [--lease 10] [--runs 10]``. Prints a summary and writes
``bench/results/cluster_leases.json``. The PostgreSQL server is throwaway, fsync off (leases are
small transactions; the figures are about waiting, not disk).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import write_results
from safewatch.cluster import ClusterMember, Takeover
from safewatch.domain import Incident, Severity
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.storage.migrate import upgrade

CAMERAS = [f"cam-{n}" for n in range(6)]


@dataclasses.dataclass
class Timeline:
    """Listener calls of every member, with the monotonic time they happened."""

    events: list[tuple[float, str, str, str]] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def listener(self, member: str) -> _Listener:
        return _Listener(self, member)

    def add(self, member: str, kind: str, camera: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), member, kind, camera))

    def first(self, kind: str, camera: str, after: float, member: str | None = None) -> float:
        with self.lock:
            for at, who, what, cam in self.events:
                if at >= after and what == kind and cam == camera and member in (None, who):
                    return at
        raise LookupError


@dataclasses.dataclass
class _Listener:
    timeline: Timeline
    member: str

    def acquired(self, camera_id: str, epoch: int, takeover: Takeover | None) -> None:
        self.timeline.add(self.member, "acquired", camera_id)

    def released(self, camera_id: str, reason: str) -> None:
        self.timeline.add(self.member, reason, camera_id)


def _wait(condition: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the cluster did not settle")
        time.sleep(0.02)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_s": round(statistics.median(values), 3),
        "p95_s": round(_percentile(values, 0.95), 3),
        "max_s": round(max(values), 3),
    }


def one_run(url: str, lease: float, folder: Path) -> tuple[float, list[float]]:
    """(failover seconds of a crashed member, drain gaps of another member)."""
    engine = create_engine_for(url, folder)
    upgrade(engine)
    timeline = Timeline()
    members = {
        name: ClusterMember(engine, name, CAMERAS, timeline.listener(name), lease_seconds=lease)
        for name in ("a", "b", "c")
    }
    try:
        for member in members.values():
            member.start()
        settle = 6 * lease + 30

        def balanced(names: tuple[str, ...], per: int) -> bool:
            return all(len(members[n].owned()) == per for n in names)

        _wait(lambda: balanced(("a", "b", "c"), 2), settle)
        lost = sorted(members["a"].owned())
        crashed = time.monotonic()
        members["a"].stop()
        _wait(lambda: balanced(("b", "c"), 3), settle)
        failover = max(timeline.first("acquired", c, crashed) for c in lost) - crashed

        moving = sorted(members["b"].owned())
        drained = time.monotonic()
        members["b"].drain(timeout=settle)
        _wait(lambda: len(members["c"].owned()) == 6, settle)
        gaps = [
            timeline.first("acquired", c, drained, "c") - timeline.first("drain", c, drained, "b")
            for c in moving
        ]
        return failover, gaps
    finally:
        for member in members.values():
            member.stop()
        engine.dispose()


def fence_cost(url: str, folder: Path, rounds: int = 5, count: int = 200) -> dict[str, Any]:
    """Upserts per second with and without the fence, alternated (same database)."""
    engine = create_engine_for(url, folder)
    upgrade(engine)
    member = ClusterMember(engine, "solo", ["cam-f"], Timeline().listener("solo"), lease_seconds=30)
    fenced = IncidentRepository(engine, fence=member.fence)
    plain = IncidentRepository(engine)
    member.start()
    rates: dict[str, list[float]] = {"fenced": [], "plain": []}
    try:
        _wait(lambda: member.owned() == {"cam-f"}, 60)
        for r in range(rounds):
            for name, repo in (("plain", plain), ("fenced", fenced)):
                started = time.perf_counter()
                for n in range(count):
                    repo.upsert(
                        Incident(
                            id=f"{name}-{r}-{n}",
                            camera_id="cam-f",
                            rule_id="helmet",
                            rule_kind="ppe",
                            severity=Severity.HIGH,
                            track_ids=(n,),
                            started_at=1000.0 + n,
                            ended_at=None,
                            peak_confidence=0.8,
                            message="bench",
                            snapshot=None,
                        )
                    )
                rates[name].append(count / (time.perf_counter() - started))
    finally:
        member.stop()
        engine.dispose()
    plain_rate = statistics.median(rates["plain"])
    fenced_rate = statistics.median(rates["fenced"])
    return {
        "upserts_per_s_plain": round(plain_rate, 1),
        "upserts_per_s_fenced": round(fenced_rate, 1),
        "fenced_over_plain": round(fenced_rate / plain_rate, 3),
        "rounds": rounds,
        "per_round": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=float, default=10.0, help="lease seconds (default 10)")
    parser.add_argument("--runs", type=int, default=10, help="failover/drain runs (default 10)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from db_servers import PostgresServer, postgres_unavailable

    reason = postgres_unavailable()
    if reason is not None:
        raise SystemExit(reason)
    server = PostgresServer.start()
    failovers: list[float] = []
    gaps: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for run in range(args.runs):
                with server.fresh_schema() as url:
                    failover, drain_gaps = one_run(url, args.lease, Path(folder))
                failovers.append(failover)
                gaps += drain_gaps
                print(
                    f"run {run + 1}: failover {failover:.2f} s, drain gaps "
                    f"{', '.join(f'{g:.2f}' for g in drain_gaps)} s",
                    flush=True,
                )
            with server.fresh_schema() as url:
                fence = fence_cost(url, Path(folder))
    finally:
        server.stop()
    result = {
        "lease_s": args.lease,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "failover": _summary(failovers),
        "drain_gap": _summary(gaps),
        "fence": fence,
    }
    print(result)
    print(f"wrote {write_results('cluster_leases', result)}")


if __name__ == "__main__":
    main()
