"""Helpers for the ``safewatch serve --cluster`` tests and benchmarks: a site on PostgreSQL with
looping file cameras, analyzer processes, a sampler of their per-camera frame counters, and the
database invariants every scenario ends with.

Nothing here imports pytest: ``bench/cluster_failover.py`` uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
import yaml
from sqlalchemy import Engine, text

from patience import poll

SAFEWATCH = Path(sys.executable).with_name("safewatch")
CLIP = "video/construction_cctv_640x352_24s.mp4"
MODEL = "models/yolox_nano_coco.onnx"

_ANALYSED = re.compile(r'^safewatch_camera_analysed_frames(?:_total)?\{camera="([^"]+)"\} (\S+)$')
_RELOADED = re.compile(r'^safewatch_rule_reloads_total\{result="applied"\} (\S+)$')
_FENCED = re.compile(r'^safewatch_cluster_fenced_writes_total\{camera="([^"]+)"\} (\S+)$')


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_cluster_site(
    folder: Path,
    database: str,
    clip: Path,
    model: Path,
    *,
    cameras: int = 6,
    lease_seconds: float = 3.0,
    fps: float = 2.0,
    alerts: Mapping[str, Any] | None = None,
) -> Path:
    """``site.yaml`` and ``rules/`` in ``folder``: ``cameras`` looping copies of ``clip`` on
    ``model`` (YOLOX, one intra-op thread), evidence in a folder declared shared, and one rule
    per camera that holds an incident open while anyone is in view (one subject per camera: the
    occupancy rule has no track in its id, so "at most one open per camera and rule" is exact).
    ``alerts``: the site's alerts block, if any.
    """
    keys = [f"cam{n}" for n in range(1, cameras + 1)]
    site: dict[str, Any] = {
        "version": 1,
        "site": {"name": "cluster yard"},
        "models": {
            "coco": {
                "path": str(model),
                "format": "yolox",
                "labels": {"person": "person"},
                "threads": 1,
            }
        },
        "cameras": {
            key: {"source": str(clip), "fps": fps, "models": ["coco"], "loop": True} for key in keys
        },
        "storage": {
            "database": database,
            "evidence_dir": "shared-evidence",
            "evidence_shared": True,
        },
        "evidence": {"pre_seconds": 1, "post_seconds": 1, "buffer_seconds": 3},
        "runtime": {
            "watchdog": {
                "stall_seconds": 3,
                "progress_seconds": 20,
                "restart_backoff_seconds": 0.2,
            },
            "http": {"host": "127.0.0.1", "port": 0},
        },
        "cluster": {"lease_seconds": lease_seconds},
    }
    if alerts is not None:
        site["alerts"] = dict(alerts)
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    rules = folder / "rules"
    rules.mkdir(exist_ok=True)
    lines = ["version: 1", "zones:"]
    lines += [
        f"  all_{k}: {{camera: {k}, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}" for k in keys
    ]
    lines.append("rules:")
    lines += [
        f"  - {{id: nobody-in-view-{k}, kind: occupancy, zone: all_{k}, objects: [person], "
        "max_count: 0, min_duration: 0s, grace: 4s, severity: low}"
        for k in keys
    ]
    (rules / "view.yaml").write_text("\n".join(lines) + "\n")
    return path


def safewatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one ``safewatch`` command to its end."""
    return subprocess.run(
        [str(SAFEWATCH), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class Analyzer:
    """One ``safewatch serve --cluster --role analyzer`` process (``/metrics`` on ``port``)."""

    name: str
    site: Path
    folder: Path
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()
    """Command prefix, e.g. ``("taskset", "-c", "0")``."""
    process: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"

    def start(self) -> Analyzer:
        command = [
            *self.prefix,
            str(SAFEWATCH),
            "serve",
            "--config",
            str(self.site),
            "--cluster",
            "--role",
            "analyzer",
            "--analyzer-id",
            self.name,
            "--port",
            str(self.port),
            *self.extra,
        ]
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "SAFEWATCH_DEBUG": "0"},
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def ensure_gone(self) -> None:
        """Kill it if it still runs (clean-up), resuming it first in case it was stopped."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
            process.wait(30)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def metrics(self, timeout: float = 3.0) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=timeout).text

    def fenced(self) -> float:
        """Incident writes its fence refused, over all cameras."""
        found = (_FENCED.match(line) for line in self.metrics().splitlines())
        return sum(float(match.group(2)) for match in found if match)

    def rule_reloads(self) -> float:
        """Rule sets it loaded and applied (the first load at start included)."""
        found = (_RELOADED.match(line) for line in self.metrics().splitlines())
        return sum(float(match.group(1)) for match in found if match)


def analysed_counts(metrics_text: str) -> dict[str, float]:
    """``camera -> frames analysed`` from a ``/metrics`` text."""
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = _ANALYSED.match(line)
        if match:
            counts[match.group(1)] = float(match.group(2))
    return counts


class FrameSampler:
    """Samples every analyzer's per-camera analysed-frame counter a few times a second.

    Records, per analyzer and camera, when the count was first seen above zero (for this
    ownership: a camera given back and taken again starts from zero) and when it last grew. A
    camera's failover time is the first time a *new* owner shows it analysed after the event; a
    drain's gap is that minus the old owner's last growth.
    """

    def __init__(self, analyzers: Iterable[Analyzer], period: float = 0.25) -> None:
        self._analyzers = list(analyzers)
        self._period = period
        self._lock = threading.Lock()
        self._first_seen: dict[tuple[str, str], float] = {}
        self._last_growth: dict[tuple[str, str], float] = {}
        self._last: dict[tuple[str, str], float] = {}
        self._current: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-sampler", daemon=True)

    def add(self, analyzer: Analyzer) -> None:
        with self._lock:
            self._analyzers.append(analyzer)

    def start(self) -> FrameSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            with self._lock:
                analyzers = [a for a in self._analyzers if a.alive()]
            for analyzer in analyzers:
                try:
                    counts = analysed_counts(analyzer.metrics(timeout=2.0))
                except httpx.HTTPError:
                    continue  # not up yet, stopping, or frozen
                self._record(analyzer.name, counts, time.monotonic())

    def _record(self, name: str, counts: Mapping[str, float], now: float) -> None:
        with self._lock:
            self._current[name] = dict(counts)
            for camera, count in counts.items():
                key = (name, camera)
                previous = self._last.get(key)
                if count > 0 and (previous is None or previous == 0 or count < previous):
                    self._first_seen[key] = now  # first frame of a (new) ownership
                if count > 0 and count != previous:
                    self._last_growth[key] = now
                self._last[key] = count
            for key in [k for k in self._last if k[0] == name and k[1] not in counts]:
                del self._last[key]  # released: taking it again is a new ownership

    def owners(self) -> dict[str, set[str]]:
        """``analyzer -> cameras it analyses now`` (from the latest sample of each)."""
        with self._lock:
            return {
                name: {camera for camera, count in counts.items() if count > 0}
                for name, counts in self._current.items()
            }

    def forget(self, name: str) -> None:
        """Drop an analyzer's latest sample (it was killed: it analyses nothing any more)."""
        with self._lock:
            self._current.pop(name, None)

    def first_elsewhere(self, camera: str, after: float, exclude: str) -> float | None:
        """When ``camera`` was first seen analysed after ``after`` by another analyzer."""
        with self._lock:
            times = [
                at
                for (name, cam), at in self._first_seen.items()
                if cam == camera and name != exclude and at >= after
            ]
        return min(times) if times else None

    def last_growth_of(self, name: str, camera: str) -> float | None:
        """When ``name``'s count of ``camera`` last grew."""
        with self._lock:
            return self._last_growth.get((name, camera))


def wait_for(condition: Callable[[], Any], timeout: float, what: str, period: float = 0.2) -> Any:
    """Poll ``condition`` until truthy and return it; ``AssertionError`` saying ``what`` if not."""
    return poll(condition, timeout, what, period)


def balanced(owners: Mapping[str, set[str]], names: Iterable[str], cameras: int) -> bool:
    """Every camera analysed by exactly one of ``names``, their counts differing by at most 1."""
    names = list(names)
    counts = [len(owners.get(name, set())) for name in names]
    seen = [camera for name in names for camera in owners.get(name, set())]
    return len(seen) == cameras == len(set(seen)) and max(counts) - min(counts) <= 1


# -- live video ----------------------------------------------------------------------------------


def parse_video_message(message: bytes) -> tuple[dict[str, Any], bytes]:
    """A live video message (``/api/v1/ws/cameras/{id}/video``): its JSON header, its MP4."""
    length = struct.unpack(">I", message[:4])[0]
    return json.loads(message[4 : 4 + length]), message[4 + length :]


async def paired_arrivals(
    direct: str,
    direct_headers: Mapping[str, str],
    relayed: str,
    relayed_headers: Mapping[str, str],
    fragments: int,
    timeout: float = 300.0,
) -> list[float]:
    """Seconds by which each fragment reached a client of ``relayed`` (an API node) after a
    client of ``direct`` (the camera's owner), for ``fragments`` fragments past the first five.

    Both sockets watch the owner's one feed, so they receive the very same fragments (matched by
    generation and the time each was made): the difference is the relay hop alone, whatever
    the encoder, the camera or the machine did to the fragment before.
    """
    arrivals: dict[str, dict[tuple[int, float], float]] = {"direct": {}, "relayed": {}}
    wanted = fragments + 5

    async def read(name: str, url: str, headers: Mapping[str, str]) -> None:
        async with websockets.connect(url, additional_headers=dict(headers), max_size=None) as feed:
            while len(arrivals[name]) < wanted + 20:
                message = await feed.recv()
                now = time.perf_counter()
                if isinstance(message, bytes):
                    header = parse_video_message(message)[0]
                    if header["type"] == "fragment":
                        arrivals[name][(header["generation"], header["made"])] = now

    async with asyncio.timeout(timeout):
        tasks = [
            asyncio.create_task(read("direct", direct, direct_headers)),
            asyncio.create_task(read("relayed", relayed, relayed_headers)),
        ]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
    both = sorted(set(arrivals["direct"]) & set(arrivals["relayed"]))[5:wanted]
    return [arrivals["relayed"][key] - arrivals["direct"][key] for key in both]


def percentile(values: Iterable[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- database invariants -------------------------------------------------------------------------


def incidents(engine: Engine) -> list[dict[str, Any]]:
    """Every incident row (id, camera, rule, subject, start, end)."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, camera_id, rule_id, track_ids, started_at, ended_at FROM incidents")
        )
        return [dict(row._mapping) for row in rows]


def overlapping_open(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of incidents of one (camera, rule, subject) that were open at the same instant."""
    groups: dict[tuple[str, str, str], list[tuple[float, float, str]]] = {}
    for row in rows:
        key = (str(row["camera_id"]), str(row["rule_id"]), str(row["track_ids"]))
        end = float("inf") if row["ended_at"] is None else float(row["ended_at"])
        groups.setdefault(key, []).append((float(row["started_at"]), end, str(row["id"])))
    pairs = []
    for spans in groups.values():
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                pairs.append((first, second))
    return pairs


def closing_entries(engine: Engine) -> dict[str, tuple[int, dict[str, Any]]]:
    """``incident id -> (seq, detail)`` of its (last) ``incident.closed`` chain entry."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT seq, incident_id, detail FROM chain_entries "
                "WHERE kind = 'incident.closed' ORDER BY seq"
            )
        )
        out: dict[str, tuple[int, dict[str, Any]]] = {}
        for row in rows:
            detail = json.loads(row.detail) if isinstance(row.detail, str) else row.detail
            out[str(row.incident_id)] = (int(row.seq), detail)
        return out


def entries_after(engine: Engine, incident_id: str, seq: int) -> list[str]:
    """Kinds of the chain entries of ``incident_id`` after ``seq``."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT kind FROM chain_entries WHERE seq > :seq AND incident_id = :id ORDER BY seq"
            ),
            {"seq": seq, "id": incident_id},
        )
        return [str(row.kind) for row in rows]


def alert_rows(engine: Engine, channel: str) -> list[dict[str, Any]]:
    """The outbox rows of ``channel``: key, incident, event, status."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT key, incident_id, event, status FROM alert_outbox WHERE channel = :c"),
            {"c": channel},
        )
        return [dict(row._mapping) for row in rows]
