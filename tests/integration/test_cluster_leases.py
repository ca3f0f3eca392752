"""Camera leases against a real PostgreSQL: several ClusterMember objects in one process, short
leases (2 s) and generous waits (never a margin of a few milliseconds).

Ownership is checked on the listeners' joint log: each camera's acquired/released calls must
alternate with one owner at a time and rising epochs, whatever happened in between.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import CutProxy, OwnershipLog, wait_for
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from db_servers import PostgresServer
from incident_factories import make_incident
from patience import stretch
from safewatch.cluster import ClusterMember, EpochFence, FencedWrite, hold_off
from safewatch.domain import Incident
from safewatch.errors import StorageError
from safewatch.runtime.cluster_owner import ClusterOwner
from safewatch.storage import (
    ChainEntryRow,
    CoverageGapRow,
    IncidentRepository,
    create_engine_for,
    hash_chain,
)

LEASE = 2.0
RENEW = 0.3  # below the default third: more tries before the deadline on a starved CI machine
CAMERAS = [f"cam-{n}" for n in range(6)]
SETTLE = stretch(20.0)  # seconds: a liveness bound, generous and longer on a loaded machine


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    """The shared ``pg_engine`` under the name these tests use."""
    return pg_engine


@pytest.fixture
def ownership() -> OwnershipLog:
    return OwnershipLog()


@pytest.fixture
def members(engine: Engine, ownership: OwnershipLog) -> Iterator[dict[str, ClusterMember]]:
    """Members by name, made with :func:`join`; all stopped at the end."""
    made: dict[str, ClusterMember] = {}
    yield made
    for member in made.values():
        member.stop()


def join(
    made: dict[str, ClusterMember],
    engine: Engine,
    ownership: OwnershipLog,
    name: str,
    cameras: list[str] = CAMERAS,
    incidents: IncidentRepository | None = None,
) -> ClusterMember:
    member = ClusterMember(
        engine,
        name,
        cameras,
        ownership.listener(name),
        lease_seconds=LEASE,
        renew_every=RENEW,
        incidents=incidents,
    )
    made[name] = member
    member.start()
    return member


def lease_rows(engine: Engine) -> dict[str, tuple[str | None, int, float]]:
    """camera -> (owner, epoch, seconds left by the database's clock)."""
    query = text(
        "SELECT camera_id, owner, epoch, expires_at - EXTRACT(EPOCH FROM clock_timestamp()) "
        "AS left FROM camera_leases"
    )
    with engine.connect() as connection:
        return {
            r.camera_id: (r.owner, int(r.epoch), float(r.left)) for r in connection.execute(query)
        }


def spread(made: dict[str, ClusterMember], names: list[str]) -> list[int]:
    return sorted(len(made[name].owned()) for name in names)


def incident(camera: str, n: int = 1, rule: str = "helmet") -> Incident:
    """Person ``n``'s open incident on ``camera``, with an id the tests can spell."""
    return make_incident(
        n,
        camera=camera,
        rule=rule,
        started_at=1000.0 + n,
        incident_id=f"inc-{camera}-{rule}-{n}",
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def opened_entries(engine: Engine) -> dict[str | None, dict[str, object]]:
    """incident id -> the detail of its ``incident.opened`` chain entry."""
    with Session(engine) as session:
        return {
            row.incident_id: json.loads(row.detail)
            for row in session.scalars(
                select(ChainEntryRow).where(ChainEntryRow.kind == "incident.opened")
            )
        }


def fenced_count(camera: str) -> float:
    return sample("safewatch_cluster_fenced_writes_total", camera=camera)


# -- tests -------------------------------------------------------------------------------------


def test_sqlite_is_refused(tmp_path: Path, ownership: OwnershipLog) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    with pytest.raises(StorageError, match="cluster mode needs PostgreSQL"):
        ClusterMember(engine, "a", CAMERAS, ownership.listener("a"))


def test_an_unmigrated_database_is_refused_with_the_command(
    pg_url: str, tmp_path: Path, ownership: OwnershipLog
) -> None:
    engine = create_engine_for(pg_url, tmp_path)
    try:
        with pytest.raises(StorageError, match="safewatch db upgrade"):
            ClusterMember(engine, "a", CAMERAS, ownership.listener("a"))
    finally:
        engine.dispose()


def test_bad_periods_are_refused(engine: Engine, ownership: OwnershipLog) -> None:
    with pytest.raises(ValueError, match="renew_every"):
        ClusterMember(engine, "a", CAMERAS, ownership.listener("a"), lease_seconds=3, renew_every=3)


def test_claim_renew_expire_and_epochs(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    a = join(members, engine, ownership, "a", CAMERAS[:2])
    wait_for(lambda: a.owned() == set(CAMERAS[:2]), SETTLE, "a owns both cameras")
    assert {c: a.epoch_of(c) for c in CAMERAS[:2]} == {"cam-0": 1, "cam-1": 1}
    time.sleep(3 * LEASE)  # several leases long: only renewals keep them
    rows = lease_rows(engine)
    assert {c: rows[c][:2] for c in CAMERAS[:2]} == {"cam-0": ("a", 1), "cam-1": ("a", 1)}
    assert all(rows[c][2] > 0 for c in CAMERAS[:2])
    assert a.owned() == set(CAMERAS[:2])

    a.stop()  # as a crash: nothing released
    ownership.crashed("a")
    wait_for(lambda: all(r[2] < 0 for r in lease_rows(engine).values()), SETTLE, "leases expire")
    assert a.owned() == frozenset()  # its own deadline passed even earlier
    assert a.epoch_of("cam-0") is None

    takeovers = sample("safewatch_cluster_takeovers_total", analyzer="b")
    b = join(members, engine, ownership, "b", CAMERAS[:2])
    wait_for(lambda: b.owned() == set(CAMERAS[:2]), SETTLE, "b takes both over")
    ownership.wait_heard(b)
    assert sample("safewatch_cluster_takeovers_total", analyzer="b") == takeovers + 2
    assert sample("safewatch_cluster_cameras_owned", analyzer="b") == 2
    taken = ownership.of("b", "acquired")
    assert {e.epoch for e in taken} == {2}
    assert all(e.takeover is not None for e in taken)
    assert {
        (e.takeover.previous_owner, e.takeover.previous_epoch) for e in taken if e.takeover
    } == {("a", 1)}
    assert ownership.check_one_owner_at_a_time() == 4


def test_a_members_counters_are_at_zero_before_their_first_event(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """increase() reads nothing of a series born at 1 by its first event: each alertable
    counter exists at 0 once the member has joined (the fence's once it holds the camera)."""
    name, camera = "zero-counters", "cam-zero"
    expected = [
        ("safewatch_cluster_takeovers_total", {"analyzer": name}),
        ("safewatch_cluster_round_failures_total", {"analyzer": name}),
        *(
            ("safewatch_cluster_releases_total", {"analyzer": name, "reason": reason})
            for reason in ("rebalance", "drain", "removed", "lost")
        ),
        ("safewatch_cluster_fenced_writes_total", {"camera": camera}),
    ]
    member = join(members, engine, ownership, name, [camera])
    wait_for(lambda: member.owned() == {camera}, SETTLE, "the member owns its camera")
    assert [REGISTRY.get_sample_value(metric, labels) for metric, labels in expected] == [
        0.0
    ] * len(expected)


def test_balance_within_one_after_join_and_leave(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    join(members, engine, ownership, "a")
    join(members, engine, ownership, "b")
    wait_for(lambda: spread(members, ["a", "b"]) == [3, 3], SETTLE, "3/3 on two members")
    before_join = len(ownership.events)
    join(members, engine, ownership, "c")
    wait_for(lambda: spread(members, ["a", "b", "c"]) == [2, 2, 2], SETTLE, "2/2/2 after a join")
    moves_after_join = len([e for e in ownership.events[before_join:] if e.reason == "rebalance"])
    assert moves_after_join == 2, "a join moves exactly the cameras the newcomer needs"
    members["b"].drain(timeout=10)
    assert members["b"].owned() == frozenset()
    ownership.wait_heard(members["b"])
    assert {e.reason for e in ownership.of("b", "released")} >= {"drain"}
    wait_for(lambda: spread(members, ["a", "c"]) == [3, 3], SETTLE, "3/3 after a leave")
    ownership.wait_heard(members["a"], members["c"])
    assert ownership.check_one_owner_at_a_time() >= 6
    with Session(engine) as session:
        gaps = session.scalars(select(CoverageGapRow)).all()
    handovers = [g for g in gaps if g.reason == "handover"]
    assert len(handovers) >= 4  # 2 rebalanced + the drained member's cameras
    assert max(g.ended_at - g.started_at for g in handovers) < 5.0


def test_never_two_owners_while_members_come_and_go(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    for name in ("a", "b", "c"):
        join(members, engine, ownership, name)
    wait_for(lambda: spread(members, ["a", "b", "c"]) == [2, 2, 2], SETTLE, "2/2/2")
    samples = 0
    end = time.monotonic() + 4 * LEASE
    members["a"].stop()  # crash: its cameras expire and are taken over
    ownership.crashed("a")
    while time.monotonic() < end:
        # first, other, first again: a camera counts twice only if the first member held it
        # before and after the other was read (a handover between two reads is not a double).
        first, other = ("b", "c") if samples % 2 else ("c", "b")
        before, theirs, after = (members[n].owned() for n in (first, other, first))
        assert not (before & after & theirs), (first, before, after, other, theirs)
        samples += 1
        time.sleep(0.02)
    wait_for(lambda: spread(members, ["b", "c"]) == [3, 3], SETTLE, "3/3 after a crash")
    join(members, engine, ownership, "d")
    wait_for(lambda: spread(members, ["b", "c", "d"]) == [2, 2, 2], SETTLE, "2/2/2 again")
    assert samples > 20
    ownership.wait_heard(*(members[n] for n in ("b", "c", "d")))
    assert ownership.check_one_owner_at_a_time() >= 8
    rows = lease_rows(engine)
    for camera in CAMERAS:
        owner, epoch, _ = rows[camera]
        assert owner is not None and members[owner].epoch_of(camera) == epoch


def test_fenced_write_is_refused_rolled_back_and_counted(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    repo_a = IncidentRepository(engine)
    a = join(members, engine, ownership, "a", ["cam-0"], incidents=repo_a)
    wait_for(lambda: a.owned() == {"cam-0"}, SETTLE, "a owns cam-0")
    first = incident("cam-0")
    repo_a.upsert(first)  # the owner writes
    repo_a.hold(first.id, first.started_at + 5)

    # A stale copy of "a" that still believes it holds epoch 1 (frozen, say): the database says
    # otherwise once "b" has taken the camera over.
    stale = IncidentRepository(engine, fence=EpochFence("a", lambda camera: 1))
    a.stop()
    repo_b = IncidentRepository(engine)
    b = join(members, engine, ownership, "b", ["cam-0"], incidents=repo_b)
    wait_for(lambda: b.owned() == {"cam-0"}, SETTLE, "b takes cam-0 over")
    current = incident("cam-0", 4)
    repo_b.upsert(current)  # the new owner writes
    before = {i.id: i for i in repo_b.list(camera="cam-0")}
    chains = {key: len(repo_b.timeline(key)) for key in before}
    counted = fenced_count("cam-0")

    with pytest.raises(FencedWrite, match="holds epoch 1 but the lease is now owner 'b'"):
        stale.upsert(dataclasses.replace(first, message="stale", ended_at=2000.0))
    with pytest.raises(FencedWrite):
        stale.hold(current.id, 3000.0)
    with pytest.raises(FencedWrite):
        stale.upsert(incident("cam-0", 2))
    with pytest.raises(FencedWrite):
        stale.evidence_written(
            current.id, "cam-0/2026-12-06/x.jpg", "0" * 64, 10, camera_id="cam-0"
        )
    with pytest.raises(FencedWrite):  # the real "a": past its deadline it holds nothing
        repo_a.upsert(incident("cam-0", 3))

    assert {i.id: i for i in repo_b.list(camera="cam-0")} == before
    assert {key: len(repo_b.timeline(key)) for key in before} == chains
    with Session(engine) as session:
        held = session.scalar(
            text("SELECT held_until FROM incidents WHERE id = :i"), {"i": current.id}
        )
    assert held is None
    assert fenced_count("cam-0") == counted + 5


def test_takeover_closes_orphans_records_gap_and_links_continuation(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    repo_a = IncidentRepository(engine)
    a = join(members, engine, ownership, "a", ["cam-0", "cam-1"], incidents=repo_a)
    wait_for(lambda: a.owned() == {"cam-0", "cam-1"}, SETTLE, "a owns both")
    orphan = incident("cam-0")
    other_rule = incident("cam-0", 2, rule="zone")
    elsewhere = incident("cam-1", 3)
    for item in (orphan, other_rule, elsewhere):
        repo_a.upsert(item)
    repo_a.hold(orphan.id, orphan.started_at + 7.5)
    a.stop()

    repo_b = IncidentRepository(engine)
    b = join(members, engine, ownership, "b", ["cam-0", "cam-1"], incidents=repo_b)
    wait_for(lambda: b.owned() == {"cam-0", "cam-1"}, SETTLE, "b takes both over")
    ownership.wait_heard(b)
    takeovers = {e.camera: e.takeover for e in ownership.of("b", "acquired")}
    cam0 = takeovers["cam-0"]
    assert cam0 is not None and cam0.previous_owner == "a" and cam0.previous_epoch == 1
    assert set(cam0.closed_incidents) == {orphan.id, other_rule.id}
    assert cam0.gap_started_at < cam0.gap_ended_at < cam0.gap_started_at + 20.0

    closed = repo_b.get(orphan.id)
    assert closed.ended_at == orphan.started_at + 7.5  # at its last known moment
    last = repo_b.timeline(orphan.id)[-1]
    assert last.kind == "incident.closed"
    assert last.detail["reason"] == "analyzer_lost" and last.detail["abandoned"] is True
    assert repo_b.get(elsewhere.id).ended_at is not None

    with Session(engine) as session:
        gaps = session.scalars(select(CoverageGapRow).order_by(CoverageGapRow.camera_id)).all()
    assert [(g.camera_id, g.reason, g.previous_owner, g.new_owner) for g in gaps] == [
        ("cam-0", "analyzer_lost", "a", "b"),
        ("cam-1", "analyzer_lost", "a", "b"),
    ]
    assert gaps[0].started_at == cam0.gap_started_at and gaps[0].ended_at == cam0.gap_ended_at

    # The violation goes on: the new owner's incident of the same rule continues the orphan.
    again = incident("cam-0", 9)
    repo_b.upsert(again)
    repo_b.upsert(incident("cam-0", 10))  # a second subject: a new story
    opened = opened_entries(engine)
    assert opened[again.id]["continues"] == orphan.id
    assert "continues" not in opened["inc-cam-0-helmet-10"]
    assert "continues" not in opened[orphan.id]


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_cut_member_releases_before_its_lease_expires_and_rejoins(
    mode: str,
    engine: Engine,
    pg_server: PostgresServer,
    pg_url: str,
    tmp_path: Path,
    ownership: OwnershipLog,
    members: dict[str, ClusterMember],
) -> None:
    proxy, cut_engine = cut_link(pg_server, pg_url, tmp_path)
    left_at_release: dict[str, float] = {}

    def note(member: str, camera: str, reason: str) -> None:
        if member == "a" and reason == "lost":
            left_at_release[camera] = lease_rows(engine)[camera][2]

    ownership.on_released = note
    try:
        a = join(members, cut_engine, ownership, "a", CAMERAS[:3])
        wait_for(lambda: a.owned() == set(CAMERAS[:3]), SETTLE, "a owns its cameras")
        time.sleep(LEASE)
        lost = sample("safewatch_cluster_releases_total", analyzer="a", reason="lost")
        proxy.cut(mode)
        wait_for(lambda: len(left_at_release) == 3, SETTLE, "a drops its cameras as lost")
        assert sample("safewatch_cluster_releases_total", analyzer="a", reason="lost") == lost + 3
        # Every camera stopped while the database still counted it as a's.
        assert all(left > 0 for left in left_at_release.values()), left_at_release
        assert a.owned() == frozenset()
        assert lease_rows(engine)["cam-0"][0] == "a"  # nobody wrote anything for it

        proxy.restore()
        wait_for(lambda: a.owned() == set(CAMERAS[:3]), SETTLE + 2 * LEASE, "a rejoins")
        assert {a.epoch_of(c) for c in CAMERAS[:3]} == {2}
        ownership.wait_heard(a)
        assert ownership.check_one_owner_at_a_time() == 6
    finally:
        members.pop("a").stop()
        proxy.close()
        cut_engine.dispose()


def analyzer_state(engine: Engine, name: str) -> str | None:
    with engine.connect() as connection:
        return connection.scalar(
            text("SELECT state FROM cluster_analyzers WHERE analyzer_id = :name"), {"name": name}
        )


def heartbeat_row(engine: Engine, name: str) -> tuple[float, str] | None:
    """(heartbeat_at, state) of the analyzer's row."""
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT heartbeat_at, state FROM cluster_analyzers WHERE analyzer_id = :name"),
            {"name": name},
        ).first()
    return None if row is None else (float(row.heartbeat_at), str(row.state))


def cut_link(pg_server: PostgresServer, pg_url: str, folder: Path) -> tuple[CutProxy, Engine]:
    """A proxy to the test PostgreSQL that can cut the link, and an engine through it (close
    the proxy and dispose of the engine when done)."""
    proxy = CutProxy(pg_server.port)
    url = pg_url.replace(f":{pg_server.port}/", f":{proxy.port}/")
    return proxy, create_engine_for(url, folder)


def drop_three_times(
    a: ClusterMember,
    proxy: CutProxy,
    ownership: OwnershipLog,
    while_cut: Callable[[], None] | None = None,
) -> None:
    """Cut a's link three times, each time until it lost cameras, a lease or more apart;
    ``while_cut`` runs after the third loss, before the link is restored."""

    def lost_by_a() -> int:
        return len([e for e in ownership.of("a", "released") if e.reason == "lost"])

    for drop in range(3):
        wait_for(lambda: bool(a.owned()), SETTLE, f"a owns cameras before drop {drop + 1}")
        time.sleep(LEASE)  # this loss comes over a lease after the last: an episode apart
        assert not a.held_off()
        lost = lost_by_a()
        proxy.cut("refuse")
        # (not owned(): past the deadline but before the watchdog's next look, a renewal after
        # a restore would keep the cameras)
        wait_for(lambda n=lost: lost_by_a() > n, SETTLE, f"a loses (drop {drop + 1})")
        if drop == 2 and while_cut is not None:
            while_cut()
        proxy.restore()


def test_a_member_whose_link_keeps_dropping_holds_off_and_rejoins_later(
    engine: Engine,
    pg_server: PostgresServer,
    pg_url: str,
    tmp_path: Path,
    ownership: OwnershipLog,
    members: dict[str, ClusterMember],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """a's database link drops three times, each drop more than a lease after the last: each
    time a drops its cameras and b takes them over (closing their open incidents as
    ``analyzer_lost``). After the third, a holds off: it heartbeats as ``held_off`` and claims
    nothing, so b keeps every camera instead of handing them back for the next drop to split
    their incidents again; a's ``/readyz`` and gauge say so, and a rejoins once it is over.
    Before, a was given cameras back at its first renewal after every drop.

    The hold-off is made two minutes long, and ended by the test once all that was seen: with
    the real 3 leases (6 s), a busy machine could let it end before b had taken every camera
    over (the hold-off's length is tested on a fake clock in the unit tests)."""
    monkeypatch.setattr(hold_off, "FIRST_HOLD_OFF_LEASES", 60.0)
    proxy, cut_engine = cut_link(pg_server, pg_url, tmp_path)
    cameras = CAMERAS[:4]
    try:
        a = join(members, cut_engine, ownership, "a", cameras)
        b = join(members, engine, ownership, "b", cameras)
        drop_three_times(a, proxy, ownership)
        wait_for(a.held_off, SETTLE, "a holds off after its third loss")
        acquired_before = len(ownership.of("a", "acquired"))
        wait_for(lambda: b.owned() == set(cameras), SETTLE, "b owns every camera")
        wait_for(lambda: analyzer_state(engine, "a") == "held_off", SETTLE, "a heartbeats")
        for _ in range(5):  # read first, then check that the hold-off still ran when read
            acquired, owned = len(ownership.of("a", "acquired")), a.owned()
            health = a.health()
            gauge = sample("safewatch_cluster_held_off", analyzer="a")
            assert a.held_off()
            assert (acquired, owned, gauge) == (acquired_before, frozenset(), 1.0)
            assert not health.ok and "holding off placement for" in health.message, health
            assert "after 3 lease losses in" in health.message, health
            assert b.owned() == set(cameras)
            time.sleep(0.1)
        a._hold_off.until = time.monotonic()  # over now rather than two minutes on
        wait_for(lambda: bool(a.owned()), SETTLE, "a rejoins after its hold-off")
        assert analyzer_state(engine, "a") == "active"
        assert sample("safewatch_cluster_held_off", analyzer="a") == 0
        ownership.wait_heard(a, b)
        assert ownership.check_one_owner_at_a_time() > 0
    finally:
        members.pop("a").stop()
        proxy.close()
        cut_engine.dispose()


def test_a_flapping_member_alone_is_not_held_off(
    engine: Engine,
    pg_server: PostgresServer,
    pg_url: str,
    tmp_path: Path,
    ownership: OwnershipLog,
    members: dict[str, ClusterMember],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no other analyzer to run its cameras, a hold-off would leave them analysed by
    nobody: the flapping analyzer claims them again at once (the hold-off, made a minute long
    here, is still counting). It is not held off meanwhile either, while the database is out of
    reach: before, the loss reset the waiver, so for the whole outage its gauge (an alert)
    was 1, its /readyz said other analyzers ran its cameras, and it heartbeated ``held_off``
    first when the database came back."""
    monkeypatch.setattr(hold_off, "FIRST_HOLD_OFF_LEASES", 30.0)
    proxy, cut_engine = cut_link(pg_server, pg_url, tmp_path)
    before: list[tuple[float, str] | None] = []

    def while_cut() -> None:
        assert a._hold_off.remaining() > 0  # the third loss started it
        assert not a.held_off()
        assert sample("safewatch_cluster_held_off", analyzer="a") == 0
        assert "holding off" not in a.health().message
        before.append(heartbeat_row(engine, "a"))

    try:
        a = join(members, cut_engine, ownership, "a", CAMERAS[:2])
        drop_three_times(a, proxy, ownership, while_cut)
        wait_for(lambda: heartbeat_row(engine, "a") != before[0], SETTLE, "a heartbeats again")
        assert heartbeat_row(engine, "a")[1] == "active"  # type: ignore[index]
        wait_for(lambda: a.owned() == set(CAMERAS[:2]), SETTLE, "a owns its cameras again")
        assert a._hold_off.remaining() > 0  # it started, and is waived
        assert not a.held_off()
        assert "holding off" not in a.health().message
        assert sample("safewatch_cluster_held_off", analyzer="a") == 0
    finally:
        members.pop("a").stop()
        proxy.close()
        cut_engine.dispose()


def test_slow_drain_keeps_its_leases_until_each_camera_is_handed_over(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    held_while_stopping: dict[str, int | None] = {}

    def slow_stop(member: str, camera: str, reason: str) -> None:
        if member == "a" and reason == "drain":
            held_while_stopping[camera] = members["a"].epoch_of(camera)
            time.sleep(LEASE / 2)  # three of these outlast a lease: renewals must go on

    ownership.on_released = slow_stop
    a = join(members, engine, ownership, "a", CAMERAS[:3])
    wait_for(lambda: a.owned() == set(CAMERAS[:3]), SETTLE, "a owns its cameras")
    b = join(members, engine, ownership, "b", CAMERAS[:3])
    time.sleep(2 * LEASE)  # b is live; a may have handed it one camera already
    a.drain(timeout=30)
    wait_for(lambda: b.owned() == set(CAMERAS[:3]), SETTLE, "b owns every camera")
    ownership.wait_heard(a, b)
    drained = [e.camera for e in ownership.of("a", "released") if e.reason == "drain"]
    assert drained and all(held_while_stopping[c] is not None for c in drained)
    assert all(e.reason in ("drain", "rebalance") for e in ownership.of("a", "released"))
    assert ownership.check_one_owner_at_a_time() >= 4
    with Session(engine) as session:
        state = session.scalar(text("SELECT state FROM cluster_analyzers WHERE analyzer_id='a'"))
    assert state == "gone"


def test_first_claim_closes_incidents_a_single_host_serve_left_open(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    single_host = IncidentRepository(engine)  # before the cluster: no fence
    left = incident("cam-0")
    single_host.upsert(left)
    single_host.hold(left.id, left.started_at + 2.5)
    a = join(members, engine, ownership, "a", ["cam-0"])
    wait_for(lambda: a.owned() == {"cam-0"}, SETTLE, "a owns cam-0")
    ownership.wait_heard(a)
    (acquired,) = ownership.of("a", "acquired")
    assert acquired.takeover is None and acquired.epoch == 1
    assert single_host.get(left.id).ended_at == left.started_at + 2.5
    assert single_host.timeline(left.id)[-1].detail["reason"] == "left_open"


def test_site_reload_releases_removed_cameras_and_places_new_ones(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    a = join(members, engine, ownership, "a", CAMERAS[:3])
    b = join(members, engine, ownership, "b", CAMERAS[:3])
    wait_for(lambda: spread(members, ["a", "b"]) == [1, 2], SETTLE, "1/2 on two members")
    removed = CAMERAS[0]
    holder = a if removed in a.owned() else b
    site = [*CAMERAS[1:3], "cam-new"]
    labels = {"cam-new": {"gpu": "true"}}  # nobody carries it: it stays unplaced
    for member in (a, b):
        member.set_cameras(site, labels)
    wait_for(lambda: removed not in a.owned() | b.owned(), SETTLE, "the removed camera stops")
    ownership.wait_heard(a, b)
    assert [e.reason for e in ownership.of(holder.analyzer_id, "released")][-1] == "removed"
    wait_for(lambda: a.owned() | b.owned() == set(site[:2]), SETTLE, "the rest stays placed")
    # its lease goes back once its stop returned, after the listener's call: wait for it
    wait_for(lambda: lease_rows(engine)[removed][0] is None, SETTLE, "the removed one's lease")
    assert lease_rows(engine)["cam-new"][0] is None
    for member in (a, b):
        member.set_cameras(site)  # the label requirement dropped: now it is placed
    wait_for(lambda: a.owned() | b.owned() == set(site), SETTLE, "the new camera is placed")
    wait_for(lambda: spread(members, ["a", "b"]) == [1, 2], SETTLE, "1/2 again")
    ownership.wait_heard(a, b)
    assert ownership.check_one_owner_at_a_time() >= 4


def test_a_camera_disabled_for_an_hour_records_no_gap_and_a_loss_still_does(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """A camera removed (or disabled) and enabled again an hour later got a ``handover`` gap
    of the whole hour: its release kept ``released_at`` and the next claim recorded a gap from
    it. A deliberate stop is not lost coverage. The hour is made by moving the release back in
    the database (its clock decides gaps); a real loss afterwards still records its gap."""
    a = join(members, engine, ownership, "a", ["cam-0", "cam-1"])
    wait_for(lambda: a.owned() == {"cam-0", "cam-1"}, SETTLE, "a owns both")
    a.set_cameras(["cam-1"])  # cam-0 disabled
    wait_for(lambda: lease_rows(engine)["cam-0"][0] is None, SETTLE, "cam-0's lease released")
    with engine.begin() as connection:  # an hour ago
        connection.execute(
            text(
                "UPDATE camera_leases SET released_at = released_at - 3600 "
                "WHERE camera_id = 'cam-0'"
            )
        )
    a.set_cameras(["cam-0", "cam-1"])  # enabled again
    wait_for(lambda: a.owned() == {"cam-0", "cam-1"}, SETTLE, "a owns cam-0 again")
    with Session(engine) as session:
        gaps = session.scalars(select(CoverageGapRow)).all()
    assert [(g.camera_id, g.reason, g.ended_at - g.started_at) for g in gaps] == []

    a.stop()  # not released: its leases expire, and b's claim is a takeover
    b = join(members, engine, ownership, "b", ["cam-0", "cam-1"])
    wait_for(lambda: b.owned() == {"cam-0", "cam-1"}, SETTLE, "b takes both over")
    with Session(engine) as session:
        gaps = session.scalars(select(CoverageGapRow).order_by(CoverageGapRow.camera_id)).all()
    assert [(g.camera_id, g.reason, g.previous_owner, g.new_owner) for g in gaps] == [
        ("cam-0", "analyzer_lost", "a", "b"),
        ("cam-1", "analyzer_lost", "a", "b"),
    ]


def expire_in_database(engine: Engine, camera: str) -> None:
    """Make the camera's lease expired by the database's clock, still naming its owner (a renewal
    that came too late): its holder loses it, and may claim it again."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE camera_leases SET expires_at = EXTRACT(EPOCH FROM clock_timestamp()) - 1 "
                "WHERE camera_id = :c"
            ),
            {"c": camera},
        )


def test_a_lost_camera_is_claimed_again_only_after_its_stop_returned(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """The database still names the analyzer after it lost the lease, so it may claim it again,
    but not while the old run's stop is under way (its frames would pass the fence), and a slow
    lost-stop holds neither the other camera's renewals nor the member."""
    stopping = threading.Event()
    gate = threading.Event()

    def slow_lost_stop(member: str, camera: str, reason: str) -> None:
        if camera == "cam-0" and reason == "lost":
            stopping.set()
            gate.wait(timeout=60)

    ownership.on_released = slow_lost_stop
    a = join(members, engine, ownership, "a", ["cam-0", "cam-1"])
    wait_for(lambda: a.owned() == {"cam-0", "cam-1"}, SETTLE, "a owns both cameras")
    ownership.wait_heard(a)
    first = a.epoch_of("cam-0")
    expire_in_database(engine, "cam-0")
    wait_for(stopping.is_set, SETTLE, "cam-0 lost and being stopped")
    end = time.monotonic() + 2 * LEASE
    while time.monotonic() < end:
        assert a.epoch_of("cam-0") is None, "claimed again while its old run is stopping"
        assert a.epoch_of("cam-1") is not None, "the other camera's lease was not renewed"
        time.sleep(0.1)
    assert len(ownership.of("a", "acquired")) == 2
    gate.set()
    wait_for(lambda: a.owned() == {"cam-0", "cam-1"}, SETTLE, "cam-0 claimed again")
    wait_for(lambda: len(ownership.of("a", "acquired")) == 3, SETTLE, "cam-0 started again")
    assert first is not None and (a.epoch_of("cam-0") or 0) > first
    assert [e.reason for e in ownership.of("a", "released")] == ["lost"]
    assert ownership.check_one_owner_at_a_time() == 3


def test_a_slow_graceful_stop_does_not_hold_the_other_renewals(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """A removed camera whose stop takes longer than a lease: the others stay owned throughout
    (their renewals do not wait for it), and its lease is released after the stop."""

    def slow_stop(member: str, camera: str, reason: str) -> None:
        if reason == "removed":
            time.sleep(1.5 * LEASE)

    ownership.on_released = slow_stop
    a = join(members, engine, ownership, "a", CAMERAS[:3])
    wait_for(lambda: a.owned() == set(CAMERAS[:3]), SETTLE, "a owns its cameras")
    a.set_cameras(CAMERAS[1:3])
    end = time.monotonic() + 2.5 * LEASE
    while time.monotonic() < end:
        assert set(CAMERAS[1:3]) <= a.owned(), "a kept camera lost while another one stopped"
        time.sleep(0.1)
    wait_for(lambda: lease_rows(engine)[CAMERAS[0]][0] is None, SETTLE, "removed one released")
    assert [e.reason for e in ownership.of("a", "released")] == ["removed"]


def test_a_stop_past_the_release_timeout_counts_as_lost(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """A graceful stop that never returns: after release_timeout the camera's writes are fenced
    and its lease goes back; the camera is not claimed again while that stop still runs."""
    gate = threading.Event()

    def stuck(member: str, camera: str, reason: str) -> None:
        if reason == "removed":
            gate.wait(timeout=60)

    ownership.on_released = stuck
    lost_before = sample("safewatch_cluster_releases_total", analyzer="a", reason="lost")
    member = ClusterMember(
        engine,
        "a",
        ["cam-0"],
        ownership.listener("a"),
        lease_seconds=LEASE,
        renew_every=RENEW,
        release_timeout=LEASE,
    )
    members["a"] = member
    member.start()
    wait_for(lambda: member.owned() == {"cam-0"}, SETTLE, "a owns cam-0")
    member.set_cameras([])
    wait_for(lambda: lease_rows(engine)["cam-0"][0] is None, SETTLE, "lease released anyway")
    assert member.epoch_of("cam-0") is None
    lost = sample("safewatch_cluster_releases_total", analyzer="a", reason="lost")
    assert lost == lost_before + 1
    member.set_cameras(["cam-0"])  # back in the site, but its old run has not stopped
    time.sleep(2 * LEASE)
    assert member.epoch_of("cam-0") is None
    gate.set()
    wait_for(lambda: member.owned() == {"cam-0"}, SETTLE, "claimed once the stop returned")
    wait_for(lambda: len(ownership.of("a", "acquired")) == 2, SETTLE, "started again")
    assert ownership.check_one_owner_at_a_time() == 2


def test_claims_waiting_for_a_busy_chain_do_not_delay_renewals(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """The chain lock held elsewhere for two leases: claims give up quickly and retry, and the
    cameras already owned stay renewed."""
    a = join(members, engine, ownership, "a", ["cam-0"])
    wait_for(lambda: a.owned() == {"cam-0"}, SETTLE, "a owns cam-0")
    with Session(engine) as session, session.begin():
        hash_chain.lock_head(session)
        a.set_cameras(["cam-0", "cam-1"])
        end = time.monotonic() + 2 * LEASE
        while time.monotonic() < end:
            assert a.epoch_of("cam-0") is not None, "cam-0 not renewed while claims waited"
            time.sleep(0.1)
        assert a.epoch_of("cam-1") is None
    wait_for(lambda: a.owned() == {"cam-0", "cam-1"}, SETTLE, "cam-1 claimed after")


class _SlowService:
    """Stands in for RuntimeService under a ClusterOwner: each camera stop takes ``stop_s``."""

    def __init__(self, stop_s: float) -> None:
        self.stop_s = stop_s
        self.owned: set[str] = set()
        self.stopped_at: dict[str, float] = {}

    def own_camera(self, camera_id: str) -> None:
        self.owned.add(camera_id)

    def disown_camera(self, camera_id: str, *, write: bool = True) -> None:
        time.sleep(self.stop_s)
        self.owned.discard(camera_id)
        self.stopped_at.setdefault(camera_id, time.time())

    def owned_cameras(self) -> frozenset[str]:
        return frozenset(self.owned)

    def stop(self) -> None:
        return None


def bare_owner(service: object) -> ClusterOwner:
    """The ownership half of a ClusterOwner, over ``service``, without a runtime."""
    from concurrent.futures import ThreadPoolExecutor

    owner = ClusterOwner.__new__(ClusterOwner)
    owner.service = service  # type: ignore[assignment]
    owner._changes = ThreadPoolExecutor(max_workers=1)
    owner._engine = None
    owner._video = None  # (no live video served)
    owner._jobs = None  # (no job runner)
    owner._start_failures = {}
    owner._giving_back = set()
    owner._stopping = threading.Event()
    return owner


class _FailingStartService(_SlowService):
    """Its first ``failures`` camera starts fail, as on a stale NFS mount."""

    def __init__(self, failures: int) -> None:
        super().__init__(stop_s=0.0)
        self.failures = failures
        self.tries = 0

    def own_camera(self, camera_id: str) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise OSError(116, "Stale file handle", "/mnt/recordings/cam-0")
        super().own_camera(camera_id)


def test_a_camera_whose_start_failed_is_reported_and_started_again(
    engine: Engine, members: dict[str, ClusterMember]
) -> None:
    """A failed start left the camera leased, renewed and analysed by nobody, with /readyz ok:
    the error was only logged. Now /readyz names it and the start is retried."""
    service = _FailingStartService(failures=1)
    owner = bare_owner(service)
    member = ClusterMember(engine, "a", ["cam-0"], owner, lease_seconds=LEASE, renew_every=RENEW)
    members["a"] = member
    owner._member = member
    member.start()
    wait_for(lambda: service.tries >= 1, SETTLE, "the first start")
    wait_for(lambda: not owner._cluster_health().ok, SETTLE, "the failure reaches /readyz")
    health = owner._cluster_health()
    assert "camera cam-0 could not start here" in health.message
    assert "Stale file handle" in health.message
    assert member.owned() == {"cam-0"}  # nobody else would take it: it is retried here
    wait_for(lambda: service.owned == {"cam-0"}, SETTLE, "the retry starts it")
    assert service.tries == 2
    wait_for(lambda: owner._cluster_health().ok, SETTLE, "/readyz ok again")
    owner.stop(drain_timeout=30)


class _HeldMember:
    """The member as a retry sees it during a graceful give-back: still holding the camera at
    its epoch (it is held until its stop returned)."""

    def epoch_of(self, camera_id: str) -> int | None:
        return 1


class _GatedStopService(_SlowService):
    """Its camera stop waits for ``go`` (set by the test); ``stopping`` says it began."""

    def __init__(self) -> None:
        super().__init__(stop_s=0.0)
        self.stopping, self.go = threading.Event(), threading.Event()

    def disown_camera(self, camera_id: str, *, write: bool = True) -> None:
        self.stopping.set()
        assert self.go.wait(SETTLE)
        super().disown_camera(camera_id, write=write)


def test_a_start_retry_due_during_a_give_back_does_not_start_the_camera_again() -> None:
    """A failed start's retry fires while the camera is being given back (its stop running, the
    member still holding it): its start, queued behind the stop, used to run after it and start
    the camera again once the lease was released. It is now checked right before it runs."""
    service = _GatedStopService()
    owner = bare_owner(service)
    owner._member = _HeldMember()  # type: ignore[assignment]
    service.owned.add("cam-0")
    release = threading.Thread(target=owner.released, args=("cam-0", "rebalance"))
    release.start()
    assert service.stopping.wait(SETTLE)
    owner._retry_own("cam-0", 1, {}, 2.0)  # its timer fires now: queued behind the stop
    service.go.set()
    release.join(SETTLE)
    owner._changes.submit(lambda: None).result(SETTLE)  # every queued change has run
    assert service.owned == set(), "the retried start ran after the give-back's stop"
    assert owner._start_failures == {}
    owner._changes.shutdown()


def test_serve_drain_releases_each_lease_when_its_own_camera_stopped(
    engine: Engine, members: dict[str, ClusterMember]
) -> None:
    """ClusterOwner.stop (SIGTERM): each camera's lease goes back right after its own stop, so
    its gap is not the sum of every camera's stop."""
    service = _SlowService(stop_s=1.0)
    owner = bare_owner(service)
    member = ClusterMember(engine, "a", CAMERAS[:3], owner, lease_seconds=LEASE, renew_every=RENEW)
    members["a"] = member
    owner._member = member
    member.start()
    wait_for(lambda: service.owned == set(CAMERAS[:3]), SETTLE, "a runs its cameras")
    owner.stop(drain_timeout=30)
    with engine.connect() as connection:
        released: dict[str, float] = dict(
            connection.execute(text("SELECT camera_id, released_at FROM camera_leases")).all()
        )
    for camera in CAMERAS[:3]:
        lag = float(released[camera]) - service.stopped_at[camera]
        assert lag < 1.5, f"{camera}: lease released {lag:.1f} s after its camera stopped"


def test_a_camera_no_analyzer_may_run_is_reported_not_silently_skipped(
    engine: Engine,
    ownership: OwnershipLog,
    members: dict[str, ClusterMember],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A mistyped label: warned once, counted, and the member's health (/readyz) names it."""
    a = join(members, engine, ownership, "a", ["cam-0"])
    wait_for(lambda: a.owned() == {"cam-0"}, SETTLE, "a owns cam-0")
    assert a.health().ok
    caplog.set_level("WARNING", logger="safewatch.cluster.membership")
    a.set_cameras(["cam-0", "cam-x"], {"cam-x": {"gpu": "ture"}})
    wait_for(lambda: a.unplaced() == {"cam-x"}, SETTLE, "cam-x reported unplaced")
    time.sleep(1.0)  # several rounds: still one warning
    health = a.health()
    assert not health.ok and "cam-x" in health.message
    assert sample("safewatch_cluster_cameras_unplaced", analyzer="a") == 1
    warned = [r for r in caplog.records if "cam-x is analysed by no analyzer" in r.getMessage()]
    assert len(warned) == 1
    a.set_cameras(["cam-0", "cam-x"])
    wait_for(lambda: a.owned() == {"cam-0", "cam-x"}, SETTLE, "cam-x placed once fixed")
    assert a.health().ok and a.unplaced() == frozenset()


def test_a_camera_its_target_cannot_claim_holds_up_no_other_move(
    engine: Engine,
    ownership: OwnershipLog,
    members: dict[str, ClusterMember],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """b and c join a, which owns every camera; every claim b makes fails. The owner waited for
    b's move before any other, so the cluster never rebalanced, and only /readyz said anything.
    Now, after a few leases, the moves to c go on, and the camera is counted in a gauge (an
    alert) and named by health(); b is handed no other camera while that one is stuck (before,
    b was handed its whole share, one camera every three leases, all analysed by nobody). b warns
    once that it cannot claim the camera, not at every round, and once that it can again."""
    from safewatch.cluster.membership import STUCK_MOVE_LEASES
    from safewatch.cluster.takeover import record_handover as real_record_handover

    broken = threading.Event()
    broken.set()

    def record_handover(session: Session, analyzer_id: str, locked: Any) -> None:
        if broken.is_set() and analyzer_id == "b":
            raise StorageError(f"simulated: b cannot claim {locked.camera_id}")
        real_record_handover(session, analyzer_id, locked)

    def said(what: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if what in r.getMessage()]

    caplog.set_level("WARNING", logger="safewatch.cluster.membership")
    monkeypatch.setattr("safewatch.cluster.membership.record_handover", record_handover)
    a = join(members, engine, ownership, "a")
    wait_for(lambda: a.owned() == set(CAMERAS), SETTLE, "a owns every camera")
    b = join(members, engine, ownership, "b")
    c = join(members, engine, ownership, "c")
    stuck_for = STUCK_MOVE_LEASES * LEASE
    wait_for(lambda: len(c.owned()) == 2, SETTLE + stuck_for, "the moves to c go on")
    wait_for(lambda: len(a.stuck()) == 1, SETTLE + stuck_for, "a reports a camera stuck")
    (stuck,) = a.stuck()
    assert f"{stuck} (placed on b) owned by nobody" in a.health().message
    assert sample("safewatch_cluster_cameras_unowned", analyzer="a") == 1
    assert "claim failing" in b.health().message
    kept = a.owned()
    assert len(kept) == 3, kept  # its own two, and the one b would have next
    # Long enough for a to give b two more cameras, one every three leases, as it did before.
    time.sleep(2.5 * stuck_for)
    assert (a.owned(), b.owned(), a.stuck()) == (kept, frozenset(), {stuck})
    assert len(c.owned()) == 2
    assert said(f"b cannot claim camera {stuck}") == [
        f"cluster: b cannot claim camera {stuck}: simulated: b cannot claim {stuck}"
    ]  # dozens of rounds tried it (a line each before)
    broken.clear()
    wait_for(lambda: spread(members, ["a", "b", "c"]) == [2, 2, 2], SETTLE, "b claims, then more")
    assert len(said(f"b's claims of camera {stuck} work again")) == 1
    assert len(said("cannot claim camera")) == 1
    wait_for(lambda: not a.stuck() and a.health().ok, SETTLE, "a reports nothing stuck")
    assert sample("safewatch_cluster_cameras_unowned", analyzer="a") == 0
    ownership.wait_heard(a, b, c)
    assert ownership.check_one_owner_at_a_time() > len(CAMERAS)
    released = [e.camera for e in ownership.of("a", "released")]
    assert len(released) == 4 and len(set(released)) == 4  # each moved once


def test_an_unexpected_exception_fails_a_round_not_the_member(
    engine: Engine,
    ownership: OwnershipLog,
    members: dict[str, ClusterMember],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug-like exception (not a StorageError) in the claim rounds: the thread lives on, its
    health says why, and claims resume once the cause is gone."""
    from safewatch.cluster.placement import plan as real_plan

    broken = threading.Event()
    broken.set()

    def plan(*args: object, **kwargs: object) -> object:
        if broken.is_set():
            raise KeyError("placement bug")
        return real_plan(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("safewatch.cluster.membership.plan", plan)
    a = join(members, engine, ownership, "a", ["cam-0"])
    wait_for(lambda: not a.health().ok, SETTLE, "health shows the failing rounds")
    time.sleep(1.0)
    health = a.health()
    assert "claim failing" in health.message and "placement bug" in health.message
    assert a.owned() == frozenset()
    broken.clear()
    wait_for(lambda: a.owned() == {"cam-0"}, SETTLE, "claims resume")
    wait_for(lambda: a.health().ok, SETTLE, "healthy again")


def test_evidence_of_a_camera_whose_id_is_sanitised_in_its_key_is_fenced_by_its_id(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember], tmp_path: Path
) -> None:
    """A still written before its incident is stored: the fence checks the camera the writer
    names, not the key's first folder ("yard:1" is stored under "yard_1")."""
    import numpy as np

    from safewatch.incidents.evidence import EvidenceStore

    repo = IncidentRepository(engine)
    a = join(members, engine, ownership, "a", ["yard:1"], incidents=repo)
    wait_for(lambda: a.owned() == {"yard:1"}, SETTLE, "a owns yard:1")
    store = EvidenceStore(tmp_path / "evidence", log=repo)
    key = store.write_still("inc-new", np.zeros((8, 8, 3), np.uint8), camera_id="yard:1", at=1e9)
    assert key.startswith("yard_1/")
    assert [e.subject for e in repo.timeline("inc-new")] == [key]


def test_a_renewal_that_fails_once_is_retried_before_the_local_deadline(
    engine: Engine,
    ownership: OwnershipLog,
    members: dict[str, ClusterMember],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A one-round database blip must not stop the cameras.

    After a failed renewal the next try waited the ordinary backoff (a whole period, at least
    2 s): with a 4 s lease (renewal every 1.33 s, local deadline 3 s after the last success) it
    came after the deadline, so a single failure stopped every camera as lost; with the default
    10 s lease two did. Now the retry comes within a quarter of the time left.
    """
    from safewatch.cluster import leases as lease_sql

    real_renew = lease_sql.renew
    blips = threading.Semaphore(0)
    failed = threading.Event()

    def renew(*args: Any, **kwargs: Any) -> dict[str, int]:
        if blips.acquire(blocking=False):
            failed.set()
            raise StorageError("cluster: server closed the connection unexpectedly (injected)")
        return real_renew(*args, **kwargs)

    monkeypatch.setattr(lease_sql, "renew", renew)
    a = ClusterMember(engine, "a", ["cam-0"], ownership.listener("a"), lease_seconds=4.0)
    members["a"] = a
    a.start()
    wait_for(lambda: a.owned() == {"cam-0"}, SETTLE, "a owns cam-0")
    lost = sample("safewatch_cluster_releases_total", analyzer="a", reason="lost")
    for _ in range(3):
        failed.clear()
        blips.release()
        wait_for(failed.is_set, SETTLE, "a renewal fails")
        time.sleep(4.0)  # a whole lease: the retry has succeeded, or the camera was dropped
        assert a.owned() == {"cam-0"}
    assert a.epoch_of("cam-0") == 1
    assert sample("safewatch_cluster_releases_total", analyzer="a", reason="lost") == lost
    assert ownership.of("a", "released") == []


def test_a_second_process_with_the_same_analyzer_id_is_refused(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """Two live processes named alike took each other's leases as their own previous life's,
    about twice a second (epochs rose to 17 in 8 s, every camera restarted each time)."""
    a = join(members, engine, ownership, "a", CAMERAS[:2])
    wait_for(lambda: a.owned() == set(CAMERAS[:2]), SETTLE, "a owns its cameras")
    twin = ClusterMember(
        engine, "a", CAMERAS[:2], ownership.listener("twin"), lease_seconds=LEASE, renew_every=RENEW
    )
    with pytest.raises(StorageError, match="'a' is in use by another live process"):
        twin.start()  # waits up to a lease for a's heartbeat to go stale: it never does
    assert a.owned() == set(CAMERAS[:2])
    assert {a.epoch_of(c) for c in CAMERAS[:2]} == {1}
    assert ownership.of("twin") == []


def test_a_restarted_process_waits_out_its_previous_lifes_heartbeat(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    a = join(members, engine, ownership, "a", CAMERAS[:2])
    wait_for(lambda: a.owned() == set(CAMERAS[:2]), SETTLE, "a owns its cameras")
    members.pop("a").stop()  # as a crash: its row stays fresh for up to a lease
    ownership.crashed("a")
    again = join(members, engine, ownership, "a", CAMERAS[:2])
    wait_for(lambda: again.owned() == set(CAMERAS[:2]), SETTLE, "the new life owns them")
    assert {again.epoch_of(c) for c in CAMERAS[:2]} == {2}


def test_a_heartbeat_taken_by_another_process_stops_claims_until_it_goes_stale(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """Two processes that started at the same moment both passed the start check: the one whose
    heartbeat is refused lets its cameras go and claims nothing while the other is alive."""
    a = join(members, engine, ownership, "a", ["cam-0"])
    wait_for(lambda: a.owned() == {"cam-0"}, SETTLE, "a owns cam-0")
    with engine.begin() as connection:  # another process heartbeats as "a", once
        connection.execute(
            text(
                "UPDATE cluster_analyzers SET instance = 'other', "
                "heartbeat_at = EXTRACT(EPOCH FROM clock_timestamp()) + :ahead "
                "WHERE analyzer_id = 'a'"
            ),
            {"ahead": 2.0},  # fresh for three leases' worth of a's renewals
        )
    wait_for(lambda: "in use by another live process" in a.health().message, SETTLE, "told")
    wait_for(lambda: a.owned() == frozenset(), SETTLE, "a lets cam-0 go")
    wait_for(lambda: a.owned() == {"cam-0"}, SETTLE + 2 * LEASE, "a takes it again")
    assert a.health().ok or "in use" not in a.health().message


def test_analyzers_given_different_cameras_say_so(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """A camera only one analyzer's site file has can be placed on the other, which does not
    know it: nobody analyses it. Both now report the disagreement (/readyz)."""
    a = join(members, engine, ownership, "a", [*CAMERAS[:4], "new-2"])
    b = join(members, engine, ownership, "b", CAMERAS[:4])
    wait_for(lambda: a.disagreeing() == {"b"}, SETTLE, "a sees b's other site")
    wait_for(lambda: b.disagreeing() == {"a"}, SETTLE, "b sees a's other site")
    assert "analyzer(s) b were given other cameras" in a.health().message
    assert not b.health().ok
    b.set_cameras([*CAMERAS[:4], "new-2"])  # the same site file everywhere
    wait_for(lambda: not a.disagreeing() and not b.disagreeing(), SETTLE, "agreement")
    wait_for(lambda: a.owned() | b.owned() == set([*CAMERAS[:4], "new-2"]), SETTLE, "all placed")


def test_a_handover_links_the_incident_going_on_across_it(
    engine: Engine, ownership: OwnershipLog, members: dict[str, ClusterMember]
) -> None:
    """A drain (or rebalance) closes the camera's open incidents on the old owner; a violation
    going on across it became a second, unlinked incident with its own "opened" alert. The
    new owner now continues the incident the handover closed, as after a takeover."""
    from safewatch.cluster.takeover import HANDED_OVER

    repo_a = IncidentRepository(engine)
    a = join(members, engine, ownership, "a", ["cam-0"], incidents=repo_a)
    wait_for(lambda: a.owned() == {"cam-0"}, SETTLE, "a owns cam-0")
    going_on = incident("cam-0")
    ended_earlier = incident("cam-0", 2, rule="zone")
    repo_a.upsert(going_on)
    repo_a.upsert(dataclasses.replace(ended_earlier, ended_at=ended_earlier.started_at + 1))

    def stop_like_serve(member: str, camera: str, reason: str) -> None:
        if member == "a" and reason == "drain":  # the runtime closes it, lease still held
            closed = dataclasses.replace(going_on, ended_at=going_on.started_at + 5)
            repo_a.upsert(closed, reason=HANDED_OVER)

    ownership.on_released = stop_like_serve
    a.drain(timeout=30)
    members.pop("a")
    repo_b = IncidentRepository(engine)
    b = join(members, engine, ownership, "b", ["cam-0"], incidents=repo_b)
    wait_for(lambda: b.owned() == {"cam-0"}, SETTLE, "b claims the released camera")
    ownership.wait_heard(b)
    assert [e.takeover for e in ownership.of("b", "acquired")] == [None]  # a handover

    again = incident("cam-0", 9)  # the same rule, the violation goes on
    new_zone = incident("cam-0", 10, rule="zone")  # ended before the handover: a new story
    repo_b.upsert(again)
    repo_b.upsert(new_zone)
    opened = opened_entries(engine)
    assert opened[again.id]["continues"] == going_on.id
    assert "continues" not in opened[new_zone.id]

    # Handed on again (b to c) at once: c continues b's incident, never a's again (a's was
    # continued already, and a second subject would otherwise read as its continuation).
    def stop_b(member: str, camera: str, reason: str) -> None:
        if member == "b" and reason == "drain":
            repo_b.upsert(
                dataclasses.replace(again, ended_at=again.started_at + 5), reason=HANDED_OVER
            )

    ownership.on_released = stop_b
    b.drain(timeout=30)
    members.pop("b")
    repo_c = IncidentRepository(engine)
    c = join(members, engine, ownership, "c", ["cam-0"], incidents=repo_c)
    wait_for(lambda: c.owned() == {"cam-0"}, SETTLE, "c claims the released camera")
    latest = incident("cam-0", 11)
    second_subject = incident("cam-0", 12)
    repo_c.upsert(latest)
    repo_c.upsert(second_subject)
    opened = opened_entries(engine)
    assert opened[latest.id]["continues"] == again.id
    assert "continues" not in opened[second_subject.id]
