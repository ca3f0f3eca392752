"""``safewatch serve --cluster`` failover and drain, end to end, with real analyzer processes.

Three ``safewatch serve --cluster --role analyzer`` processes share six looping copies of the
shared construction clip (YOLOX-Nano, 2 fps each) on a throwaway PostgreSQL. Each run:

* ``kill`` (default): one analyzer that owns cameras is killed with SIGKILL; for each of its
  cameras, seconds from the kill to the first frame analysed by another analyzer (its
  ``safewatch_camera_analysed_frames`` counter in ``/metrics``, sampled every 0.25 s). The run's
  figure is its slowest camera: "all its cameras analysed again within". A replacement analyzer
  joins and the next run starts once the six cameras are balanced again.
* ``drain``: one analyzer gets SIGTERM; per camera, seconds from its last frame analysed there to
  the first one analysed by the next owner (the handover gap, decode start and first inference
  included).

Unlike ``bench/cluster_leases.py`` (listener calls in one process), this times what an operator
sees: a camera analysed again. Prints p50/p95 over the runs, the lease used and the machine's
load; writes ``bench/results/cluster_failover_<scenario>.json``.

Run: ``python -m bench.cluster_failover [--scenario kill|drain] [--runs 10] [--lease 10]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import ROOT, require_asset, write_results

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from cluster_serve_support import (
    CLIP,
    MODEL,
    Analyzer,
    FrameSampler,
    balanced,
    safewatch,
    wait_for,
    write_cluster_site,
)

from db_servers import PostgresServer

CAMERAS = 6


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


def run(scenario: str, runs: int, lease: float, folder: Path) -> dict[str, Any]:
    """Start the cluster, repeat the scenario ``runs`` times, return the figures."""
    server = PostgresServer.start()
    analyzers: list[Analyzer] = []
    try:
        url = server.url()
        site = write_cluster_site(
            folder,
            url,
            require_asset(CLIP),
            require_asset(MODEL),
            cameras=CAMERAS,
            lease_seconds=lease,
        )
        upgraded = safewatch("db", "upgrade", "--config", str(site))
        if upgraded.returncode != 0:
            raise SystemExit(upgraded.stdout + upgraded.stderr)
        names = iter(f"a{n}" for n in range(1, 1000))
        live = [Analyzer(next(names), site, folder).start() for _ in range(3)]
        analyzers.extend(live)
        sampler = FrameSampler(live).start()
        settle = 120 + 3 * lease

        def settled() -> None:
            names_live = [a.name for a in live]
            wait_for(lambda: balanced(sampler.owners(), names_live, CAMERAS), settle, "balance")

        settled()
        per_run: list[float] = []
        per_camera: list[float] = []
        loads: list[str] = []
        for number in range(runs):
            owners = sampler.owners()
            victim = max(live, key=lambda a: len(owners.get(a.name, set())))
            cameras = set(owners[victim.name])
            loads.append(_load())
            at = time.monotonic()
            victim.signal(signal.SIGKILL if scenario == "kill" else signal.SIGTERM)
            victim.wait(120)
            last = {c: sampler.last_growth_of(victim.name, c) or at for c in cameras}
            sampler.forget(victim.name)
            live.remove(victim)
            gone = victim.name
            times = []
            for camera in sorted(cameras):

                def moved(camera: str = camera, at: float = at, gone: str = gone) -> float | None:
                    return sampler.first_elsewhere(camera, at, gone)

                first = wait_for(moved, settle, f"camera {camera} analysed again")
                times.append(first - (at if scenario == "kill" else last[camera]))
            per_camera.extend(times)
            per_run.append(max(times))
            print(
                f"run {number + 1}/{runs}: {scenario} {victim.name} ({len(cameras)} cameras): "
                f"{', '.join(f'{t:.1f}' for t in times)} s; load {loads[-1]}",
                flush=True,
            )
            replacement = Analyzer(next(names), site, folder).start()
            analyzers.append(replacement)
            live.append(replacement)
            sampler.add(replacement)
            settled()
        sampler.stop()
        return {
            "scenario": scenario,
            "lease_seconds": lease,
            "runs": runs,
            "cameras": CAMERAS,
            "analyzers": 3,
            "figure": "kill to first frame analysed elsewhere, slowest camera of the run"
            if scenario == "kill"
            else "last frame analysed by the drained owner to first by the next, per camera",
            "per_run_seconds": [round(t, 2) for t in per_run],
            "per_camera_seconds": [round(t, 2) for t in per_camera],
            "p50_seconds": round(_quantile(per_run, 0.50), 2),
            "p95_seconds": round(_quantile(per_run, 0.95), 2),
            "camera_p50_seconds": round(_quantile(per_camera, 0.50), 2),
            "camera_p95_seconds": round(_quantile(per_camera, 0.95), 2),
            "load_at_each_run": loads,
            "cpus": os.cpu_count(),
        }
    finally:
        for analyzer in analyzers:
            analyzer.ensure_gone()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("kill", "drain"), default="kill")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lease", type=float, default=10.0, help="cluster.lease_seconds")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cluster-failover-"))
    try:
        figures = run(args.scenario, args.runs, args.lease, folder)
    except BaseException:
        print(f"failed; the analyzers' logs are in {folder}", file=sys.stderr)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    out = write_results(f"cluster_failover_{args.scenario}", figures)
    print(
        f"{args.scenario}: lease {args.lease:g} s, {args.runs} runs: p50 "
        f"{figures['p50_seconds']:.1f} s, p95 {figures['p95_seconds']:.1f} s (per camera p50 "
        f"{figures['camera_p50_seconds']:.1f} s, p95 {figures['camera_p95_seconds']:.1f} s); "
        f"load at the runs {figures['load_at_each_run']}; {out}"
    )


if __name__ == "__main__":
    main()
