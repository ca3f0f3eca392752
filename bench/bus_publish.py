"""What publishing incident changes to Redis costs an incident write, and how fast they arrive.

On a throwaway PostgreSQL (durable: fsync on, as in production) and a throwaway redis-server,
rounds alternate two sides over the same kind of writes (a new incident, then its close):

* **plain**: ``IncidentRepository.upsert`` alone;
* **bus**: the same with :class:`~safewatch.bus.PublishAfterCommit` onto a
  :class:`~safewatch.bus.redis_streams.RedisPublisher` (what an analyzer runs).

Then, as a second phase, an :class:`~safewatch.bus.redis_streams.IncidentFeed` (what an API
node runs, elsewhere in production) follows the stream on another thread while the bus side
writes again: the commit-to-delivery latency. Printed: each side's median write time, the ratio
bus/plain (the write's cost of the bus: the publish only queues after the commit), and the
delivery latency (p50, p95).
The load average is printed with them (the machine is shared).

Run: ``python -m bench.bus_publish [--rounds N] [--writes N]``; JSON goes to
``bench/results/bus_publish.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from bench._common import write_results
from safewatch.bus import Envelope, PublishAfterCommit
from safewatch.domain import Incident, Severity, incident_id
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.storage.migrate import upgrade


def incident(n: int, ended: bool) -> Incident:
    return Incident(
        id=incident_id("cam-1", "hardhat", n, 1000.0),
        camera_id="cam-1",
        rule_id="hardhat",
        rule_kind="ppe",
        severity=Severity.HIGH,
        track_ids=(n,),
        started_at=1000.0,
        ended_at=1004.0 if ended else None,
        peak_confidence=0.6,
        message=f"person #{n} without hardhat",
    )


class Arrivals:
    """The feed's sink: when each seq arrived."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    def publish(self, envelope: Envelope) -> None:
        if envelope.seq is not None:
            self.at[envelope.seq] = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--writes", type=int, default=100, help="writes per round and side")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from db_servers import PostgresServer
    from redis_server import RedisServer
    from safewatch.bus.redis_streams import BusKeys, IncidentFeed, RedisPublisher, connect

    keys = BusKeys.for_name("bench")
    pg = PostgresServer.start(durable=True)
    redis = RedisServer.start()
    try:
        with pg.fresh_schema() as plain_url, pg.fresh_schema() as bus_url:
            engines = [create_engine_for(u, Path(".")) for u in (plain_url, bus_url)]
            for engine in engines:
                upgrade(engine)
            # One schema each: the feed follows the bus side's chain only, as in production,
            # where every change of the chain goes through the hook.
            plain = IncidentRepository(engines[0])
            bused = IncidentRepository(engines[1])
            publisher = RedisPublisher(connect(redis.url), keys=keys).start()
            bused.add_change_hook(PublishAfterCommit(publisher))
            committed: dict[int, float] = {}
            times: dict[str, list[float]] = {"plain": [], "bus": []}
            counts = {"plain": 0, "bus": 0}
            for round_no in range(args.rounds):
                order = ("plain", "bus") if round_no % 2 == 0 else ("bus", "plain")
                for side in order:
                    repository = bused if side == "bus" else plain
                    for _ in range(args.writes // 2):
                        counts[side] += 1
                        n = counts[side]
                        for ended in (False, True):
                            start = time.perf_counter()
                            repository.upsert(incident(n, ended))
                            done = time.perf_counter()
                            times[side].append(done - start)
            publisher.flush(30)
            feed = IncidentFeed(
                connect(redis.url), bused, keys=keys, block_ms=200, resync_seconds=600
            )
            arrivals, stop = Arrivals(), threading.Event()
            feed.poll(arrivals)  # start at the head
            reader = threading.Thread(target=feed.run, args=(arrivals, stop), daemon=True)
            reader.start()
            for _ in range(args.writes):
                counts["bus"] += 1
                n = counts["bus"]
                for ended in (False, True):
                    bused.upsert(incident(n, ended))
                    committed[n * 2 - (0 if ended else 1)] = time.perf_counter()  # seqs 2n-1, 2n
                time.sleep(0.01)  # a trickle, as incidents come
            publisher.flush(30)
            time.sleep(1.0)
            stop.set()
            reader.join(5)
            publisher.stop(5)
            for engine in engines:
                engine.dispose()
    finally:
        redis.stop()
        pg.stop()
    plain_ms = statistics.median(times["plain"]) * 1e3
    bus_ms = statistics.median(times["bus"]) * 1e3
    latencies = sorted(
        (arrivals.at[seq] - at) * 1e3 for seq, at in committed.items() if seq in arrivals.at
    )
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    load = os.getloadavg()
    result = {
        "load_average": load,
        "write_ms_median": {"plain": plain_ms, "bus": bus_ms},
        "ratio_bus_over_plain": bus_ms / plain_ms,
        "delivery_ms": {
            "p50": statistics.median(latencies),
            "p95": p95,
            "delivered": len(latencies),
            "published": len(committed),
        },
        "backfilled": feed.backfilled,
    }
    print(
        f"incident write median: plain {plain_ms:.2f} ms, with the bus {bus_ms:.2f} ms "
        f"(ratio {bus_ms / plain_ms:.3f}); commit to feed delivery p50 "
        f"{statistics.median(latencies):.1f} ms p95 {p95:.1f} ms "
        f"({len(latencies)}/{len(committed)} delivered, {feed.backfilled} from the chain); "
        f"load {', '.join(f'{x:.1f}' for x in load)}"
    )
    print(f"wrote {write_results('bus_publish', result)}")


if __name__ == "__main__":
    main()
