"""Where the API's time goes under the 50-client list+stats load of bench/api_load.py (issue 13).

Serves the dashboard app alone (the example site's storage with 1,000 seeded incidents, no
analysis: the runtime's questions get fixed answers) with uvicorn on a thread, as the API process
does, and drives it with ``bench.api_load``'s clients from another process. A sampling thread
records every thread's Python stack every ``--interval`` seconds and prints the functions found
most often on the *serving* threads (event loop and anyio workers), inclusive and as the
innermost project/library frame, so the answer is "where the wall time of a request goes", not
only its CPU.

``python -m bench.api_profile [--seconds 20] [--clients 50]``
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bench.api_load import free_port, load, provision, write_site


def _stack(frame: FrameType | None) -> list[str]:
    out: list[str] = []
    while frame is not None:
        code = frame.f_code
        out.append(f"{Path(code.co_filename).name}:{code.co_name}")
        frame = frame.f_back
    return out


class Sampler:
    """Counts stack frames of every thread but itself every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.leaf: collections.Counter[str] = collections.Counter()
        self.threads: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = threading.get_ident()
        names = {}
        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                stack = _stack(frame)
                name = names.get(ident, "?")
                # idle waits of pool workers and the loop's selector are not request time
                if stack and stack[0] in {"threading.py:wait", "selectors.py:select"}:
                    self.threads[f"{name.split('_')[0]} idle"] += 1
                    continue
                self.threads[f"{name.split('_')[0]} busy"] += 1
                self.leaf[stack[0]] += 1
                for entry in set(stack):
                    self.inclusive[entry] += 1
            self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.002)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--client", choices=["httpx", "raw"], default="httpx")
    parser.add_argument(
        "--cprofile",
        action="store_true",
        help="Profile the event-loop thread deterministically instead of sampling (the "
        "sampler holds the GIL, so it over-counts code that releases it: syscalls, SQLite).",
    )
    args = parser.parse_args(argv)

    from safewatch.api import ApiSettings, create_app
    from safewatch.api.dashboard import Dashboard, DashboardSettings
    from safewatch.config.loader import load_site
    from safewatch.incidents.site_storage import open_site_storage
    from safewatch.runtime.health import ComponentHealth, Liveness, Readiness
    from safewatch.runtime.http_server import HttpServer, bind_listener

    class Ops:
        def liveness(self) -> Liveness:
            return Liveness(status="alive", uptime_seconds=1.0)

        def readiness(self) -> Readiness:
            ok = ComponentHealth(ok=True, message="ok")
            return Readiness(
                status="ready", database=ok, inference=ok, rules=ok, site=ok, cameras={}
            )

        def metrics(self) -> bytes:
            return b""

    with tempfile.TemporaryDirectory(prefix="safewatch-api-profile-") as tmp:
        port = free_port()
        site_path = write_site(Path(tmp), port)
        token = provision(site_path)
        site = load_site(site_path)
        storage = open_site_storage(site)
        dashboard = Dashboard.create(
            lambda: site, Path(tmp) / "rules", storage, settings=DashboardSettings()
        )
        app = create_app(ApiSettings(site_name="bench"), Ops(), dashboard)
        listener: socket.socket = bind_listener("127.0.0.1", port)
        http = HttpServer(app, sock=listener)
        profile = cProfile.Profile()
        if args.cprofile:  # the same server, its loop run under the profiler
            run = http._server.run
            http._thread._target = lambda **kw: profile.runcall(run, **kw)  # type: ignore[attr-defined]
            args.interval = 3600.0
        http.start()
        base = f"http://127.0.0.1:{port}"
        try:
            load(base, token, "list", args.clients, 3.0, 0, args.client)  # warm-up
            with Sampler(args.interval) as sampler:
                t0, c0 = time.monotonic(), time.process_time()
                result = load(base, token, "list", args.clients, args.seconds, 0, args.client)
                wall, cpu = time.monotonic() - t0, time.process_time() - c0
        finally:
            http.stop()
            storage.close()
    print(
        f"{result.requests} requests in {wall:.1f} s ({result.requests / wall:.0f}/s), p50 "
        f"{result.p50_ms:.0f} ms, p95 {result.p95_ms:.0f} ms; API CPU {cpu:.1f} s "
        f"({1000 * cpu / max(1, result.requests):.2f} ms per request, includes the sampler); "
        f"clients' CPU {result.client_cpu_s:.1f} s; statuses {result.statuses}"
    )
    if args.cprofile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
        return
    print(f"{sampler.samples} sampling rounds; thread states: {dict(sampler.threads)}")
    busy = sum(sampler.leaf.values()) or 1
    print("\ninclusive (share of busy thread samples):")
    for name, n in sampler.inclusive.most_common(args.top):
        print(f"  {100 * n / busy:5.1f} %  {name}")
    print("\ninnermost frame:")
    for name, n in sampler.leaf.most_common(args.top // 2):
        print(f"  {100 * n / busy:5.1f} %  {name}")


if __name__ == "__main__":
    main()
