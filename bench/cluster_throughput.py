"""Does a second analyzer add analysis capacity? Frames analysed per minute, one vs two analyzers.

Side ``one``: one ``safewatch serve --cluster --role analyzer`` pinned to CPU 0 (``taskset``; its
decode processes inherit the pinning) owns every camera. Side ``two``: two analyzers, pinned to
CPU 0 and CPU 1, share them. The cameras ask for more frames than one core can analyse (looping
copies of the shared clip at ``--fps``), so each side analyses what its cores allow and drops the
rest; the figure is frames analysed per minute over a window once every camera runs, summed over
the analyzers (their ``safewatch_camera_analysed_frames`` counters). Sides alternate over
``--rounds`` rounds on one PostgreSQL; the ratio two/one is printed per round and overall (the
issue's target is at least 1.7).

Run: ``python -m bench.cluster_throughput [--rounds 2] [--window 60] [--cameras 4] [--fps 8]``.
Needs two CPUs and ``taskset`` (util-linux). Writes ``bench/results/cluster_throughput.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT, require_asset, write_results

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from cluster_serve_support import (
    CLIP,
    MODEL,
    Analyzer,
    analysed_counts,
    balanced,
    safewatch,
    wait_for,
    write_cluster_site,
)

from db_servers import PostgresServer


def _total(analyzers: list[Analyzer]) -> float:
    return sum(sum(analysed_counts(a.metrics()).values()) for a in analyzers)


def _owners(analyzers: list[Analyzer]) -> dict[str, set[str]]:
    return {
        a.name: {c for c, n in analysed_counts(a.metrics()).items() if n > 0} for a in analyzers
    }


def side(
    name: str, cpus: list[int], site: Path, folder: Path, cameras: int, window: float
) -> float:
    """Frames analysed per minute by analyzers pinned to ``cpus`` (one analyzer per CPU)."""
    analyzers = [
        Analyzer(
            f"{name}-{cpu}-{time.monotonic_ns()}", site, folder, prefix=("taskset", "-c", str(cpu))
        )
        for cpu in cpus
    ]
    try:
        for analyzer in analyzers:
            analyzer.start()
        names = [a.name for a in analyzers]

        def settled() -> bool:
            try:
                return balanced(_owners(analyzers), names, cameras)
            except httpx.HTTPError:
                return False  # not serving yet

        wait_for(settled, 240, f"side {name}: every camera analysed")
        time.sleep(10)  # past the start-up: decode, warm-up, the first batches
        start, started = _total(analyzers), time.monotonic()
        time.sleep(window)
        frames, seconds = _total(analyzers) - start, time.monotonic() - started
        if not balanced(_owners(analyzers), names, cameras):
            raise SystemExit(f"side {name}: cameras moved during the window; rerun")
        return frames / seconds * 60.0
    finally:
        for analyzer in analyzers:
            if analyzer.alive():
                analyzer.signal(signal.SIGTERM)
        for analyzer in analyzers:
            try:
                analyzer.wait(90)
            except Exception:
                analyzer.ensure_gone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured per side")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--fps", type=float, default=8.0, help="analysis fps asked per camera")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        raise SystemExit("needs two CPUs and taskset (util-linux)")
    server = PostgresServer.start()
    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="cluster-throughput-") as tmp:
            folder = Path(tmp)
            site = write_cluster_site(
                folder,
                server.url(),
                require_asset(CLIP),
                require_asset(MODEL),
                cameras=args.cameras,
                lease_seconds=5.0,
                fps=args.fps,
            )
            upgraded = safewatch("db", "upgrade", "--config", str(site))
            if upgraded.returncode != 0:
                raise SystemExit(upgraded.stdout + upgraded.stderr)
            for number in range(args.rounds):
                order = [("one", [0]), ("two", [0, 1])]
                if number % 2:
                    order.reverse()
                figures: dict[str, Any] = {}
                for label, cpus in order:
                    figures[f"{label}_load_before"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
                    figures[label] = round(
                        side(label, cpus, site, folder, args.cameras, args.window), 1
                    )
                figures["ratio"] = round(figures["two"] / figures["one"], 3)
                rounds.append(figures)
                print(
                    f"round {number + 1}: one analyzer {figures['one']:.0f} frames/min, two "
                    f"{figures['two']:.0f} frames/min, ratio {figures['ratio']:.2f} (load "
                    f"{figures['one_load_before']} / {figures['two_load_before']})",
                    flush=True,
                )
    finally:
        server.stop()
    one = sum(r["one"] for r in rounds)
    two = sum(r["two"] for r in rounds)
    result = {
        "cameras": args.cameras,
        "fps_asked": args.fps,
        "window_seconds": args.window,
        "rounds": rounds,
        "ratio": round(two / one, 3),
        "cpus": os.cpu_count(),
    }
    out = write_results("cluster_throughput", result)
    print(f"two analyzers / one: {result['ratio']:.2f} over {args.rounds} rounds; {out}")


if __name__ == "__main__":
    main()
