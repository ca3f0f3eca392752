"""``safewatch serve`` under API load: is the analysis isolated from the HTTP clients? (issue 13)

Runs the real single command (``safewatch serve``) on the example site (``examples/site.yaml``:
the construction clip played as a looped 5 fps camera through YOLOX-Nano and the PPE model,
rules and incidents into SQLite), with 1,000 incidents seeded so the list and the statistics
have rows to count. Then it alternates windows of ``--seconds`` each:

    idle -> load (50 clients on the incident list and statistics) -> idle -> login flood -> idle

and prints, per loaded window, the camera's analysed fps against the mean of the idle windows
around it (target >= 0.95), the API's p50/p95 latency (target p95 <= 300 ms), connection errors
(target 0) and HTTP 5xx answers, with the machine's load average at the end of every window.
Alternating idle windows on both sides of a loaded one cancels most of the drift of a shared
host (other people's jobs starting and ending).

The clients are asyncio tasks in a separate process, each with its own keep-alive connection,
sending their next request as soon as the previous answer arrived (closed loop, no think time):
half ask for a page of 50 incidents, half for counts per hour and camera. The login flood sends
wrong passwords for random user names, unauthenticated. The load generator runs at ``nice``
``--load-nice`` (default 0), i.e. it competes with the analysis like any process would; real
clients run on other machines.

Levers (``--api``, ``--api-nice``, ``--query-cache``) are passed to ``safewatch serve``, so the
same bench measures the old shape (``--api thread --query-cache 0``) and the new one.
JSON goes to ``bench/results/api_load_<label>.json``.

``python -m bench.api_load [--seconds 60] [--clients 50] [--api process] [--label NAME]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from bench._common import ROOT, require_asset, write_results

CAMERA = "yard"
SEEDED = 1000
MODELS = {"coco": "models/yolox_nano_coco.onnx", "ppe": "models/ppe14_yolov8n.onnx"}
"""The example site's models, by key, as shared assets."""
CLIP = "video/construction_cctv_640x352_24s.mp4"


# -- the site -------------------------------------------------------------------------------------


def write_site(folder: Path, port: int) -> Path:
    """The example site with absolute asset paths, its storage in ``folder``."""
    site = yaml.safe_load((ROOT / "examples" / "site.yaml").read_text())
    for key, model in site["models"].items():  # the shared copies: no download during a bench
        model["path"] = str(require_asset(MODELS[key]))
    site["cameras"][CAMERA]["source"] = str(require_asset(CLIP))
    site["storage"] = {"database": "sqlite:///data/safewatch.db", "evidence_dir": "data/evidence"}
    site["runtime"] = {"http": {"host": "127.0.0.1", "port": port}}
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    shutil.copytree(ROOT / "examples" / "rules", folder / "rules")
    return path


def provision(site_path: Path) -> str:
    """Seed incidents, add a viewer, return an API token."""
    from safewatch.api.auth import AuthStore
    from safewatch.config.loader import load_site
    from safewatch.domain import Incident, IncidentStatus, Severity
    from safewatch.incidents.site_storage import open_site_storage

    storage = open_site_storage(load_site(site_path), auto_upgrade=True)
    try:
        now = time.time()
        rng = random.Random(13)
        for i in range(SEEDED):
            start = now - rng.uniform(0, 7 * 86400)
            storage.repository.upsert(
                Incident(
                    id=f"seed{i:05d}",
                    camera_id=CAMERA,
                    rule_id=rng.choice(["hardhat-required", "no-entry-drop-zone", "vest"]),
                    rule_kind=rng.choice(["ppe", "zone_intrusion"]),
                    severity=rng.choice(list(Severity)),
                    track_ids=(rng.randrange(1, 500),),
                    started_at=start,
                    ended_at=start + rng.uniform(1, 60),
                    peak_confidence=rng.uniform(0.3, 0.95),
                    message="seeded for bench.api_load",
                    status=rng.choice(list(IncidentStatus)),
                )
            )
        store = AuthStore(storage.engine)
        store.add_user("bench", "bench-password-123", "viewer")
        return store.create_token("bench", "api load bench").token
    finally:
        storage.close()


@contextlib.contextmanager
def server(site_path: Path, options: Sequence[str]) -> Iterator[subprocess.Popen[bytes]]:
    """``safewatch serve`` on the site until the block ends (SIGTERM, graceful)."""
    log = (site_path.parent / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "safewatch", "serve", "-c", str(site_path), *options],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# -- measuring ------------------------------------------------------------------------------------


def analysed(base: str, token: str) -> tuple[float, float]:
    """``(time, analysed frames of the camera)`` from ``/metrics``."""
    headers = {"Authorization": f"Bearer {token}"}
    text = httpx.get(f"{base}/metrics", headers=headers, timeout=30).text
    prefix = f'safewatch_camera_analysed_frames_total{{camera="{CAMERA}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return time.monotonic(), float(line[len(prefix) :])
    return time.monotonic(), 0.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What the clients saw in one loaded window."""

    requests: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    connection_errors: int
    timeouts: int
    server_errors: int
    client_cpu_s: float
    statuses: dict[str, int]


async def _clients(
    base: str, token: str, kind: str, clients: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    timeouts = 0
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def one(index: int) -> None:
        nonlocal errors, timeouts
        rng = random.Random(index)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            turn = index
            while time.monotonic() < deadline:
                turn += 1
                started = time.monotonic()
                try:
                    if kind == "login":
                        name = f"nobody{rng.randrange(10**6)}"
                        response = await client.post(
                            "/api/v1/auth/login", json={"username": name, "password": "wrong"}
                        )
                    elif turn % 2:
                        response = await client.get(
                            "/api/v1/incidents", params={"limit": 50}, headers=headers
                        )
                    else:
                        response = await client.get(
                            "/api/v1/stats", params={"by": ["hour", "camera"]}, headers=headers
                        )
                except httpx.TimeoutException:  # no answer in 60 s
                    timeouts += 1
                    continue
                except httpx.TransportError:  # refused, reset, closed mid-answer
                    errors += 1
                    continue
                latencies.append(time.monotonic() - started)
                key = str(response.status_code)
                statuses[key] = statuses.get(key, 0) + 1

    await asyncio.gather(*(one(i) for i in range(clients)))
    return {"latencies": latencies, "statuses": statuses, "errors": errors, "timeouts": timeouts}


async def _raw_clients(
    base: str, token: str, kind: str, clients: int, seconds: float
) -> dict[str, Any]:
    """The list+stats clients on bare asyncio streams (HTTP/1.1 keep-alive, one connection
    each): about a tenth of httpx's CPU per request, so on a shared host the generator takes
    less of the CPU the server is measured on (real clients run elsewhere)."""
    if kind == "login":
        raise SystemExit("--client raw drives the list+stats load only")
    host, _, port = base.removeprefix("http://").partition(":")
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = timeouts = 0
    deadline = time.monotonic() + seconds
    paths = ("/api/v1/incidents?limit=50", "/api/v1/stats?by=hour&by=camera")
    requests = [
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        for path in paths
    ]

    async def one(index: int) -> None:
        nonlocal errors, timeouts
        turn = index
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while time.monotonic() < deadline:
            turn += 1
            started = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                assert reader is not None
                writer.write(requests[turn % 2])
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                status = head.split(b" ", 2)[1].decode()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await asyncio.wait_for(reader.readexactly(length), 60)
            except TimeoutError:
                timeouts += 1
                writer = None
                continue
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors += 1
                writer = None
                continue
            latencies.append(time.monotonic() - started)
            statuses[status] = statuses.get(status, 0) + 1
        if writer is not None:
            writer.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return {"latencies": latencies, "statuses": statuses, "errors": errors, "timeouts": timeouts}


def _load_main(
    base: str,
    token: str,
    kind: str,
    clients: int,
    seconds: float,
    nice: int,
    out: Any,
    client: str = "httpx",
) -> None:
    if nice:
        os.nice(nice)
    run = _raw_clients if client == "raw" else _clients
    result = asyncio.run(run(base, token, kind, clients, seconds))
    result["cpu"] = time.process_time()
    out.send(result)


def load(
    base: str,
    token: str,
    kind: str,
    clients: int,
    seconds: float,
    nice: int,
    client: str = "httpx",
) -> LoadResult:
    """Run the clients in their own process for ``seconds`` (``client``: httpx or raw)."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_load_main, args=(base, token, kind, clients, seconds, nice, theirs, client)
    )
    process.start()
    raw = ours.recv()
    process.join()
    lat = sorted(raw["latencies"])

    def pct(q: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else 0.0

    statuses: dict[str, int] = raw["statuses"]
    return LoadResult(
        requests=len(lat),
        p50_ms=pct(0.50),
        p95_ms=pct(0.95),
        max_ms=round(1000 * lat[-1], 1) if lat else 0.0,
        connection_errors=int(raw["errors"]),
        timeouts=int(raw["timeouts"]),
        client_cpu_s=round(float(raw["cpu"]), 1),
        server_errors=sum(n for code, n in statuses.items() if code.startswith("5")),
        statuses=statuses,
    )


class Processes:
    """CPU seconds of the server (analysis) and of its API process, found by the socket."""

    def __init__(self, server_pid: int, port: int) -> None:
        self.server = psutil.Process(server_pid)
        self.port = port

    def api(self) -> psutil.Process | None:
        """The child holding the listening socket (``None`` with ``--api thread``)."""
        for child in self.server.children():
            with contextlib.suppress(psutil.Error):
                for conn in child.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port:
                        return child
        return None

    def cpu(self) -> dict[str, float]:
        """``{"server": s, "api": s}`` user+system CPU seconds so far."""
        out = {"server": sum(self.server.cpu_times()[:2])}
        api = self.api()
        out["api"] = sum(api.cpu_times()[:2]) if api is not None else 0.0
        return out


@dataclass(frozen=True, slots=True)
class Window:
    """One measured window.

    Attributes:
        cpu: CPU seconds spent in the window by the server process (analysis; with
            ``--api thread`` also the HTTP server) and by the API process.
    """

    name: str
    seconds: float
    fps: float
    load_average: tuple[float, float, float]
    cpu: dict[str, float]
    clients: LoadResult | None = None


def window(
    name: str,
    base: str,
    token: str,
    seconds: float,
    kind: str | None,
    args: argparse.Namespace,
    processes: Processes,
) -> Window:
    """Analysed fps over ``seconds``, idle (``kind`` None) or under the clients."""
    cpu0 = processes.cpu()
    t0, n0 = analysed(base, token)
    result = None
    if kind is None:
        time.sleep(seconds)
    else:
        result = load(base, token, kind, args.clients, seconds, args.load_nice, args.client)
    t1, n1 = analysed(base, token)
    cpu1 = processes.cpu()
    cpu = {key: round(cpu1[key] - cpu0[key], 2) for key in cpu0}
    fps = (n1 - n0) / (t1 - t0)
    shown = (
        f"{name:>6}: {fps:5.2f} analysed fps, load average {os.getloadavg()[0]:.1f}, CPU s "
        f"server {cpu['server']:.1f} api {cpu['api']:.1f}"
    )
    if result is not None:
        shown += (
            f"; {result.requests} requests, p50 {result.p50_ms:.0f} ms, p95 "
            f"{result.p95_ms:.0f} ms, {result.connection_errors} connection errors, "
            f"{result.timeouts} timeouts (60 s), {result.server_errors} 5xx, statuses "
            f"{result.statuses}; clients' CPU {result.client_cpu_s:.1f} s"
        )
    print(shown, flush=True)
    return Window(name, round(t1 - t0, 1), round(fps, 3), os.getloadavg(), cpu, result)


def wait_ready(base: str, token: str, timeout: float = 120.0) -> None:
    """Until the camera has analysed frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if analysed(base, token)[1] > 10:
                return
        time.sleep(1.0)
    raise SystemExit(f"the server did not analyse frames within {timeout:g} s")


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="Length of every window.")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--api", choices=["process", "thread"], default="process")
    parser.add_argument("--api-nice", type=int, default=10)
    parser.add_argument("--query-cache", type=float, default=2.0)
    parser.add_argument("--load-nice", type=int, default=0, help="nice of the load generator.")
    parser.add_argument("--no-login", action="store_true", help="Skip the login flood.")
    parser.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="httpx",
        help="Load generator: httpx (as before) or bare asyncio streams (list+stats only; "
        "a tenth of the CPU per request, so the shared host's CPU goes to the server).",
    )
    parser.add_argument("--label", default=None, help="Results file suffix.")
    args = parser.parse_args(argv)
    options = [
        f"--api={args.api}",
        f"--api-nice={args.api_nice}",
        f"--query-cache={args.query_cache}",
    ]
    label = args.label or f"{args.api}_nice{args.api_nice}_cache{args.query_cache:g}"
    with tempfile.TemporaryDirectory(prefix="safewatch-api-load-") as tmp:
        port = free_port()
        site = write_site(Path(tmp), port)
        token = provision(site)
        base = f"http://127.0.0.1:{port}"
        print(f"safewatch serve {' '.join(options)}; {args.clients} clients, {args.seconds:g} s")
        with server(site, options) as process:
            wait_ready(base, token)
            time.sleep(args.warmup)
            processes = Processes(process.pid, port)
            plan: list[tuple[str, str | None]] = [("idle", None), ("list", "list"), ("idle", None)]
            if not args.no_login:
                plan += [("login", "login"), ("idle", None)]
            windows = [
                window(name, base, token, args.seconds, kind, args, processes)
                for name, kind in plan
            ]
    summary: list[dict[str, Any]] = []
    for i, item in enumerate(windows):
        if item.clients is None:
            continue
        idle = statistics.mean([windows[i - 1].fps, windows[i + 1].fps])
        ratio = item.fps / idle if idle else 0.0
        # the server's CPU (analysis + API) above the idle windows': what the requests cost it
        idle_cpu = statistics.mean(
            [sum(windows[i - 1].cpu.values()), sum(windows[i + 1].cpu.values())]
        )
        per_request = (sum(item.cpu.values()) - idle_cpu) / max(1, item.clients.requests)
        summary.append(
            {
                "window": item.name,
                "fps_ratio": round(ratio, 3),
                "server_cpu_ms_per_request": round(1000 * per_request, 2),
                **asdict(item.clients),
            }
        )
        print(
            f"{item.name}: analysed fps ratio loaded/idle {ratio:.2f} (target >= 0.95); "
            f"p50 {item.clients.p50_ms:.0f} ms, p95 {item.clients.p95_ms:.0f} ms (target <= 300); "
            f"connection errors {item.clients.connection_errors} (target 0)"
        )
    out = write_results(
        f"api_load_{label}",
        {
            "options": vars(args),
            "cpus": os.cpu_count(),
            "windows": [asdict(w) for w in windows],
            "summary": summary,
        },
    )
    print(f"wrote {out}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
