"""``serve --cluster`` with Redis: an API node shows the overlay of a camera an analyzer process
analyses, and its incident WebSocket shows every change the analyzer writes exactly once, across
a ``kill -9`` and restart of ``redis-server`` mid-run (the feed back-fills from the hash chain);
``safewatch verify`` is clean after.

Real processes started as ``deploy/`` starts them (``--role analyzer`` and ``--role api``), a
real PostgreSQL and redis-server; two looping file cameras on a 3 s lease.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml
from cluster_serve_support import (
    CLIP,
    MODEL,
    SAFEWATCH,
    Analyzer,
    free_port,
    safewatch,
    wait_for,
    write_cluster_site,
)

from assets import asset
from db_servers import PostgresServer
from redis_server import RedisServer, redis_unavailable
from safewatch.storage import IncidentRepository, create_engine_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(redis_unavailable() is not None, reason=str(redis_unavailable())),
]


class FeedReader:
    """Reads /api/v1/ws/incidents on a thread, reconnecting never (a drop fails the test)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.messages: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with websockets.connect(self.url, additional_headers=headers) as feed:
                self.ready.set()
                while not self.stop.is_set():
                    try:
                        raw = await asyncio.wait_for(feed.recv(), 0.5)
                    except TimeoutError:
                        continue
                    message = json.loads(raw)
                    if message["type"] == "incident":
                        self.messages.append(message)
        except BaseException as error:  # reported by the test
            self.error = error
            self.ready.set()

    def seqs(self) -> list[int]:
        return [m["seq"] for m in list(self.messages)]


async def first_frame(url: str, token: str, timeout: float = 60.0) -> dict[str, Any]:
    """The first overlay ``frame`` message of a camera WebSocket."""
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url, additional_headers=headers) as feed:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await feed.recv())
                if message["type"] == "frame":
                    return dict(message)


def test_an_api_node_sees_each_change_once_across_a_redis_restart(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    redis = RedisServer.start()
    schema = pg_server.fresh_schema()
    url = schema.__enter__()
    processes: list[Analyzer] = []
    api: subprocess.Popen[str] | None = None
    reader: FeedReader | None = None
    try:
        site = write_cluster_site(
            tmp_path, url, asset(CLIP), asset(MODEL), cameras=2, lease_seconds=3.0
        )
        document = yaml.safe_load(site.read_text())
        document.setdefault("cluster", {})["redis_url"] = redis.url
        site.write_text(yaml.safe_dump(document))
        upgraded = safewatch("db", "upgrade", "--config", str(site))
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        engine = create_engine_for(url, tmp_path)
        from safewatch.api.auth.store import AuthStore

        store = AuthStore(engine)
        store.add_user("admin", "correct horse battery", "admin")
        token = store.create_token("admin", "test").token

        port = free_port()
        api_log = (tmp_path / "api.log").open("a")
        api = subprocess.Popen(
            [str(SAFEWATCH), "serve", "--config", str(site), "--cluster", "--role", "api",
             "--port", str(port)],
            stdout=api_log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "SAFEWATCH_DEBUG": "0"},
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        def api_up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(api_up, 120, "the API node answering")
        # Its dashboard's jobs are the cluster's (run by analyzers): a row of the job table is
        # in its list.
        from safewatch.api.jobs import AuditJob
        from safewatch.cluster.jobs import JobQueue

        job = AuditJob("0123456789ab", "clip.mp4", "cam1", "admin", time.time())
        JobQueue(engine, expiry=3.0).insert(job)
        listed = httpx.get(
            f"{base}/api/v1/audit-jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert [j["id"] for j in listed.json()] == [job.id], listed.text
        reader = FeedReader(f"ws://127.0.0.1:{port}/api/v1/ws/incidents", token)
        reader.thread.start()
        assert reader.ready.wait(30) and reader.error is None, reader.error

        analyzer = Analyzer("a1", site, tmp_path).start()
        processes.append(analyzer)
        wait_for(lambda: len(reader.seqs()) >= 2, 180, "two incident changes on the feed")

        # The API node runs no camera: the boxes it shows came from the analyzer over Pub/Sub.
        overlay = asyncio.run(first_frame(f"ws://127.0.0.1:{port}/api/v1/ws/cameras/cam1", token))
        assert overlay["camera"] == "cam1" and "tracks" in overlay

        redis.kill()  # kill -9: the stream is gone; changes keep being written meanwhile
        before = len(reader.seqs())
        repository = IncidentRepository(engine)
        wait_for(
            lambda: repository.changes_after(max(reader.seqs()))[0], 120, "a change while down"
        )
        redis.restart()
        # Changes flow through the new, empty Redis again (the feed re-reads the chain every
        # 5 s, so the feed alone could not show it).
        from redis import Redis

        from safewatch.bus.redis_streams import BusKeys
        from safewatch.config.loader import load_site

        stream = BusKeys.for_site(load_site(site).config).incidents
        with Redis.from_url(redis.url) as client:
            wait_for(lambda: client.xlen(stream) > 0, 120, "a change in the new Redis")
        analyzer.signal(signal.SIGTERM)  # closes its incidents normally
        assert analyzer.wait(90) == 0, analyzer.tail()

        def chain() -> list[int]:
            return [c.entry.seq for c in repository.changes_after(0, limit=100_000)[0]]

        wait_for(lambda: reader.seqs()[-1:] == chain()[-1:], 60, "the feed catching up")
        time.sleep(2)  # a late duplicate would arrive now
        seen = reader.seqs()
        assert seen == chain(), f"feed {seen} != chain {chain()}"  # each once, in chain order
        assert len(seen) > before
        assert reader.error is None, reader.error
        verified = safewatch("verify", "--config", str(site))
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        if reader is not None:
            reader.stop.set()
            reader.thread.join(5)
        for process in processes:
            process.ensure_gone()
        if api is not None:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(30)
            except subprocess.TimeoutExpired:
                api.kill()
        schema.__exit__(None, None, None)
        redis.stop()
