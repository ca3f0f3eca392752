"""The bus on a real ``redis-server`` (loopback, throwaway): incident changes reach a dashboard's
feed once each, also across a Redis restart and a trimmed stream (back-filled from the chain);
live overlays ride Pub/Sub; an export worker's pending entries survive its crash."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from incident_factories import make_incident
from patience import poll
from redis_server import RedisServer, redis_unavailable
from safewatch.api.live import LiveHub
from safewatch.bus import LIVE_FRAME, Envelope, PublishAfterCommit, Publisher
from safewatch.bus.redis_streams import BusKeys
from safewatch.domain import IncidentStatus
from safewatch.storage import IncidentRepository

pytestmark = pytest.mark.skipif(
    redis_unavailable() is not None, reason=redis_unavailable() or "redis available"
)

KEYS = BusKeys.for_name("test site")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start()
    yield server
    server.stop()


class Sink:
    """Collects what the feed delivers (a dashboard's hub, reduced to a list)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.envelopes: list[Envelope] = []

    def publish(self, envelope: Envelope) -> None:
        with self.lock:
            self.envelopes.append(envelope)

    def seqs(self) -> list[int]:
        with self.lock:
            return [e.seq for e in self.envelopes if e.seq is not None]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    poll(condition, timeout)


def publish_frames_until(
    publisher: Publisher, camera: str, arrived: Callable[[], object], timeout: float, what: str
) -> None:
    """Publish live frames of ``camera`` until ``arrived``: Pub/Sub is lossy, and until the
    subscription is in place the messages go nowhere, so one message is not enough."""
    seqs = itertools.count(1)

    def one_more() -> object:
        if found := arrived():
            return found
        publisher.publish(
            Envelope(LIVE_FRAME, {"type": "frame", "camera": camera, "seq": next(seqs)})
        )
        return None

    poll(one_more, timeout, what)


def start_feed(feed: Any, sink: Any, stop: threading.Event) -> threading.Thread:
    """The incident feed's thread, after one round here: the rig's feed starts from seq 0, and
    its first round back-fills from the chain whatever is committed by then, so a change a test
    writes before that round (the thread scheduled late on a busy machine) would arrive as a
    back-fill instead of over Redis."""
    feed.poll(sink)
    thread = threading.Thread(target=feed.run, args=(sink, stop), daemon=True)
    thread.start()
    return thread


def chain_change_seqs(repository: IncidentRepository) -> list[int]:
    changes, _ = repository.changes_after(0, limit=100_000)
    return [c.entry.seq for c in changes]


@pytest.fixture
def rig(db_engine: Engine, redis_server: RedisServer) -> Iterator[dict[str, Any]]:
    from safewatch.bus.redis_streams import IncidentFeed, RedisPublisher, connect

    repository = IncidentRepository(db_engine)
    publisher = RedisPublisher(connect(redis_server.url), keys=KEYS).start()
    repository.add_change_hook(PublishAfterCommit(publisher))
    feed = IncidentFeed(
        connect(redis_server.url),
        repository,
        keys=KEYS,
        block_ms=200,
        resync_seconds=60.0,
        start_seq=0,
    )
    yield {"repository": repository, "publisher": publisher, "feed": feed}
    publisher.stop(1.0)


def test_changes_arrive_through_the_stream_in_order(rig: dict[str, Any]) -> None:
    repository, feed = rig["repository"], rig["feed"]
    sink, stop = Sink(), threading.Event()
    thread = start_feed(feed, sink, stop)
    try:
        for track in range(5):
            repository.upsert(make_incident(track))
        repository.set_status(make_incident(0).id, IncidentStatus.RESOLVED, actor="ann")
        wait_for(lambda: len(sink.seqs()) == 6)
    finally:
        stop.set()
        thread.join(5)
    assert sink.seqs() == [1, 2, 3, 4, 5, 6]
    assert feed.backfilled == 0 and feed.delivered == 6  # all of them came over Redis
    assert sink.envelopes[-1].body["actor"] == "ann"


def test_a_feed_delivers_what_follows_its_position_not_its_first_round(
    rig: dict[str, Any], redis_server: RedisServer
) -> None:
    """A change committed after ``position()`` but before the feed's first round (its thread
    started late) is delivered; one committed before ``position()`` is history."""
    from safewatch.bus.redis_streams import IncidentFeed, connect

    repository = rig["repository"]
    repository.upsert(make_incident(0))  # before: the dashboard's list already has it
    feed = IncidentFeed(
        connect(redis_server.url), repository, keys=KEYS, block_ms=200
    )  # as BusFeeds does
    feed.position()
    repository.upsert(make_incident(1))  # after, while the feed's thread has not run yet
    sink = Sink()
    assert rig["publisher"].flush(10.0)
    wait_for(lambda: (feed.poll(sink), sink.seqs())[1] == [2])
    assert feed.delivered == 1 and feed.backfilled == 0  # over Redis, from the position on


def test_a_redis_restart_loses_no_change_and_doubles_none(
    rig: dict[str, Any], redis_server: RedisServer
) -> None:
    repository, feed, publisher = rig["repository"], rig["feed"], rig["publisher"]
    sink, stop = Sink(), threading.Event()
    thread = start_feed(feed, sink, stop)
    try:
        for track in range(3):
            repository.upsert(make_incident(track))
        wait_for(lambda: len(sink.seqs()) == 3)
        redis_server.kill()  # kill -9: the stream (memory only) is gone with it
        for track in range(3):  # written while Redis is down: committed, not on the stream
            repository.upsert(make_incident(track, ended_at=1005.0))
        time.sleep(0.5)
        redis_server.restart()  # empty
        for track in range(3, 5):
            repository.upsert(make_incident(track))
        wait_for(lambda: len(sink.seqs()) == 8)
        assert publisher.flush(10.0)
        time.sleep(1.0)  # the queued copies of the down-time changes arrive now: skipped
    finally:
        stop.set()
        thread.join(5)
    assert sink.seqs() == chain_change_seqs(repository) == list(range(1, 9))
    assert feed.backfilled >= 3  # the down-time changes came from the chain
    closed = [e for e in sink.envelopes if e.body["kind"] == "closed"]
    assert len(closed) == 3


def test_a_trimmed_stream_is_back_filled_from_the_chain(
    rig: dict[str, Any], redis_server: RedisServer
) -> None:
    from safewatch.bus.redis_streams import connect

    repository, feed, publisher = rig["repository"], rig["feed"], rig["publisher"]
    sink = Sink()
    feed.poll(sink)  # the feed starts (at the empty stream) and is then not read for a while
    for track in range(10):
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)
    client = connect(redis_server.url)
    client.xtrim(
        KEYS.incidents, maxlen=2, approximate=False
    )  # what MAXLEN ~ does to a reader that fell behind
    # Rounds until all ten are in, or until one fails (returns a wait): the assert says which.
    poll(lambda: feed.poll(sink) or len(sink.seqs()) >= 10, 10, "the trimmed changes", 0)
    assert sink.seqs() == list(range(1, 11))
    assert (feed.backfilled, feed.delivered) == (8, 2)


def test_a_quiet_stream_still_gets_changes_that_never_reached_redis(
    db_engine: Engine, redis_server: RedisServer
) -> None:
    """A publisher that died before sending: nothing follows on the stream, the resync finds it."""
    from safewatch.bus.redis_streams import IncidentFeed, connect

    repository = IncidentRepository(db_engine)  # no hook: its changes never reach Redis
    feed = IncidentFeed(
        connect(redis_server.url),
        repository,
        keys=KEYS,
        block_ms=100,
        resync_seconds=0.3,
        start_seq=0,
    )
    sink = Sink()
    repository.upsert(make_incident(1))
    repository.upsert(make_incident(1, ended_at=1001.0))

    def both_read() -> bool:
        feed.poll(sink)
        return len(sink.seqs()) >= 2

    poll(both_read, 10, "both changes", 0)
    assert sink.seqs() == [1, 2]


def test_an_entry_above_the_chains_head_is_refused_by_the_feed_and_the_export(
    rig: dict[str, Any], redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another deployment writing to the same Redis (or a forged ``XADD``): its change 20
    arrives while this site's chain ends at 2. Taken, it moved both readers to 20, and this
    site's changes 3-5 were then dropped as repeats (the feed) and never exported."""
    from safewatch.bus.envelope import encode, incident_change
    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import connect

    repository, feed, publisher = rig["repository"], rig["feed"], rig["publisher"]
    client = connect(redis_server.url)
    worker = ExportWorker(client, tmp_path, keys=KEYS, consumer="a", repository=repository)
    worker.ensure_group()
    sink = Sink()
    feed.poll(sink)  # positioned at the empty stream
    for track in range(2):
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)
    other_site = incident_change("opened", make_incident(9, camera="elsewhere"), seq=20)
    client.xadd(KEYS.incidents, {b"e": encode(other_site)})
    feed.poll(sink)  # one read: 1, 2 and the other site's 20
    worker.step(block=0.2)
    for track in range(2, 5):
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)
    poll(lambda: feed.poll(sink) or max(sink.seqs()) >= 5, 10, "changes 3-5 in the feed", 0)
    poll(lambda: worker.step(block=0.2) or (worker.last_seq or 0) >= 5, 10, "3-5 exported", 0)
    exported = [json.loads(x)["seq"] for f in sorted(tmp_path.glob("*.jsonl")) for x in f.open()]
    assert sink.seqs() == exported == [1, 2, 3, 4, 5]
    assert (feed.foreign, worker.foreign) == (1, 1)
    assert "refused incident change 20 from the stream: this site's chain ends at 2" in caplog.text


def test_live_overlays_ride_pub_sub_into_the_hub(redis_server: RedisServer) -> None:
    from safewatch.bus.redis_streams import LiveFeed, RedisPublisher, connect

    hub = LiveHub()
    feed = LiveFeed(connect(redis_server.url), keys=KEYS)
    stop = threading.Event()
    thread = threading.Thread(target=feed.run, args=(hub, stop), daemon=True)
    thread.start()
    publisher = RedisPublisher(connect(redis_server.url), keys=KEYS).start()
    try:
        publish_frames_until(publisher, "cam-9", lambda: hub.remote("cam-9"), 10, "a live message")
        remote = hub.remote("cam-9")
        assert remote is not None and remote[1]["camera"] == "cam-9"
    finally:
        stop.set()
        thread.join(5)
        publisher.stop(1.0)
    assert feed.received >= 1


def assert_only_own_changes(feed: Any, worker: Any, own: list[str], folder: Path) -> None:
    """``feed`` delivers, and ``worker`` exports, the changes of the incidents ``own`` (all on
    the stream already), and nothing else."""
    sink = Sink()
    poll(lambda: feed.poll(sink) or len(sink.seqs()) >= len(own), 10, "the site's changes", 0)
    assert [e.body["incident"]["id"] for e in sink.envelopes] == own
    assert (feed.foreign, feed.duplicates, feed.backfilled) == (0, 0, 0)
    poll(lambda: worker.step(block=0.1) or worker.written >= len(own), 10, "the export", 0)
    assert worker.step(block=0.1) == 0, "the export worker read more"
    lines = [json.loads(x) for f in folder.iterdir() for x in f.open()]
    assert [line["incident"]["id"] for line in lines] == own


@pytest.mark.parametrize(
    "names", [("plant", "plant2"), ("p*", "plant")], ids=["name-prefix", "glob-character"]
)
def test_two_sites_on_one_redis_neither_see_nor_consume_each_others_messages(
    redis_server: RedisServer, tmp_path: Path, names: tuple[str, str]
) -> None:
    """Two sites (each with its own database) on one Redis server, one's name a prefix of the
    other's, or one with a glob character in it: each site's incident feed and export worker
    (both sites' workers in a group named ``export``) get its own changes only, and its live
    feed only its own frames of the camera ``gate`` both sites have."""
    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import IncidentFeed, LiveFeed, RedisPublisher, connect
    from safewatch.storage import create_engine_for
    from safewatch.storage.migrate import upgrade

    tracks = {names[0]: [1, 2], names[1]: [11, 12, 13]}
    stop = threading.Event()
    engines, publishers, threads = [], [], []
    sites: dict[str, dict[str, Any]] = {}
    try:
        for index, name in enumerate(names):
            keys = BusKeys.for_name(name)
            engine = create_engine_for(f"sqlite:///{tmp_path / f'site{index}.db'}", tmp_path)
            engines.append(engine)
            upgrade(engine)
            repository = IncidentRepository(engine)
            publisher = RedisPublisher(connect(redis_server.url), keys=keys).start()
            publishers.append(publisher)
            repository.add_change_hook(PublishAfterCommit(publisher))
            feed = IncidentFeed(
                connect(redis_server.url), repository, keys=keys, block_ms=100, resync_seconds=600
            )
            feed.position()  # at the empty chain's head and the stream's end, as BusFeeds does
            worker = ExportWorker(
                connect(redis_server.url), tmp_path / f"export{index}", keys=keys, consumer=name
            )
            worker.ensure_group()
            live, live_sink = LiveFeed(connect(redis_server.url), keys=keys), Sink()
            threads.append(threading.Thread(target=live.run, args=(live_sink, stop), daemon=True))
            threads[-1].start()
            sites[name] = {"repository": repository, "publisher": publisher, "feed": feed}
            sites[name] |= {"worker": worker, "live": live_sink}
        for name, site in sites.items():
            for track in tracks[name]:
                site["repository"].upsert(make_incident(track, camera="gate"))
            assert site["publisher"].flush(10.0)

        for index, (name, site) in enumerate(sites.items()):
            own = [make_incident(track, camera="gate").id for track in tracks[name]]
            assert_only_own_changes(site["feed"], site["worker"], own, tmp_path / f"export{index}")

        frames = itertools.count(1)

        def both_see_their_own() -> bool:
            if all(s["live"].envelopes for s in sites.values()):
                return True
            for name, site in sites.items():
                body = {"type": "frame", "camera": "gate", "site": name, "seq": next(frames)}
                site["publisher"].publish(Envelope(LIVE_FRAME, body))
            return False

        poll(both_see_their_own, 10, "each site's live feed getting a frame")
        for name, site in sites.items():
            assert {e.body["site"] for e in site["live"].envelopes} == {name}
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for publisher in publishers:
            publisher.stop(1.0)
        for engine in engines:
            engine.dispose()


def test_an_export_workers_pending_entries_are_claimed_by_another(
    rig: dict[str, Any], redis_server: RedisServer, tmp_path: Path
) -> None:
    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import connect

    repository, publisher = rig["repository"], rig["publisher"]
    client = connect(redis_server.url)
    crashed_dir, out = tmp_path / "crashed", tmp_path / "out"
    crashing = ExportWorker(client, crashed_dir, keys=KEYS, consumer="worker-a", claim_idle=0.3)
    crashing.ensure_group()
    for track in range(4):
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)

    def crash(_lines: object) -> None:
        raise KeyboardInterrupt("worker-a died while writing")

    crashing._write = crash  # type: ignore[method-assign,assignment]  # dies after reading, before XACK
    with pytest.raises(KeyboardInterrupt):
        crashing.step(block=1.0)
    pending = client.xpending(KEYS.incidents, "export")
    assert pending["pending"] == 4 and pending["consumers"][0]["name"] == b"worker-a"

    survivor = ExportWorker(client, out, keys=KEYS, consumer="worker-b", claim_idle=0.3)
    assert survivor.step(block=0.1) == 0  # not idle long enough yet: left to its owner
    time.sleep(0.4)
    repository.upsert(make_incident(4))
    assert publisher.flush(10.0)
    written = survivor.step(block=1.0)
    assert (written, survivor.claimed) == (5, 4)
    assert client.xpending(KEYS.incidents, "export")["pending"] == 0
    lines = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.open()]
    assert sorted(line["seq"] for line in lines) == [1, 2, 3, 4, 5]
    assert {line["kind"] for line in lines} == {"opened"}
    assert not crashed_dir.exists()


def test_pending_entries_trimmed_before_their_claim_are_counted_and_logged(
    rig: dict[str, Any], redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker died after reading; the stream was trimmed past its entries before another
    claimed them: without a database their changes are lost for the export, which says so
    (before: acknowledged without a word)."""
    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import connect

    repository, publisher = rig["repository"], rig["publisher"]
    client = connect(redis_server.url)
    crashing = ExportWorker(client, tmp_path / "crashed", keys=KEYS, consumer="worker-a")
    crashing.ensure_group()
    for track in range(3):
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)

    def crash(_lines: object) -> None:
        raise KeyboardInterrupt("worker-a died while writing")

    crashing._write = crash  # type: ignore[method-assign,assignment]  # dies before XACK
    with pytest.raises(KeyboardInterrupt):
        crashing.step(block=1.0)
    client.xtrim(KEYS.incidents, maxlen=0, approximate=False)
    survivor = ExportWorker(
        client, tmp_path / "out", keys=KEYS, consumer="worker-b", claim_idle=0.001
    )
    poll(lambda: survivor.step(block=0.1) or survivor.trimmed, 10, "the trimmed entries", 0.01)
    assert (survivor.trimmed, survivor.written) == (3, 0)
    assert client.xpending(KEYS.incidents, "export")["pending"] == 0
    assert "3 pending entry(ies) trimmed from the stream before they were written" in caplog.text
    assert "their changes are lost for this export" in caplog.text


def test_a_trimmed_pending_entry_as_redis_6_2_returns_it_does_not_stop_the_export(
    rig: dict[str, Any], redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis before 7 returns a pending entry trimmed from the stream as a bare nil in
    XAUTOCLAIM's reply (redis-py: ``(None, None)``): acknowledging its id (None) raised
    DataError every round, and the worker never reached XREADGROUP again. (The server here is
    Redis 7, so its reply is dressed as 6.2's.)"""
    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import connect

    repository, publisher = rig["repository"], rig["publisher"]
    client = connect(redis_server.url)
    worker = ExportWorker(client, tmp_path / "out", keys=KEYS, consumer="worker-a")
    worker.ensure_group()
    real = client.xautoclaim

    def as_redis_6_2(*args: Any, **kwargs: Any) -> Any:
        reply = real(*args, **kwargs)
        return [reply[0], [*reply[1], (None, None)]]  # 6.2: two elements, a nil entry

    client.xautoclaim = as_redis_6_2  # type: ignore[method-assign]
    for track in range(3):
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)
    poll(lambda: worker.step(block=0.1) or worker.written >= 3, 10, "the new changes", 0.01)
    worker.step(block=0.1)
    assert worker.written == 3
    assert caplog.text.count("Redis before 7 no longer names them") == 1


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "chain-only"])
def test_an_api_nodes_hub_gets_every_nodes_changes_once(
    db_engine: Engine, redis_server: RedisServer, with_redis: bool
) -> None:
    """Analyzer and API node as ``serve --cluster`` wires them (AnalyzerBus, BusFeeds)."""
    import asyncio

    from safewatch.api.bus_feed import BusFeeds
    from safewatch.runtime.bus_link import AnalyzerBus

    url = redis_server.url if with_redis else None
    analyzer_repo, api_repo = IncidentRepository(db_engine), IncidentRepository(db_engine)
    analyzer = AnalyzerBus(analyzer_repo, redis_server.url, KEYS) if with_redis else None
    hub = LiveHub()

    async def scenario() -> list[tuple[str, str | None]]:
        subscription = hub.subscribe(incidents=True)
        feeds = await asyncio.to_thread(BusFeeds, hub, api_repo, url, KEYS)
        try:
            await asyncio.to_thread(analyzer_repo.upsert, make_incident(1))
            await asyncio.to_thread(
                api_repo.set_status, make_incident(1).id, IncidentStatus.ACKNOWLEDGED, actor="ann"
            )
            # The route's own local call, as today: ignored, the bus brings the change.
            hub.publish_incident("status", make_incident(1), actor="ann")
            seen: list[tuple[str, str | None]] = []
            deadline = time.monotonic() + 20
            while len(seen) < 2 and time.monotonic() < deadline:
                await subscription.wait(0.5)
                seen += [(n.kind, n.actor) for n in subscription.notices()]
            await asyncio.sleep(1.5)  # a double would arrive meanwhile
            seen += [(n.kind, n.actor) for n in subscription.notices()]
            return seen
        finally:
            await asyncio.to_thread(feeds.stop)

    try:
        assert asyncio.run(scenario()) == [("opened", None), ("status", "ann")]
    finally:
        if analyzer is not None:
            analyzer.stop()


def test_the_export_worker_command_writes_and_stops_on_sigterm(
    rig: dict[str, Any], redis_server: RedisServer, db_url: str, tmp_path: Path
) -> None:
    """With --database: the change made before the worker started comes from the chain."""
    import signal
    import subprocess
    import sys

    repository, publisher = rig["repository"], rig["publisher"]
    repository.upsert(make_incident(0))
    assert publisher.flush(10.0)
    redis_server.kill()
    redis_server.restart()  # the first change is only in the chain now
    out = tmp_path / "export"
    worker = subprocess.Popen(
        [sys.executable, "-m", "safewatch", "export-worker", "--redis", redis_server.url,
         "--namespace", "test site",
         "--database", db_url, "--out", str(out), "--consumer", "cli-1"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        for track in range(1, 3):
            repository.upsert(make_incident(track))
        assert publisher.flush(10.0)

        def lines() -> list[dict[str, Any]]:
            return [json.loads(x) for f in out.glob("*.jsonl") for x in f.read_text().splitlines()]

        wait_for(lambda: len(lines()) == 3, timeout=60)
        assert [line["seq"] for line in lines()] == [1, 2, 3]
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "3 line(s) written (" in stderr and "stream and chain" in stderr


def test_an_export_worker_recreates_its_group_after_a_redis_restart(
    rig: dict[str, Any], redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis without persistence comes back empty: the group is gone (NOGROUP), the worker
    creates it again and exports what is published after the restart."""
    import redis

    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import connect

    repository, publisher = rig["repository"], rig["publisher"]
    worker = ExportWorker(connect(redis_server.url), tmp_path, keys=KEYS, consumer="worker-a")
    worker.ensure_group()
    repository.upsert(make_incident(0))
    assert publisher.flush(10.0)
    assert worker.step(block=1.0) == 1
    redis_server.kill()
    redis_server.restart()  # empty: no stream, no group
    repository.upsert(make_incident(1))
    assert publisher.flush(10.0)
    # redis.ConnectionError: the old connection's first use after the restart
    written = poll(
        lambda: worker.step(block=0.5),
        20,
        "a write after the restart",
        0.2,
        (redis.ConnectionError,),
    )
    assert written == 1 and worker.written == 2


def test_an_export_worker_with_the_database_writes_every_seq_once_in_order(
    rig: dict[str, Any], redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Changes trimmed away with a Redis restarted empty (NOGROUP), one that never reached
    Redis, a worker restarted on its folder: the export holds each chain change once, in order,
    the ones Redis lost read from the chain."""
    import redis

    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import connect

    repository, publisher = rig["repository"], rig["publisher"]

    def exported() -> list[int]:
        return [json.loads(x)["seq"] for f in sorted(tmp_path.glob("*.jsonl")) for x in f.open()]

    def run_until(worker: ExportWorker, count: int) -> None:
        def done() -> bool:
            worker.step(block=0.2)
            return len(exported()) >= count

        # redis.ConnectionError: the old connection's first use after the restart
        poll(done, 20, f"{count} changes exported", 0.1, (redis.ConnectionError,))

    repository.upsert(make_incident(0))  # before the worker: its empty folder starts at seq 1
    assert publisher.flush(10.0)
    worker = ExportWorker(
        connect(redis_server.url), tmp_path, keys=KEYS, consumer="a", repository=repository,
        resync_seconds=0.3,
    )  # fmt: skip
    worker.ensure_group()
    repository.upsert(make_incident(1))
    assert publisher.flush(10.0)
    run_until(worker, 2)
    assert worker.backfilled >= 1 and worker.duplicates >= 1  # seq 1 came first from the chain
    for track in (2, 3):  # on the stream, never read: lost with the restart
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)
    redis_server.kill()
    redis_server.restart()
    repository.upsert(make_incident(4))  # the new stream's first entry: a jump over 2 and 3
    assert publisher.flush(10.0)
    run_until(worker, 5)
    publisher.stop(1.0)  # the next change never reaches Redis; the chain check finds it
    repository.upsert(make_incident(5))
    run_until(worker, 6)
    restarted = ExportWorker(
        connect(redis_server.url), tmp_path, keys=KEYS, consumer="b", repository=repository
    )
    repository.upsert(make_incident(6))
    run_until(restarted, 7)
    assert restarted.backfilled == 1
    assert exported() == chain_change_seqs(repository)
    assert len(exported()) == 7
    restarted._warn_if_shared()  # "a" read the group a moment ago: each would write everything
    assert "also read by a;" in caplog.text


def test_an_export_file_torn_by_a_crash_is_cut_before_the_next_append(
    rig: dict[str, Any], redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker killed mid-write leaves half a line: the restarted worker (with the database)
    goes on after the last readable ``seq`` and writes that change again. Appended blindly,
    its line was glued to the torn one, unreadable, and the change lost from the export."""
    from safewatch.bus.export import ExportWorker, last_exported_seq
    from safewatch.bus.redis_streams import connect

    repository, publisher = rig["repository"], rig["publisher"]
    for track in range(3):
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)
    worker = ExportWorker(
        connect(redis_server.url), tmp_path, keys=KEYS, consumer="a", repository=repository
    )
    worker.ensure_group()
    poll(lambda: worker.step(block=0.2) or worker.last_seq == 3, 10, "3 exported", 0)
    (path,) = tmp_path.glob("*.jsonl")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(data.splitlines()[-1]) // 2])  # killed mid-line
    assert last_exported_seq(tmp_path) == 2
    restarted = ExportWorker(
        connect(redis_server.url), tmp_path, keys=KEYS, consumer="b", repository=repository
    )
    for track in range(3, 5):
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)
    poll(lambda: restarted.step(block=0.2) or restarted.last_seq == 5, 10, "5 exported", 0)
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert "ended in a torn line" in caplog.text


_FULL_DISK_WORKER = """
import resource, signal, sys
from pathlib import Path
from safewatch.bus.export import ExportWorker
from safewatch.bus.redis_streams import BusKeys, connect

worker = ExportWorker(
    connect(sys.argv[1]), Path(sys.argv[2]), keys=BusKeys.for_name("test site"), consumer="a"
)
worker.ensure_group()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as a full disk's ENOSPC: a short write
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))
try:
    worker.step(block=1.0)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_an_export_write_that_fails_leaves_no_torn_line(
    rig: dict[str, Any], redis_server: RedisServer, tmp_path: Path
) -> None:
    """A full disk (here a file size limit: a short write, then EFBIG) mid-write: the file is
    cut back to its size before the write, and the worker that claims the entries writes
    whole lines after it (without a database, nothing else would notice the torn one)."""
    import subprocess
    import sys

    from safewatch.bus.envelope import decode
    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import connect

    repository, publisher = rig["repository"], rig["publisher"]
    for track in range(10):
        repository.upsert(make_incident(track))
    assert publisher.flush(10.0)
    client = connect(redis_server.url)
    first = decode(client.xrange(KEYS.incidents, count=1)[0][1][b"e"])
    path = tmp_path / f"incidents-{time.strftime('%Y-%m-%d', time.gmtime(first.at))}.jsonl"
    path.write_bytes(b'{"seq":0}\n')  # what the file held before
    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_WORKER, redis_server.url, str(tmp_path), "2000"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert path.read_bytes() == b'{"seq":0}\n', child  # none of the failed write's bytes
    assert child.stdout.startswith("ExportFileError cannot write the export in"), child
    assert "File too large" in child.stdout
    survivor = ExportWorker(client, tmp_path, keys=KEYS, consumer="b", claim_idle=0.001)
    poll(lambda: survivor.step(block=0.2) or survivor.claimed == 10, 10, "the claim", 0.01)
    seqs = [json.loads(line)["seq"] for line in path.read_text().splitlines()]
    assert sorted(seqs) == list(range(11))


def test_an_export_worker_logs_a_file_system_error_as_such(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not as "Redis error": a folder that cannot be made (under a file) is the disk's fault."""
    from safewatch.bus.envelope import encode, incident_change
    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import connect

    (tmp_path / "file").write_text("")
    client = connect(redis_server.url)
    worker = ExportWorker(client, tmp_path / "file" / "out", keys=KEYS, consumer="a")
    worker.ensure_group()
    client.xadd(KEYS.incidents, {b"e": encode(incident_change("opened", make_incident(), seq=1))})
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: "export worker: cannot write the export in" in caplog.text)
    finally:
        stop.set()
        thread.join(10)
    assert "Not a directory" in caplog.text and "Redis error" not in caplog.text


class FailingOnce(Sink):
    """A sink whose first ``publish`` raises what a hub may raise (BusFormatError, a
    ValueError), as a malformed envelope does."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def publish(self, envelope: Envelope) -> None:
        if not self.failed:
            self.failed = True
            raise ValueError("malformed envelope")
        super().publish(envelope)


def test_feeds_survive_an_exception_in_a_round(
    rig: dict[str, Any], redis_server: RedisServer
) -> None:
    """An exception other than Redis's or the database's (here: the sink's) ends one round of
    the incident and live feeds, never their threads; the incident feed back-fills the change
    it could not deliver."""
    from safewatch.bus.redis_streams import LiveFeed, RedisPublisher, connect

    repository, feed = rig["repository"], rig["feed"]
    sink, live_sink, stop = FailingOnce(), FailingOnce(), threading.Event()
    live = LiveFeed(connect(redis_server.url), keys=KEYS)
    threads = [
        start_feed(feed, sink, stop),
        threading.Thread(target=live.run, args=(live_sink, stop), daemon=True),
    ]
    threads[1].start()
    publisher = RedisPublisher(connect(redis_server.url), keys=KEYS).start()
    try:
        for track in range(3):
            repository.upsert(make_incident(track))
        wait_for(lambda: sink.seqs() == [1, 2, 3])
        publish_frames_until(
            publisher,
            "c",
            lambda: live_sink.envelopes,
            20,
            "the live feed after its sink failed once",
        )
        assert all(thread.is_alive() for thread in threads)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        publisher.stop(1.0)
    assert sink.failed and live_sink.failed and feed.failures >= 1


def test_a_process_with_analyzer_and_dashboard_adds_each_change_to_the_stream_once(
    db_engine: Engine, redis_server: RedisServer
) -> None:
    """``serve --cluster --api thread``: the dashboard's feeds reuse the analyzer's publisher
    instead of installing a second publish-after-commit hook (every change was XADDed twice)."""
    import asyncio

    from safewatch.bus.redis_streams import connect
    from safewatch.runtime.bus_link import ClusterBus

    repository = IncidentRepository(db_engine)
    bus = ClusterBus(repository, redis_server.url, KEYS)
    hub = LiveHub()

    async def follow() -> None:
        await asyncio.to_thread(bus.follow, hub)

    asyncio.run(follow())
    try:
        for track in range(3):
            repository.upsert(make_incident(track))
        repository.set_status(make_incident(0).id, IncidentStatus.ACKNOWLEDGED, actor="ann")
        client = connect(redis_server.url)
        wait_for(lambda: client.xlen(KEYS.incidents) >= 4)
        time.sleep(1.0)  # a second copy would arrive meanwhile
        assert client.xlen(KEYS.incidents) == 4
    finally:
        bus.stop()
