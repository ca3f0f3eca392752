"""The outbox on SQLite and PostgreSQL: rows written in the incident's transaction, claimed once,
retried with backoff to a dead letter, leases, digests and rate limits, escalations cancelled by
an acknowledgement, and deliveries in the incident's timeline with the chain still verifying."""

from __future__ import annotations

import dataclasses
import random
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alerts_support import T0, make_incident, make_site
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from safewatch.alerts.outbox import Outbox, backoff
from safewatch.alerts.routing import Router
from safewatch.alerts.rows import OUTBOX, idempotency_key
from safewatch.alerts.writer import OutboxWriter, window
from safewatch.config.alerts import RetryConfig
from safewatch.domain import IncidentStatus
from safewatch.errors import NotFound
from safewatch.incidents.chain import verify_chain
from safewatch.incidents.lifecycle import check_transition
from safewatch.storage import IncidentRepository
from safewatch.storage.incident_repository import StoredChange

HOOK = {"type": "webhook", "url": "http://127.0.0.1:9/in"}


def alerts_block(**route: Any) -> dict[str, Any]:
    base = {"id": "main", "channels": ["hook", "chat"], "events": ["opened", "closed"]}
    return {
        "channels": {"hook": HOOK, "chat": HOOK, "pager": HOOK},
        "routes": [{**base, **route}],
    }


class World:
    """A repository whose changes go through an OutboxWriter, on a test clock."""

    def __init__(self, engine: Engine, tmp_path: Path, **route: Any) -> None:
        self.now = T0
        site = make_site(alerts_block(**route), tmp_path)
        self.router = Router(site.config.alerts, ZoneInfo("Europe/Berlin"))
        self.writer = OutboxWriter(lambda: self.router)
        self.repo = IncidentRepository(engine, clock=lambda: self.now, on_change=self.writer)
        self.outbox = Outbox(engine)
        self.engine = engine

    def rows(self, **where: Any) -> list[Any]:
        query = select(OUTBOX).order_by(OUTBOX.c.created_at, OUTBOX.c.id)
        for column, value in where.items():
            query = query.where(OUTBOX.c[column] == value)
        with Session(self.engine) as session:
            return list(session.execute(query).all())


@pytest.fixture
def world(db_engine: Engine, tmp_path: Path) -> World:
    return World(db_engine, tmp_path)


def test_an_updated_alert_is_a_higher_peak_or_a_clip_not_the_still(
    db_engine: Engine, tmp_path: Path
) -> None:
    """docs/alerts.md: ``updated`` means the peak confidence rose or a clip was attached. The
    evidence thread attaching the still after the incident was stored sent one for every
    incident."""
    world = World(db_engine, tmp_path, events=["opened", "updated"])
    incident = make_incident()
    world.repo.upsert(incident)
    world.repo.attach_evidence(incident.id, snapshot="yard/2023/11/14/still.jpg")
    world.repo.upsert(dataclasses.replace(incident, message="two people without hardhats"))
    assert sorted(r.event for r in world.rows()) == ["opened"] * 2
    world.repo.upsert(dataclasses.replace(incident, peak_confidence=0.95))
    world.repo.attach_evidence(incident.id, clip="yard/2023/11/14/clip.mp4")
    assert sorted(r.event for r in world.rows()) == ["opened"] * 2 + ["updated"] * 4
    # Retention removing the clip (days later) also changes ``clip``: no news to anyone.
    world.repo.evidence_removed(
        incident.id, "yard/2023/11/14/clip.mp4", reason="retention", detail={}
    )
    assert sorted(r.event for r in world.rows()) == ["opened"] * 2 + ["updated"] * 4


def test_each_change_queues_one_row_per_route_and_channel(world: World) -> None:
    incident = make_incident()
    world.repo.upsert(incident)
    world.repo.upsert(dataclasses.replace(incident, peak_confidence=0.95))  # updated: not routed
    world.repo.upsert(dataclasses.replace(incident, ended_at=T0 + 9))
    rows = world.rows()
    assert [(r.event, r.channel, r.status) for r in rows] == [
        ("opened", "chat", "pending"),
        ("opened", "hook", "pending"),
        ("closed", "chat", "pending"),
        ("closed", "hook", "pending"),
    ]
    assert {r.key for r in rows if r.event == "opened"} == {
        idempotency_key(incident.id, "main", "opened")
    }
    assert all(r.incident_id == incident.id and r.route_id == "main" for r in rows)
    assert all(r.created_at == T0 == r.due_at for r in rows)


def test_a_rolled_back_incident_write_queues_nothing(world: World) -> None:
    def refuse(_session: Session, _change: StoredChange) -> None:
        raise RuntimeError("the next hook fails after the outbox wrote its rows")

    world.repo.add_change_hook(refuse)
    incident = make_incident()
    with pytest.raises(RuntimeError, match="next hook fails"):
        world.repo.upsert(incident)
    with pytest.raises(NotFound):
        world.repo.get(incident.id)
    assert world.rows() == []
    world.repo.remove_change_hook(refuse)
    world.repo.upsert(incident)
    assert len(world.rows()) == 2


def test_writing_the_same_alert_twice_is_harmless(world: World) -> None:
    incident = make_incident()
    world.repo.upsert(incident)
    change = StoredChange(incident, *_opened_entry(world, incident.id))
    with Session(world.engine) as session, session.begin():
        world.writer(session, change)  # a replayed hook call: same keys, same ids
    assert len(world.rows()) == 2


def _opened_entry(world: World, incident_id: str) -> tuple[Any, Any]:
    entry = next(e for e in world.repo.timeline(incident_id) if e.kind == "incident.opened")
    from safewatch.storage.hash_chain import EntryKind

    return EntryKind.INCIDENT_OPENED, entry


def test_claims_never_overlap_between_dispatchers(world: World) -> None:
    for track in range(20):
        world.repo.upsert(make_incident(track=track))  # 40 rows
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def dispatcher(name: str) -> None:
        start.wait()
        mine: list[str] = []
        while batch := world.outbox.claim(name, T0 + 1, 3, 60.0):
            mine += [item.id for item in batch]
        claimed[name] = mine

    threads = [threading.Thread(target=dispatcher, args=(f"d{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [row_id for ids in claimed.values() for row_id in ids]
    assert len(everything) == 40
    assert len(set(everything)) == 40


def test_a_claim_can_leave_the_rows_of_busy_channels(world: World) -> None:
    """The dispatcher skips channels that have as many deliveries in flight as one may."""
    for track in range(3):
        world.repo.upsert(make_incident(track=track))  # a hook and a chat row each
    batch = world.outbox.claim("d", T0 + 1, 10, 60.0, skip_channels={"hook"})
    assert sorted(item.channel for item in batch) == ["chat"] * 3
    rest = world.outbox.claim("d", T0 + 1, 10, 60.0)
    assert sorted(item.channel for item in rest) == ["hook"] * 3


def test_a_fresh_alert_is_claimed_before_an_expedited_backlog(
    db_engine: Engine, tmp_path: Path
) -> None:
    """After an outage ``expedite`` makes the whole backlog due at once; in ``due_at`` order an
    alert raised just after the recovery waited behind all of it (an email backlog: ~165 s)."""
    world = World(db_engine, tmp_path, channels=["hook"])
    for track in range(5):
        world.repo.upsert(make_incident(track=track))
    retry = RetryConfig(max_attempts=10, initial=60.0, max_delay=60.0, jitter=0.0)
    for item in world.outbox.claim("d1", T0, 10, 30.0):
        world.outbox.failed(
            item, "d1", T0, "down", permanent=False, retry=retry, rng=random.Random()
        )
    assert world.outbox.expedite("hook", T0 + 10) == 5  # the receiver answers again
    world.now = T0 + 11
    fresh = make_incident(track=9)
    world.repo.upsert(fresh)
    (first,) = world.outbox.claim("d1", T0 + 12, 1, 30.0)
    assert (first.incident_id, first.attempts) == (fresh.id, 0)
    rest = world.outbox.claim("d1", T0 + 12, 10, 30.0)
    assert len(rest) == 5 and all(item.attempts == 1 for item in rest)


def test_failures_back_off_then_become_dead_letters_in_the_timeline(
    db_engine: Engine, tmp_path: Path
) -> None:
    world = World(db_engine, tmp_path, channels=["hook"])
    incident = make_incident()
    world.repo.upsert(incident)
    retry = RetryConfig(max_attempts=3, initial=2.0, max_delay=60.0, jitter=0.0)
    rng = random.Random(1)
    now, outcomes, dues = T0, [], []
    for _ in range(3):
        (item,) = world.outbox.claim("d1", now, 5, 60.0)
        outcome = world.outbox.failed(
            item, "d1", now, "receiver down", permanent=False, retry=retry, rng=rng
        )
        outcomes.append(outcome)
        (row,) = world.rows(id=item.id)
        if outcome == "pending":
            assert world.outbox.claim("d1", row.due_at - 0.1, 5, 60.0) == []  # not before
            dues.append(row.due_at - now)
            now = row.due_at
    assert outcomes == ["pending", "pending", "dead"]
    assert dues == [2.0, 4.0]
    (dead,) = world.rows(status="dead")
    assert dead.attempts == 3 and dead.last_error == "receiver down"
    kinds = [e.kind for e in world.repo.timeline(incident.id)]
    assert kinds == ["incident.opened", "alert.dead"]
    assert world.outbox.requeue(None, now) == 1
    (again,) = world.rows(id=dead.id)
    assert (again.status, again.attempts) == ("pending", 0)
    assert verify_chain(world.engine, None).ok


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens() -> None:
    retry = RetryConfig(max_attempts=10, initial=1.0, max_delay=8.0, jitter=0.5)
    flat = RetryConfig(max_attempts=10, initial=1.0, max_delay=8.0, jitter=0.0)
    rng = random.Random(7)
    assert [backoff(n, flat, rng) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    for attempt in range(1, 7):
        delays = [backoff(attempt, retry, rng) for _ in range(200)]
        full = backoff(attempt, flat, rng)
        assert all(full * 0.5 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full * 0.3  # spread, so retries do not stampede


def test_a_dead_dispatchers_claims_are_retried_after_the_lease(world: World) -> None:
    world.repo.upsert(make_incident())
    first = world.outbox.claim("crashed", T0, 10, 30.0)
    assert len(first) == 2
    assert world.outbox.claim("other", T0 + 29, 10, 30.0) == []
    second = world.outbox.claim("other", T0 + 31, 10, 30.0)
    assert {i.id for i in second} == {i.id for i in first}
    assert {i.key for i in second} == {i.key for i in first}  # a re-send carries the same key
    # The crashed one comes back late: its settlement is refused, the new owner's counts.
    assert world.outbox.delivered(first[0], "crashed", T0 + 32, "late") is False
    assert world.outbox.delivered(second[0], "other", T0 + 32, "HTTP 200") is True
    assert world.rows(id=first[0].id)[0].status == "delivered"


def test_delivery_is_in_the_timeline_and_the_chain_still_verifies(world: World) -> None:
    incident = make_incident()
    world.repo.upsert(incident)
    for item in world.outbox.claim("d1", T0 + 1, 10, 60.0):
        assert world.outbox.delivered(item, "d1", T0 + 1.5, "HTTP 200")
    sent = [e for e in world.repo.timeline(incident.id) if e.kind == "alert.sent"]
    assert sorted(e.detail["channel"] for e in sent) == ["chat", "hook"]
    assert {e.detail["key"] for e in sent} == {idempotency_key(incident.id, "main", "opened")}
    report = verify_chain(world.engine, None)
    assert report.ok, report.problems


def test_rate_limit_holds_the_excess_and_folds_it_into_one_digest(
    db_engine: Engine, tmp_path: Path
) -> None:
    world = World(db_engine, tmp_path, rate_limit={"count": 2, "per": "60s"}, channels=["hook"])
    window_end = (T0 // 60 + 1) * 60
    for track in range(5):
        world.now = T0 + track
        world.repo.upsert(make_incident(track=track, started_at=T0 + track))
    statuses = [r.status for r in world.rows()]
    assert statuses == ["pending", "pending", "held", "held", "held"]
    assert {r.due_at for r in world.rows(status="held")} == {window_end}
    assert world.outbox.fold_digests(window_end - 1) == 0
    assert world.outbox.fold_digests(window_end) == 1
    assert world.outbox.fold_digests(window_end + 5) == 0  # folded once
    (digest,) = world.rows(event="digest")
    assert digest.status == "pending" and digest.incident_id is None
    items = world.outbox.list(["pending"], limit=10)
    payload = next(i.payload for i in items if i.event == "digest")
    assert [entry["incident"]["track_ids"] for entry in payload["items"]] == [[2], [3], [4]]
    assert payload["reasons"] == ["rate_limit"]
    assert {r.digest_id for r in world.rows(status="digested")} == {digest.id}
    # A new window sends one by one again.
    world.now = window_end + 1
    world.repo.upsert(make_incident(track=9, started_at=window_end + 1))
    assert world.rows(status="pending")[-1].event == "opened"


def test_a_digest_route_holds_everything_until_its_window_ends(
    db_engine: Engine, tmp_path: Path
) -> None:
    world = World(db_engine, tmp_path, digest="15m", channels=["hook"], events=["opened"])
    for track in range(3):
        world.now = T0 + 10 * track
        world.repo.upsert(make_incident(track=track, started_at=world.now))
    assert {r.status for r in world.rows()} == {"held"}
    end = (T0 // 900 + 1) * 900
    assert world.outbox.next_due() == end
    assert world.outbox.fold_digests(end) == 1
    (item,) = world.outbox.claim("d1", end, 10, 60.0)
    assert item.event == "digest" and len(item.payload["items"]) == 3
    assert world.outbox.delivered(item, "d1", end + 1, "HTTP 200")
    for track in range(3):  # each incident's timeline says it went out in the digest
        incident_id = make_incident(track=track, started_at=T0 + 10 * track).id
        assert [e.kind for e in world.repo.timeline(incident_id)][-1] == "alert.sent"
    assert verify_chain(world.engine, None).ok


def test_an_acknowledgement_cancels_the_escalation(db_engine: Engine, tmp_path: Path) -> None:
    world = World(db_engine, tmp_path, escalate_after="10m", escalate_to=["pager"])
    acked, ignored = make_incident(track=1), make_incident(track=2)
    world.repo.upsert(acked)
    world.repo.upsert(ignored)
    escalations = world.rows(event="escalation")
    assert [(r.incident_id, r.channel, r.due_at) for r in escalations] == [
        (acked.id, "pager", T0 + 600),
        (ignored.id, "pager", T0 + 600),
    ]
    world.now = T0 + 60
    world.repo.set_status(acked.id, IncidentStatus.ACKNOWLEDGED, check=check_transition)
    by_incident = {r.incident_id: r.status for r in world.rows(event="escalation")}
    assert by_incident == {acked.id: "cancelled", ignored.id: "pending"}
    early = world.outbox.claim("d1", T0 + 599, 10, 60.0)
    assert {i.event for i in early} == {"opened"}  # escalations are not due yet
    due = world.outbox.claim("d1", T0 + 600, 10, 60.0)
    assert [(i.event, i.incident_id) for i in due] == [("escalation", ignored.id)]


def test_list_counts_and_unknown_status(world: World) -> None:
    world.repo.upsert(make_incident())
    assert world.outbox.counts() == {"pending": 2}
    assert len(world.outbox.list(["pending"])) == 2
    assert world.outbox.list(["dead"]) == []
    with pytest.raises(ValueError, match="unknown status lost"):
        world.outbox.list(["lost"])
    with Session(world.engine) as session:
        assert session.scalar(select(func.count()).select_from(OUTBOX)) == 2


class ContinuingFence:
    """A cluster fence that lets every write through and says each new incident continues
    ``previous`` (as :class:`safewatch.cluster.EpochFence` does just after a takeover)."""

    def __init__(self, previous: str) -> None:
        self.previous = previous

    def check(self, session: Session, camera_id: str) -> None:
        return None

    def continues(self, session: Session, incident: object) -> str | None:
        return self.previous


@pytest.mark.parametrize("suppress", [True, False])
def test_suppress_continued_drops_only_the_opened_alert(
    db_engine: Engine, tmp_path: Path, suppress: bool
) -> None:
    world = World(db_engine, tmp_path, suppress_continued=suppress)
    world.repo.fence = ContinuingFence("incident-the-lost-analyzer-left")
    incident = make_incident()
    world.repo.upsert(incident)
    world.repo.upsert(dataclasses.replace(incident, ended_at=T0 + 9))
    assert world.repo.timeline(incident.id)[0].detail["continues"] == (
        "incident-the-lost-analyzer-left"
    )
    events = sorted({r.event for r in world.rows()})
    assert events == (["closed"] if suppress else ["closed", "opened"])


def test_a_daily_digest_goes_out_at_the_sites_midnight(db_engine: Engine, tmp_path: Path) -> None:
    """Windows were aligned to the epoch: a ``24h`` digest went out at 00:00 UTC, which is 01:00
    in Berlin (the World's zone) and mid-afternoon in California. T0 is 23:13 in Berlin."""
    world = World(db_engine, tmp_path, digest="24h", channels=["hook"], events=["opened"])
    world.repo.upsert(make_incident(track=1, started_at=T0))
    berlin = ZoneInfo("Europe/Berlin")
    local = datetime.fromtimestamp(T0, berlin)
    midnight = datetime(local.year, local.month, local.day, tzinfo=berlin) + timedelta(days=1)
    assert {r.due_at for r in world.rows()} == {midnight.timestamp()}
    assert midnight.timestamp() != (T0 // 86_400 + 1) * 86_400


@pytest.mark.parametrize(
    ("zone", "at", "length", "expected"),
    [
        # 15 minutes in Kathmandu (+5:45): quarter hours of the local day
        ("Asia/Kathmandu", "2024-06-01T10:40", 900, ("2024-06-01T10:30", "2024-06-01T10:45")),
        # 7 h windows of a local day: the last one is cut at midnight
        ("Europe/Berlin", "2024-06-01T23:30", 25_200, ("2024-06-01T21:00", "2024-06-02T00:00")),
        # one day across New York's 23-hour day
        ("America/New_York", "2024-03-10T12:00", 86_400, ("2024-03-10T00:00", "2024-03-11T00:00")),
    ],
)
def test_alert_windows_follow_the_sites_day(
    zone: str, at: str, length: float, expected: tuple[str, str]
) -> None:
    tz = ZoneInfo(zone)

    def local(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()

    assert window(local(at), length, tz) == (local(expected[0]), local(expected[1]))
