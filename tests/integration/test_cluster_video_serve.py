"""``serve --cluster``: an API node shows the live video of a camera another analyzer owns, by
relaying it from the camera's owner (:mod:`safewatch.api.cluster_video`), and follows the camera
to its next owner after a ``kill -9``, a drain (SIGTERM) and a freeze (SIGSTOP).

Real processes (``--role api`` and four ``--role analyzer``), a real PostgreSQL, one looping file
camera on a 3 s lease. Checked: the relayed stream is fragmented MP4 (``ftyp``/``moov`` init,
then ``moof``/``mdat`` fragments), blurred unless an admin asks (audited on the API node), a
non-admin cannot get the raw stream, an analyzer serves nothing without a grant for itself,
a grant opens one connection, an analyzer refuses a camera it does not own, the API node's
port serves no internal video (even with a valid grant), the relay
resumes from the new owner with ``reconnecting``/``streaming`` state messages in between, and the
close codes for an unreachable owner (4502) and no owner (4503). Prints the hop's added latency
(same fragments, received directly from the owner and through the API node).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import time
from collections.abc import Callable
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
    analysed_counts,
    free_port,
    paired_arrivals,
    parse_video_message,
    percentile,
    safewatch,
    wait_for,
    write_cluster_site,
)
from sqlalchemy import Engine, text
from websockets.exceptions import ConnectionClosed

from assets import asset
from db_servers import PostgresServer
from safewatch.api.cluster_video import GRANT_HEADER, INTERNAL_PREFIX, sign_grant
from safewatch.storage import create_engine_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SECRET = "test-cluster-secret-0123456789"


def boxes(data: bytes) -> list[bytes]:
    """The top-level MP4 box types of ``data``."""
    found, at = [], 0
    while at + 8 <= len(data):
        size = struct.unpack(">I", data[at : at + 4])[0]
        found.append(data[at + 4 : at + 8])
        if size < 8:
            break
        at += size
    return found


def owner_and_url(engine: Engine, camera: str) -> tuple[str | None, str | None]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT l.owner, a.video_url FROM camera_leases l LEFT JOIN cluster_analyzers a "
                "ON a.analyzer_id = l.owner WHERE l.camera_id = :c "
                "AND l.expires_at > extract(epoch from clock_timestamp())"
            ),
            {"c": camera},
        ).first()
    return (row.owner, row.video_url) if row is not None else (None, None)


async def take(
    url: str, headers: dict[str, str], fragments: int, timeout: float = 60.0
) -> list[bytes | str]:
    """The messages of a video socket up to ``fragments`` fragments after the first init."""
    got: list[bytes | str] = []
    seen = 0
    async with websockets.connect(url, additional_headers=headers, max_size=None) as feed:
        async with asyncio.timeout(timeout):
            while seen < fragments:
                message = await feed.recv()
                got.append(message)
                if (
                    isinstance(message, bytes)
                    and parse_video_message(message)[0]["type"] == "fragment"
                ):
                    seen += 1
    return got


def analyzer_url(engine: Engine, analyzer: str) -> str:
    """The video URL ``analyzer`` advertises (waits for its heartbeat)."""

    def read() -> str | None:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT video_url FROM cluster_analyzers WHERE analyzer_id = :a"),
                {"a": analyzer},
            ).scalar()

    found: str = wait_for(read, 120, f"{analyzer}'s video URL")
    return found


async def not_served(url: str, headers: dict[str, str]) -> bool:
    """Whether a server refuses ``url`` without sending video: an HTTP refusal of the handshake
    or a close before any binary message."""
    try:
        async with websockets.connect(url, additional_headers=headers) as feed:
            async with asyncio.timeout(30):
                while True:
                    message = await feed.recv()
                    assert not isinstance(message, bytes), f"video sent on {url}"
    except ConnectionClosed:
        return True
    except websockets.exceptions.InvalidStatus as status:
        return status.response.status_code in (401, 403, 404)


async def refused(url: str, headers: dict[str, str], timeout: float = 30.0) -> tuple[int, str]:
    """The close code and reason of a socket the server closes before any video."""
    async with websockets.connect(url, additional_headers=headers) as feed:
        async with asyncio.timeout(timeout):
            try:
                while True:
                    message = await feed.recv()
                    assert not isinstance(message, bytes), "video sent to a refused client"
            except ConnectionClosed as closed:
                assert closed.rcvd is not None
                return closed.rcvd.code, closed.rcvd.reason


def test_an_api_node_relays_the_owners_video_and_follows_a_failover(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    schema = pg_server.fresh_schema()
    url = schema.__enter__()
    analyzers: list[Analyzer] = []
    api: subprocess.Popen[str] | None = None
    stray: subprocess.Popen[str] | None = None
    try:
        site = write_cluster_site(
            tmp_path, url, asset(CLIP), asset(MODEL), cameras=1, lease_seconds=3.0
        )
        document = yaml.safe_load(site.read_text())
        document["cluster"]["secret"] = "${SAFEWATCH_CLUSTER_SECRET}"
        site.write_text(yaml.safe_dump(document))
        os.environ["SAFEWATCH_CLUSTER_SECRET"] = SECRET  # inherited by every node
        upgraded = safewatch("db", "upgrade", "--config", str(site))
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        engine = create_engine_for(url, tmp_path)
        from safewatch.api.auth.store import AuthStore

        store = AuthStore(engine)
        store.add_user("admin", "correct horse battery", "admin")
        store.add_user("olga", "correct horse battery", "operator")
        admin = {"Authorization": f"Bearer {store.create_token('admin', 'test').token}"}
        operator = {"Authorization": f"Bearer {store.create_token('olga', 'test').token}"}

        port, stray_port = free_port(), free_port()
        with (tmp_path / "api.log").open("a") as api_log:
            api, stray = (
                subprocess.Popen(
                    [str(SAFEWATCH), "serve", "--config", str(site), "--cluster", "--role", "api",
                     "--port", str(at)],
                    stdout=api_log, stderr=subprocess.STDOUT, text=True,
                    env={**os.environ, "SAFEWATCH_DEBUG": "0", "SAFEWATCH_CLUSTER_SECRET": key},
                )
                for at, key in ((port, SECRET), (stray_port, "another-secret-than-the-others"))
            )  # fmt: skip

        def up(at: int) -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{at}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: up(port) and up(stray_port), 120, "the API nodes answering")
        video = f"ws://127.0.0.1:{port}/api/v1/ws/cameras/cam1/video"

        # Before any analyzer: no owner, said so (4503), not an error page.
        code, reason = asyncio.run(refused(video, admin))
        assert code == 4503 and "cam1" in reason, (code, reason)
        code, _ = asyncio.run(refused(f"ws://127.0.0.1:{port}/api/v1/ws/cameras/nope/video", admin))
        assert code == 4404

        first = Analyzer("a1", site, tmp_path).start()
        analyzers.append(first)
        wait_for(lambda: owner_and_url(engine, "cam1")[0] == "a1", 120, "a1 owning cam1")
        _, first_url = owner_and_url(engine, "cam1")
        assert first_url is not None and first_url.startswith("http://127.0.0.1:")
        assert first_url != first.base  # its own port, not the unauthenticated operations one
        second = Analyzer("a2", site, tmp_path).start()
        analyzers.append(second)

        # Blurred by default: an init (ftyp + moov), then one fragment (moof + mdat) per frame.
        messages = asyncio.run(take(video, operator, fragments=5))
        states = [json.loads(m) for m in messages if isinstance(m, str)]
        assert states[0] == {"type": "state", "state": "streaming", "owner": "a1"}
        media = [parse_video_message(m) for m in messages if isinstance(m, bytes)]
        init_header, init = media[0]
        assert init_header["type"] == "init" and init_header["mode"] == "blurred"
        assert boxes(init)[:2] == [b"ftyp", b"moov"] and init_header["codec"].startswith("avc1.")
        fragments = [(h, d) for h, d in media[1:] if h["type"] == "fragment"]
        assert len(fragments) == 5 and fragments[0][0]["key"] is True
        assert all(boxes(data) == [b"moof", b"mdat"] for _, data in fragments)

        # The raw stream: refused to an operator; an admin's is audited by the API node.
        code, reason = asyncio.run(refused(f"{video}?mode=raw", operator))
        assert (code, reason) == (4403, "the unblurred stream is for admins only")
        raw = [
            parse_video_message(m)
            for m in asyncio.run(take(f"{video}?mode=raw", admin, 2))
            if isinstance(m, bytes)
        ]
        raw_init = next(h for h, _ in raw if h["type"] == "init")
        assert raw_init["mode"] == "raw"
        # audited by the API node and by the analyzer that served it (the grant's user)
        audited, total = store.audit_records(action="live.raw_view")
        assert total == 2 and {(r.actor, r.subject) for r in audited} == {("admin", "cam1")}
        assert [r.detail.get("served_by") for r in audited] == ["a1", None]

        # An API node with another secret is refused by the owner, and says why (4502).
        code, reason = asyncio.run(
            refused(f"ws://127.0.0.1:{stray_port}/api/v1/ws/cameras/cam1/video", operator)
        )
        assert code == 4502 and "4401" in reason and "not signed" in reason, (code, reason)

        # The analyzer serves nothing without a grant signed with the cluster's secret.
        internal = f"{first_url.replace('http', 'ws', 1)}{INTERNAL_PREFIX}cam1/video"
        code, reason = asyncio.run(refused(internal, {}))
        assert code == 4401 and GRANT_HEADER in reason
        forged = sign_grant("not-the-cluster-secret-at-all", "a1", "cam1", "raw", "mallory")
        code, _ = asyncio.run(refused(internal, {GRANT_HEADER: forged}))
        assert code == 4401
        # A grant is for the analyzer the relay connects to, and opens one connection.
        code, reason = asyncio.run(
            refused(internal, {GRANT_HEADER: sign_grant(SECRET, "a2", "cam1", "raw", "m")})
        )
        assert (code, reason) == (4401, "grant is for analyzer 'a2', not 'a1'")
        once = {GRANT_HEADER: sign_grant(SECRET, "a1", "cam1", "blurred", "m")}
        assert asyncio.run(take(internal, once, 1))
        code, reason = asyncio.run(refused(internal, once))
        assert code == 4401 and reason.startswith("grant already used"), (code, reason)
        # a2 does not own cam1: it refuses it even with a grant signed for it
        second_url = analyzer_url(engine, "a2")
        internal_a2 = f"{second_url.replace('http', 'ws', 1)}{INTERNAL_PREFIX}cam1/video"
        code, reason = asyncio.run(
            refused(internal_a2, {GRANT_HEADER: sign_grant(SECRET, "a2", "cam1", "raw", "m")})
        )
        assert (code, reason) == (4409, "analyzer a2 does not own camera 'cam1' now")
        # The browser-facing port of role api serves no internal video, even with a valid
        # grant and an admin's credential.
        for headers in ({}, admin):
            grant = {GRANT_HEADER: sign_grant(SECRET, "a1", "cam1", "raw", "admin")}
            assert asyncio.run(
                not_served(f"ws://127.0.0.1:{port}{INTERNAL_PREFIX}cam1/video", headers | grant)
            )
        assert store.audit_records(action="live.raw_view")[1] == 2  # (nothing more served)

        # The hop's cost: the same fragments, from the owner and through the API node.
        grant = {GRANT_HEADER: sign_grant(SECRET, "a1", "cam1", "blurred", "bench")}
        added = asyncio.run(paired_arrivals(internal, grant, video, admin, 100))
        load = os.getloadavg()[0]
        print(
            f"\nrelay hop: {len(added)} fragments, added latency p50 "
            f"{percentile(added, 0.5) * 1000:.1f} ms, p95 {percentile(added, 0.95) * 1000:.1f} ms "
            f"(load {load:.1f})"
        )
        assert len(added) >= 50 and percentile(added, 0.5) < 1.0

        # kill -9 of the owner, then a drain (SIGTERM) of the next: the viewer keeps its
        # socket, is told, and gets the next owner's video each time.
        async def across(
            move: Callable[[], None], new_owner: str
        ) -> tuple[list[dict[str, Any]], float]:
            events: list[dict[str, Any]] = []
            async with websockets.connect(video, additional_headers=admin, max_size=None) as feed:
                async with asyncio.timeout(120):
                    moved_at = 0.0
                    while True:
                        message = await feed.recv()
                        if isinstance(message, str):
                            events.append(json.loads(message))
                            continue
                        header = parse_video_message(message)[0]
                        events.append({"type": header["type"], "at": time.monotonic()})
                        fragments = [e for e in events if e["type"] == "fragment"]
                        if not moved_at and len(fragments) >= 3:
                            move()
                            moved_at = time.monotonic()
                            events.append({"type": "moved"})
                        arrived = {"type": "state", "state": "streaming", "owner": new_owner}
                        after = events[events.index(arrived) :] if arrived in events else []
                        if moved_at and sum(e["type"] == "fragment" for e in after) >= 3:
                            first_new = next(e["at"] for e in after if e["type"] == "fragment")
                            return events, first_new - moved_at

        def check(events: list[dict[str, Any]], old: str, new: str) -> list[str]:
            states = [e for e in events if e["type"] == "state"]
            assert (states[0]["state"], states[0]["owner"]) == ("streaming", old)
            assert (states[-1]["state"], states[-1]["owner"]) == ("streaming", new)
            assert "reconnecting" in [e["state"] for e in states]
            assert events[-1]["type"] == "fragment"
            arrived = events.index({"type": "state", "state": "streaming", "owner": new})
            assert events.index({"type": "moved"}) < arrived  # (the new owner's video: from init)
            media = [e["type"] for e in events[arrived:] if e["type"] in ("init", "fragment")]
            assert media[0] == "init" and media[1:] == ["fragment"] * (len(media) - 1)
            assert owner_and_url(engine, "cam1")[0] == new
            return [e["reason"] for e in states if e["state"] == "reconnecting"]

        events, gap = asyncio.run(across(first.process.kill, "a2"))  # type: ignore[union-attr]
        told = check(events, "a1", "a2")
        print(f"failover: video again {gap:.1f} s after kill -9 (lease 3 s); told {told}")

        third = Analyzer("a3", site, tmp_path).start()
        analyzers.append(third)
        wait_for(lambda: third.alive() and up(third.port), 120, "a3 serving")
        time.sleep(2)  # its membership heartbeats (a3 takes what a2 drains)
        events, gap = asyncio.run(across(lambda: second.signal(signal.SIGTERM), "a3"))
        told = check(events, "a2", "a3")
        print(f"drain: video again {gap:.1f} s after SIGTERM; told {told}")

        fourth = Analyzer("a4", site, tmp_path).start()
        analyzers.append(fourth)
        wait_for(lambda: fourth.alive() and up(fourth.port), 120, "a4 serving")
        time.sleep(2)  # its membership heartbeats
        events, gap = asyncio.run(across(lambda: third.signal(signal.SIGSTOP), "a4"))
        told = check(events, "a3", "a4")
        print(f"freeze: video again {gap:.1f} s after SIGSTOP (lease 3 s); told {told}")
        third.ensure_gone()  # (resumed, then killed: it would take the camera back below)

        # The owner dies and its lease still holds: unreachable (4502), then no owner (4503).
        fourth.process.kill()  # type: ignore[union-attr]
        fourth.wait(30)
        code, reason = asyncio.run(refused(video, admin))
        assert code == 4502 and "a4" in reason, (code, reason)
        wait_for(lambda: owner_and_url(engine, "cam1")[0] is None, 30, "a4's lease expiring")
        # (the API node may answer from its lookup of up to half a second ago once more)
        code, reason = wait_for(
            lambda: (answer := asyncio.run(refused(video, admin)))[0] == 4503 and answer,
            10,
            "no owner said",
        )
        assert code == 4503 and "last owner a4" in reason, (code, reason)
    finally:
        for analyzer in analyzers:
            analyzer.ensure_gone()
        for node in (api, stray):
            if node is not None:
                node.send_signal(signal.SIGTERM)
                try:
                    node.wait(30)
                except subprocess.TimeoutExpired:
                    node.kill()
        os.environ.pop("SAFEWATCH_CLUSTER_SECRET", None)
        schema.__exit__(None, None, None)


def test_nodes_of_role_all_serve_their_own_cameras_and_relay_each_others(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    """Two ``--role all`` nodes (``--api thread`` and ``--api process``), one camera each: a
    node's dashboard shows its own camera from its own process (no relay state message) and the
    other's relayed from the other node's own video listener (cluster.video_port), never from
    its dashboard's port."""
    schema = pg_server.fresh_schema()
    url = schema.__enter__()
    nodes: list[Analyzer] = []
    try:
        site = write_cluster_site(
            tmp_path, url, asset(CLIP), asset(MODEL), cameras=2, lease_seconds=3.0
        )
        document = yaml.safe_load(site.read_text())
        document["cluster"]["secret"] = SECRET
        site.write_text(yaml.safe_dump(document))
        upgraded = safewatch("db", "upgrade", "--config", str(site))
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        engine = create_engine_for(url, tmp_path)
        from safewatch.api.auth.store import AuthStore

        store = AuthStore(engine)
        store.add_user("olga", "correct horse battery", "operator")
        operator = {"Authorization": f"Bearer {store.create_token('olga', 'test').token}"}
        for name, api in (("n1", "thread"), ("n2", "process")):
            extra = ("--role", "all", "--api", api)
            nodes.append(Analyzer(name, site, tmp_path, extra=extra).start())

        def owners() -> dict[str, str | None]:
            return {camera: owner_and_url(engine, camera)[0] for camera in ("cam1", "cam2")}

        wait_for(lambda: set(owners().values()) == {"n1", "n2"}, 180, "one camera per node")
        placed = owners()
        node = nodes[0]
        mine = next(camera for camera, owner in placed.items() if owner == "n1")
        theirs = next(camera for camera, owner in placed.items() if owner == "n2")
        # its own video listener, never its dashboard's port
        their_url = owner_and_url(engine, theirs)[1]
        assert their_url is not None and their_url != nodes[1].base
        ws = node.base.replace("http", "ws", 1)

        store.add_user("admin", "correct horse battery", "admin")
        admin = {"Authorization": f"Bearer {store.create_token('admin', 'test').token}"}

        def own_process_has_analysed() -> bool:  # (its /metrics needs a credential: role all)
            try:
                metrics = httpx.get(f"{node.base}/metrics", headers=admin, timeout=10).text
            except httpx.HTTPError:
                return False  # busy: ask again
            return analysed_counts(metrics).get(mine, 0) > 0

        wait_for(own_process_has_analysed, 120, f"n1 analysing {mine}")
        local = asyncio.run(take(f"{ws}/api/v1/ws/cameras/{mine}/video", operator, 3))
        assert all(isinstance(m, bytes) for m in local)  # no relay: no state message
        relayed = asyncio.run(take(f"{ws}/api/v1/ws/cameras/{theirs}/video", operator, 3))
        assert json.loads(relayed[0]) == {"type": "state", "state": "streaming", "owner": "n2"}
        header, init = parse_video_message(relayed[1])  # type: ignore[arg-type]
        assert header["type"] == "init" and boxes(init)[:2] == [b"ftyp", b"moov"]
        # and the other way: n2 (API process) relays n1's camera from n1's own thread
        other = nodes[1].base.replace("http", "ws", 1)
        back = asyncio.run(take(f"{other}/api/v1/ws/cameras/{mine}/video", operator, 3))
        assert json.loads(back[0]) == {"type": "state", "state": "streaming", "owner": "n1"}
        assert parse_video_message(back[1])[0]["type"] == "init"  # type: ignore[arg-type]
        # neither dashboard port (thread or API process) serves the internal video, even to an
        # admin with a valid grant for the node (the owner or not)
        for each, owned in ((nodes[0], mine), (nodes[1], theirs)):
            for headers in ({}, admin):
                grant = {GRANT_HEADER: sign_grant(SECRET, each.name, owned, "raw", "admin")}
                internal = f"{each.base.replace('http', 'ws', 1)}{INTERNAL_PREFIX}{owned}/video"
                assert asyncio.run(not_served(internal, headers | grant))
        assert store.audit_records(action="live.raw_view")[1] == 0
    finally:
        for each in nodes:
            each.ensure_gone()
        schema.__exit__(None, None, None)
