"""The dispatcher and the alert service: retries carry the same key, permanent failures go to
the dead letters, escalations wait for an acknowledgement, a commit wakes the thread at once,
queued rows outlive a restart, and a reload swaps routes and channels."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alerts_support import T0, Clock, RecordingChannel, make_incident, make_site

from safewatch.alerts import AlertService
from safewatch.alerts.channels import DeliveryError
from safewatch.alerts.dispatcher import EXPEDITE_INTERVAL, Dispatcher, channel_cap
from safewatch.alerts.message import AlertMessage
from safewatch.alerts.rows import OutboxItem
from safewatch.config.loader import LoadedSite
from safewatch.config.log_redaction import RedactingFilter
from safewatch.config.secrets import SECRETS, register_site_secrets
from safewatch.domain import IncidentStatus
from safewatch.incidents.lifecycle import IncidentLifecycle, check_transition
from safewatch.storage import IncidentRepository, create_engine_for

HOOK = {"type": "webhook", "url": "http://127.0.0.1:9/in"}


def site_with(tmp_path: Path, chat: dict[str, str] = HOOK, **route: Any) -> LoadedSite:
    base = {"id": "main", "channels": ["chat"], "events": ["opened", "closed"]}
    alerts = {
        "channels": {"chat": chat, "pager": HOOK},
        "routes": [{**base, **route}],
        "retry": {"max_attempts": 4, "initial": "1s", "max_delay": "10s", "jitter": 0},
        "poll_interval": "30s",
    }
    return make_site(alerts, tmp_path)


class Rig:
    """An alert service over SQLite with recording channels and a test clock."""

    def __init__(self, tmp_path: Path, site: LoadedSite) -> None:
        self.clock = Clock()
        self.engine = create_engine_for(f"sqlite:///{tmp_path / 'alerts.db'}", tmp_path)
        self.repo = IncidentRepository(self.engine, clock=self.clock)
        self.channels = {"chat": RecordingChannel("chat"), "pager": RecordingChannel("pager")}
        self.service = AlertService(site, self.repo, clock=self.clock, channels=self.channels)
        self.service.start()
        self.service.dispatcher.stop()  # the tests drive it with run_once
        self.outbox = self.service.outbox

    def run(self) -> list[str]:
        return [d.outcome for d in self.service.dispatcher.run_once()]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path, site_with(tmp_path))
    yield rig
    rig.service.close()
    rig.engine.dispose()


def test_a_flaky_receiver_gets_the_alert_with_the_same_key_every_time(rig: Rig) -> None:
    chat = rig.channels["chat"]
    chat.fail = DeliveryError("connection refused")
    rig.repo.upsert(make_incident())
    assert rig.run() == ["pending"]
    assert rig.run() == []  # backing off: nothing is due yet
    rig.clock.advance(1.0)
    assert rig.run() == ["pending"]
    rig.clock.advance(2.0)
    chat.fail = None
    assert rig.run() == ["delivered"]
    assert chat.attempts == 3
    (message,) = chat.sent
    assert message.event == "opened" and message.subject.startswith("[high] hardhat-required")
    (row,) = rig.outbox.list(["delivered"])
    assert (row.key, row.attempts, row.last_error) == (message.key, 3, None)
    assert rig.service.counters() == {"chat": {"pending": 2, "delivered": 1}}


def test_a_permanent_refusal_is_a_dead_letter_until_retried(rig: Rig) -> None:
    chat = rig.channels["chat"]
    chat.fail = DeliveryError("HTTP 404 Not Found", permanent=True)
    incident = make_incident()
    rig.repo.upsert(incident)
    assert rig.run() == ["dead"]
    (dead,) = rig.outbox.list(["dead"])
    assert dead.last_error == "HTTP 404 Not Found" and dead.attempts == 1
    assert [e.kind for e in rig.repo.timeline(incident.id)][-1] == "alert.dead"
    chat.fail = None
    assert rig.outbox.requeue([dead.id], rig.clock()) == 1
    assert rig.run() == ["delivered"]
    assert chat.sent[0].key == dead.key


def test_the_first_retry_through_sends_the_channels_other_retries_at_once(rig: Rig) -> None:
    """After an outage each retry waited out its own backoff (up to max_delay, 5 minutes by
    default) although the receiver had answered one of them: the backlog trickled out."""
    chat = rig.channels["chat"]
    chat.fail = DeliveryError("connection refused")
    rig.repo.upsert(make_incident(track=1))
    for step in (1.0, 2.0):
        assert rig.run() == ["pending"]
        rig.clock.advance(step)
    assert rig.run() == ["pending"]  # its third failure: next try in 4 s
    rig.repo.upsert(make_incident(track=2))
    assert rig.run() == ["pending"]  # first failure: next try in 1 s
    rig.clock.advance(1.0)
    chat.fail = None
    assert rig.run() == ["delivered"]  # the second incident's retry: the receiver is back
    assert rig.run() == ["delivered"]  # the first one's, 3 s before its backoff ran out
    assert len(chat.sent) == 2
    assert not [r for r in rig.outbox.list(["pending"]) if r.channel == "chat"]


def test_a_throttling_receiver_does_not_expedite_the_retries_every_time(tmp_path: Path) -> None:
    """A receiver that fails now and then (429): every failure re-armed the expedite and the next
    retry through made every waiting retry due again, so they went out in a tight loop instead of
    backing off. Now at most once per EXPEDITE_INTERVAL (monotonic) per channel."""
    alerts = {
        "channels": {"chat": HOOK},
        "routes": [{"id": "main", "channels": ["chat"], "events": ["opened"]}],
        "retry": {"max_attempts": 20, "initial": "1s", "max_delay": "1m", "jitter": 0},
    }
    site = make_site(alerts, tmp_path)
    rig = Rig(tmp_path, site)
    mono = Clock(0.0)
    dispatcher = Dispatcher(
        rig.outbox, rig.service.dispatcher.plan, clock=rig.clock, monotonic=mono
    )
    try:
        chat = rig.channels["chat"]
        chat.fail = DeliveryError("HTTP 429 Too Many Requests")

        def run() -> list[str]:
            return [d.outcome for d in dispatcher.run_once()]

        def fail_once_then_deliver(track: int) -> list[str]:
            """A new alert fails once, then its retry gets through 1 s later."""
            chat.fail = DeliveryError("HTTP 429 Too Many Requests")
            rig.repo.upsert(make_incident(track=track))
            assert run() == ["pending"]
            rig.clock.advance(1.0)
            mono.advance(1.0)
            chat.fail = None
            return run()

        rig.repo.upsert(make_incident(track=1))
        for step in (1.0, 2.0, 4.0):
            assert run() == ["pending"]
            rig.clock.advance(step)
        assert run() == ["pending"]  # the first incident's 4th failure: next try in 8 s
        assert fail_once_then_deliver(2) == ["delivered"]  # expedites the first one's retry
        chat.fail = DeliveryError("HTTP 429 Too Many Requests")
        assert run() == ["pending"]  # throttled again: its 5th failure, next try in 16 s
        assert fail_once_then_deliver(3) == ["delivered"]
        assert run() == []  # within 60 s of the last expedite: the retry keeps its backoff
        mono.advance(EXPEDITE_INTERVAL)
        assert fail_once_then_deliver(4) == ["delivered"]
        assert run() == ["delivered"]  # a minute on, a retry through expedites again
    finally:
        rig.service.close()
        rig.engine.dispose()


def test_a_future_escalation_is_not_expedited_by_a_recovery(tmp_path: Path) -> None:
    rig = Rig(tmp_path, site_with(tmp_path, escalate_after="10m", escalate_to=["chat"]))
    try:
        chat = rig.channels["chat"]
        chat.fail = DeliveryError("connection refused")
        rig.repo.upsert(make_incident())
        assert rig.run() == ["pending"]
        rig.clock.advance(1.0)
        chat.fail = None
        assert rig.run() == ["delivered"]  # a retry through: expedite the channel's retries
        assert rig.run() == []  # the escalation (never tried) still waits for its 10 minutes
    finally:
        rig.service.close()
        rig.engine.dispose()


def test_attempts_run_out(rig: Rig) -> None:
    rig.channels["chat"].fail = DeliveryError("timed out")
    rig.repo.upsert(make_incident())
    outcomes: list[str] = []
    for _ in range(10):
        outcomes += rig.run()
        rig.clock.advance(10.0)
    assert outcomes == ["pending", "pending", "pending", "dead"]


def test_an_unacknowledged_incident_escalates_and_an_acknowledged_one_does_not(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, site_with(tmp_path, escalate_after="10m", escalate_to=["pager"]))
    try:
        acked, ignored = make_incident(track=1), make_incident(track=2)
        rig.repo.upsert(acked)
        rig.repo.upsert(ignored)
        assert rig.run() == ["delivered", "delivered"]
        rig.clock.advance(300)
        rig.repo.set_status(acked.id, IncidentStatus.ACKNOWLEDGED, check=check_transition)
        rig.clock.advance(299)
        assert rig.run() == []
        rig.clock.advance(1)
        assert rig.run() == ["delivered"]
        (escalation,) = rig.channels["pager"].sent
        assert escalation.event == "escalation"
        assert escalation.incident is not None and escalation.incident["id"] == ignored.id
        assert escalation.subject.startswith("[ESCALATION]")
        assert "10.0 min" in escalation.subject  # unacknowledged since it started
        # Acknowledged after the row was claimed but before it was sent: cancelled, not sent.
        late = make_incident(track=3, started_at=rig.clock())
        rig.repo.upsert(late)
        assert rig.run() == ["delivered"]
        rig.clock.advance(600)
        dispatcher = rig.service.dispatcher
        (item,) = rig.outbox.claim(dispatcher.worker_id, rig.clock(), 10, 60.0)
        assert (item.event, item.incident_id) == ("escalation", late.id)
        rig.repo.set_status(late.id, IncidentStatus.ACKNOWLEDGED, check=check_transition)
        assert dispatcher.deliver(item).outcome == "cancelled"
        assert len(rig.channels["pager"].sent) == 1
        (row,) = [r for r in rig.outbox.list(["cancelled"]) if r.incident_id == late.id]
        assert row.last_error == "incident is acknowledged"
    finally:
        rig.service.close()
        rig.engine.dispose()


def test_a_commit_wakes_the_dispatcher_thread(tmp_path: Path) -> None:
    """Poll interval 30 s: a delivery within 10 s can only come from the wake-up."""
    site = site_with(tmp_path)
    engine = create_engine_for(f"sqlite:///{tmp_path / 'wake.db'}", tmp_path)
    repo = IncidentRepository(engine)
    chat = RecordingChannel("chat")
    service = AlertService(site, repo, channels={"chat": chat, "pager": RecordingChannel("p")})
    service.start()
    try:
        time.sleep(0.2)  # the loop is now asleep for up to 30 s
        started = time.monotonic()
        repo.upsert(make_incident(started_at=time.time()))
        deadline = started + 10.0  # a third of the poll interval: only the wake-up fits
        while not chat.sent and time.monotonic() < deadline:
            time.sleep(0.005)
        assert chat.sent, "not delivered within 10 s: the commit did not wake the dispatcher"
    finally:
        service.close()
        engine.dispose()


def test_rows_queued_while_no_dispatcher_runs_go_out_after_a_restart(tmp_path: Path) -> None:
    site = site_with(tmp_path)
    engine = create_engine_for(f"sqlite:///{tmp_path / 'restart.db'}", tmp_path)
    repo = IncidentRepository(engine, clock=Clock())
    first = AlertService(site, repo, channels={"chat": RecordingChannel("chat")}, clock=Clock())
    first.start()
    first.stop()  # the process is "down": changes are still queued by the hook
    repo.upsert(make_incident(track=1))
    repo.upsert(make_incident(track=2))
    first.close()
    engine.dispose()

    engine = create_engine_for(f"sqlite:///{tmp_path / 'restart.db'}", tmp_path)
    chat = RecordingChannel("chat")
    again = AlertService(site, IncidentRepository(engine), channels={"chat": chat})
    again.dispatcher.plan = dataclasses.replace(again.dispatcher.plan, poll_interval=0.05)
    again.start()
    try:
        assert again.dispatcher.drain(5.0)
        assert sorted(m.incident["track_ids"][0] for m in chat.sent if m.incident) == [1, 2]
    finally:
        again.close()
        engine.dispose()


def test_a_channel_removed_from_the_site_file_turns_its_rows_into_dead_letters(
    rig: Rig, tmp_path: Path
) -> None:
    rig.repo.upsert(make_incident())
    plan = rig.service.dispatcher.plan
    rig.service.dispatcher.plan = dataclasses.replace(plan, channels={})
    assert rig.run() == ["dead"]
    (dead,) = rig.outbox.list(["dead"])
    assert dead.last_error == "channel 'chat' is no longer configured"


def test_reconfigure_swaps_routes_and_closes_old_channels(rig: Rig, tmp_path: Path) -> None:
    old_chat = rig.channels["chat"]
    rig.service.reconfigure(site_with(tmp_path, channels=["pager"], events=["closed"]))
    assert old_chat.closed
    incident = make_incident()
    rig.repo.upsert(incident)
    rig.repo.upsert(dataclasses.replace(incident, ended_at=T0 + 5))
    rows = rig.outbox.list(None)
    assert [(r.event, r.channel) for r in rows] == [("closed", "pager")]


def test_an_unexpected_channel_error_is_logged_and_stored_without_the_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception a channel does not expect quotes what it was given: here the path and the
    token of the URL, outside any URL shape. Neither the logged traceback nor the stored error
    (``alerts list``) nor ``alert.dead`` in the chain may show the token."""
    token = "querytok-SECRET2"
    site = site_with(
        tmp_path, chat={"type": "webhook", "url": f"http://127.0.0.1:9/500?token={token}"}
    )
    register_site_secrets(site.config)  # as load_site does
    rig = Rig(tmp_path, site)
    redacting = RedactingFilter()
    caplog.handler.addFilter(redacting)
    try:
        rig.channels["chat"].fail = ValueError(
            f"URL can't contain control characters. '/500?token={token} x'"
        )
        incident = make_incident()
        rig.repo.upsert(incident)
        outcomes: list[str] = []
        with caplog.at_level(logging.ERROR, logger="safewatch.alerts"):
            for _ in range(6):
                outcomes += rig.run()
                rig.clock.advance(10.0)
        assert outcomes == ["pending", "pending", "pending", "dead"]
        (dead,) = rig.outbox.list(["dead"])
        assert (
            dead.last_error
            == "ValueError: URL can't contain control characters. '/500?token=*** x'"
        )
        (entry,) = [e for e in rig.repo.timeline(incident.id) if e.kind == "alert.dead"]
        assert "token=***" in entry.detail["error"] and token not in str(entry.detail)
        assert "Traceback" in caplog.text and "ValueError" in caplog.text
        assert token not in caplog.text
    finally:
        caplog.handler.removeFilter(redacting)
        rig.service.close()
        rig.engine.dispose()


def test_the_timeline_says_where_each_alert_went_and_why_one_was_given_up(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, site_with(tmp_path, channels=["chat", "pager"]))
    try:
        SECRETS.add(["pager-SECRET5"])
        rig.channels["pager"].fail = DeliveryError(
            "pager answered HTTP 410 Gone: unknown hook pager-SECRET5", permanent=True
        )
        incident = make_incident()
        rig.repo.upsert(incident)
        assert sorted(rig.run()) == ["dead", "delivered"]
        # An entry chained before errors were masked: shown masked all the same.
        rig.repo.record_event(
            incident.id,
            "alert.dead",
            {"route": "old", "channel": "pager", "event": "closed", "key": "k1", "attempts": 10,
             "error": "timed out near pager-SECRET5"},
        )  # fmt: skip
        key = rig.channels["chat"].sent[0].key
        pager_key = next(r.key for r in rig.outbox.list(["dead"]))
        summaries = [
            e.summary
            for e in IncidentLifecycle(rig.repo).timeline(incident.id)
            if "alert" in e.kind
        ]
        assert sorted(summaries) == sorted(
            [
                f"opened alert sent via chat (route main, key {key}, attempt 1): recorded",
                f"opened alert to pager given up after 1 attempt(s) (route main, key {pager_key}): "
                "pager answered HTTP 410 Gone: unknown hook ***",
                "closed alert to pager given up after 10 attempt(s) (route old, key k1): "
                "timed out near ***",
            ]
        )
    finally:
        rig.service.close()
        rig.engine.dispose()


class GatedChannel(RecordingChannel):
    """A channel whose sends wait until the test opens the gate (a receiver that hangs)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = threading.Event()
        self.waiting = threading.Semaphore(0)

    def send(self, message: AlertMessage) -> str:
        self.waiting.release()
        self.gate.wait(30.0)
        return super().send(message)


def test_a_channel_at_its_cap_with_a_backlog_does_not_make_the_loop_spin(tmp_path: Path) -> None:
    """Four senders, so two in flight to one channel is its cap; eight more rows wait behind.

    The loop may only look again when a delivery ends or the poll interval (30 s) passes.
    Before, it read the capped channel's overdue backlog as "due now" and claimed about 100
    times a second (3 transactions each) while the receiver hung.
    """
    site = site_with(tmp_path, events=["opened"])
    engine = create_engine_for(f"sqlite:///{tmp_path / 'spin.db'}", tmp_path)
    repo = IncidentRepository(engine)
    chat = GatedChannel("chat")
    service = AlertService(site, repo, channels={"chat": chat, "pager": RecordingChannel("p")})
    dispatcher = service.dispatcher
    assert dispatcher.plan.workers == 4 and channel_cap(4) == 2
    claims = 0
    claim = service.outbox.claim

    def counting_claim(*args: Any, **kwargs: Any) -> list[OutboxItem]:
        nonlocal claims
        claims += 1
        return claim(*args, **kwargs)

    service.outbox.claim = counting_claim  # type: ignore[method-assign]
    try:
        service.start()
        for track in range(1, 11):
            repo.upsert(make_incident(track=track, started_at=time.time()))
        for _ in range(2):
            assert chat.waiting.acquire(timeout=10.0), "the channel was never tried"
        time.sleep(0.2)  # let the wake-ups from the commits settle
        before = claims
        time.sleep(1.0)
        passes = claims - before
        assert passes <= 5, f"{passes} claim passes in 1 s while the only channel was capped"
        chat.gate.set()
        assert dispatcher.drain(10.0)
        assert len(chat.sent) == 10
    finally:
        chat.gate.set()
        service.close()
        engine.dispose()
