"""Dashboard speed with 100,000 incidents: incident-list queries and page loads.

Builds a site whose SQLite database holds N incidents (default 100,000) spread over 90 days, 4
cameras, 6 rules and every severity and status (bulk-inserted rows: the chain is irrelevant to
reads), then times, against the real app served by uvicorn on 127.0.0.1 with an API token:

* ``GET /api/v1/incidents`` (first page with the total count; a deep page; filtered by camera,
  by severity and status, by a one-day window; the three combined),
* ``GET /api/v1/stats`` (by day; by rule),
* the HTML pages ``/incidents`` and ``/live`` (server time),
* with ``--browser``: a real page load of ``/incidents`` in headless Chromium, from navigation to
  the table rendered with its first page.

Each is run ``--repeat`` times after one warm-up; p50 and p95 are printed and written to
``bench/results/dashboard.json``. Run: ``python -m bench.dashboard [--incidents N] [--browser]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from bench._common import write_results

CAMERAS = ["yard", "dock", "gate", "press"]
RULES = [
    ("hardhat-required", "ppe"),
    ("no-entry-drop-zone", "zone_intrusion"),
    ("forklift-distance", "proximity"),
    ("dock-dwell", "dwell"),
    ("gate-line", "line_crossing"),
    ("press-occupancy", "occupancy"),
]


def _populate(engine: Any, count: int, now: float) -> None:
    from safewatch.storage import IncidentRow

    rng = random.Random(7)
    rows = []
    for n in range(count):
        rule, kind = rng.choice(RULES)
        started = now - rng.uniform(0, 90 * 86400)
        rows.append(
            {
                "id": f"{n:020x}",
                "camera_id": rng.choice(CAMERAS),
                "rule_id": rule,
                "rule_kind": kind,
                "severity": rng.choice(["low", "medium", "high", "critical"]),
                "track_ids": [n % 97],
                "started_at": started,
                "ended_at": started + 4.0,
                "duration": 4.0,
                "peak_confidence": 0.8,
                "message": f"person #{n % 97} in a restricted area",
                "snapshot": None,
                "clip": None,
                "zone_id": None,
                "status": rng.choice(["open", "acknowledged", "resolved", "false_positive"]),
                "created_at": started,
                "updated_at": started,
            }
        )
    with engine.begin() as connection:
        for start in range(0, len(rows), 5000):
            connection.execute(insert(IncidentRow), rows[start : start + 5000])


def _time(client: httpx.Client, url: str, repeat: int) -> dict[str, float]:
    client.get(url).raise_for_status()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--browser", action="store_true", help="also time a Chromium page load")
    args = parser.parse_args()

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from api_support import add_users, make_app, make_dashboard
    from safewatch.runtime.http_server import HttpServer

    folder = Path(tempfile.mkdtemp(prefix="safewatch-bench-dashboard-"))
    dashboard, storage = make_dashboard(folder)
    add_users(dashboard)
    now = time.time()
    started = time.perf_counter()
    _populate(storage.engine, args.incidents, now)
    print(f"inserted {args.incidents} incidents in {time.perf_counter() - started:.1f} s")
    token = dashboard.auth.create_token("admin", "bench").token
    http = HttpServer(make_app(dashboard), "127.0.0.1", 0)
    http.start()
    day = now - 30 * 86400
    queries = {
        "list first page (count)": "/api/v1/incidents?limit=50",
        "list page 100 (offset 4950)": "/api/v1/incidents?limit=50&offset=4950",
        "list camera=yard": "/api/v1/incidents?camera=yard&limit=50",
        "list severity=high&status=open": "/api/v1/incidents?severity=high&status=open&limit=50",
        "list one day": f"/api/v1/incidents?since={day:.0f}&until={day + 86400:.0f}&limit=50",
        "list combined": f"/api/v1/incidents?camera=dock&rule=hardhat-required&status=open"
        f"&since={now - 7 * 86400:.0f}&limit=50",
        "list without count": "/api/v1/incidents?limit=50&count=false",
        "stats by day": "/api/v1/stats?by=day",
        "stats by rule (7 days)": f"/api/v1/stats?by=rule&since={now - 7 * 86400:.0f}",
        "page /incidents (HTML)": "/incidents",
        "page /live (HTML)": "/live",
    }
    results: dict[str, Any] = {"incidents": args.incidents, "repeat": args.repeat, "timings": {}}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=http.url, headers=headers, timeout=30) as client:
        for name, url in queries.items():
            results["timings"][name] = _time(client, url, args.repeat)
            timing = results["timings"][name]
            print(f"{name:<34} p50 {timing['p50_ms']:8.2f} ms   p95 {timing['p95_ms']:8.2f} ms")
    if args.browser:
        results["timings"]["browser load /incidents"] = _browser(http.url, args.repeat)
    http.stop()
    storage.close()
    print(f"results: {write_results('dashboard', results)}")


def _browser(base: str, repeat: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page()
        page.goto(f"{base}/login")
        page.fill("input[name=username]", "admin")
        from api_support import PASSWORD

        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/live")
        for index in range(repeat + 1):
            started = time.perf_counter()
            page.goto(f"{base}/incidents")
            page.wait_for_function(
                "() => document.querySelectorAll('#incidents tbody tr[data-id]').length === 50"
            )
            if index:
                times.append((time.perf_counter() - started) * 1000)
        browser.close()
    times.sort()
    timing = {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 2),
    }
    name = "browser load /incidents"
    print(f"{name:<34} p50 {timing['p50_ms']:8.2f} ms   p95 {timing['p95_ms']:8.2f} ms")
    return timing


if __name__ == "__main__":
    main()
