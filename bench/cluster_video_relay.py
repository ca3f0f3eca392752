"""What the API node's relay adds to the live video of a camera another analyzer owns.

One ``safewatch serve --cluster --role analyzer`` process owns one looping file camera (the
shared construction clip, analysed at 2 fps, its video re-encoded blurred at the clip's own
rate); one ``--role api`` process relays it (:mod:`safewatch.api.cluster_video`). In each round
two clients watch the same feed at once: one on the owner's internal endpoint (with a grant
signed here), one on the API node's ``/api/v1/ws/cameras/cam1/video``. Both receive the very
same fragments, so the difference of their arrival times is the hop alone (paired, no
alternation needed); ``--viewers`` more relayed viewers load the API node meanwhile.

Prints p50/p95/max of the added latency per round and over all, with the machine's load;
writes ``bench/results/cluster_video_relay.json``.

Run: ``python -m bench.cluster_video_relay [--rounds 3] [--fragments 300] [--viewers 0]
[--api-nice 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import websockets
import yaml
from sqlalchemy import text

from bench._common import ROOT, require_asset, write_results

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from cluster_serve_support import (
    CLIP,
    MODEL,
    SAFEWATCH,
    Analyzer,
    free_port,
    paired_arrivals,
    percentile,
    safewatch,
    wait_for,
    write_cluster_site,
)

from db_servers import PostgresServer
from safewatch.api.cluster_video import GRANT_HEADER, INTERNAL_PREFIX, sign_grant
from safewatch.storage import create_engine_for

SECRET = "bench-cluster-secret-0123456789"


async def _idle_viewer(url: str, headers: dict[str, str], stop: asyncio.Event) -> None:
    async with websockets.connect(url, additional_headers=headers, max_size=None) as feed:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(feed.recv(), 0.5)


async def _round(
    direct: str, grant: dict[str, str], relayed: str, headers: dict[str, str], n: int, extra: int
) -> list[float]:
    stop = asyncio.Event()
    others = [asyncio.create_task(_idle_viewer(relayed, headers, stop)) for _ in range(extra)]
    try:
        return await paired_arrivals(direct, grant, relayed, headers, n)
    finally:
        stop.set()
        await asyncio.gather(*others, return_exceptions=True)


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def run(rounds: int, fragments: int, viewers: int, api_nice: int, folder: Path) -> dict[str, Any]:
    """Start PostgreSQL, an analyzer and an API node; measure ``rounds`` rounds."""
    server = PostgresServer.start()
    analyzer: Analyzer | None = None
    api: subprocess.Popen[str] | None = None
    os.environ["SAFEWATCH_CLUSTER_SECRET"] = SECRET
    try:
        url = server.url()
        site = write_cluster_site(
            folder, url, require_asset(CLIP), require_asset(MODEL), cameras=1, lease_seconds=10
        )
        document = yaml.safe_load(site.read_text())
        document["cluster"]["secret"] = "${SAFEWATCH_CLUSTER_SECRET}"
        site.write_text(yaml.safe_dump(document))
        upgraded = safewatch("db", "upgrade", "--config", str(site))
        if upgraded.returncode != 0:
            raise SystemExit(upgraded.stdout + upgraded.stderr)
        engine = create_engine_for(url, folder)
        from safewatch.api.auth.store import AuthStore

        store = AuthStore(engine)
        store.add_user("admin", "correct horse battery", "admin")
        headers = {"Authorization": f"Bearer {store.create_token('admin', 'bench').token}"}
        port = free_port()
        with (folder / "api.log").open("a") as log:
            api = subprocess.Popen(
                [str(SAFEWATCH), "serve", "--config", str(site), "--cluster", "--role", "api",
                 "--port", str(port), "--api-nice", str(api_nice)],
                stdout=log, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 120, "the API node")
        analyzer = Analyzer("a1", site, folder).start()

        def video_url() -> str | None:
            with engine.connect() as connection:
                row = connection.execute(
                    text(
                        "SELECT a.video_url FROM camera_leases l JOIN cluster_analyzers a "
                        "ON a.analyzer_id = l.owner WHERE l.camera_id = 'cam1'"
                    )
                ).first()
            return None if row is None else str(row.video_url)

        base = wait_for(video_url, 120, "a1 owning cam1")
        direct = f"{base.replace('http', 'ws', 1)}{INTERNAL_PREFIX}cam1/video"
        relayed = f"ws://127.0.0.1:{port}/api/v1/ws/cameras/cam1/video"
        everything: list[float] = []
        per_round = []
        for number in range(rounds):
            grant = {GRANT_HEADER: sign_grant(SECRET, "a1", "cam1", "blurred", "bench")}
            load = _load()
            added = asyncio.run(_round(direct, grant, relayed, headers, fragments, viewers))
            everything.extend(added)
            figures = {
                "fragments": len(added),
                "p50_ms": percentile(added, 0.5) * 1000,
                "p95_ms": percentile(added, 0.95) * 1000,
                "max_ms": max(added) * 1000,
                "load": load,
            }
            per_round.append(figures)
            print(
                f"round {number + 1}/{rounds}: {len(added)} fragments, added p50 "
                f"{figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms, max "
                f"{figures['max_ms']:.1f} ms; load {load}",
                flush=True,
            )
        return {
            "figure": "arrival through the API node minus arrival from the owner, same fragment",
            "extra_relayed_viewers": viewers,
            "api_nice": api_nice,
            "rounds": per_round,
            "p50_ms": percentile(everything, 0.5) * 1000,
            "p95_ms": percentile(everything, 0.95) * 1000,
            "fragments": len(everything),
        }
    finally:
        os.environ.pop("SAFEWATCH_CLUSTER_SECRET", None)
        if analyzer is not None:
            analyzer.ensure_gone()
        if api is not None:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(30)
            except subprocess.TimeoutExpired:
                api.kill()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fragments", type=int, default=300)
    parser.add_argument("--viewers", type=int, default=0, help="extra relayed viewers")
    parser.add_argument("--api-nice", type=int, default=10, help="serve --api-nice of the API")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="safewatch-video-relay-"))
    try:
        result = run(args.rounds, args.fragments, args.viewers, args.api_nice, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"all: {result['fragments']} fragments, added p50 {result['p50_ms']:.1f} ms, "
        f"p95 {result['p95_ms']:.1f} ms"
    )
    name = f"cluster_video_relay_v{args.viewers}_n{args.api_nice}"
    print(f"wrote {write_results(name, result)}")


if __name__ == "__main__":
    main()
