"""Alerts through real receivers on loopback: an SMTP server with STARTTLS and AUTH (aiosmtpd), an
HTTP receiver that checks the HMAC signature itself, Slack and Teams stand-ins, and mosquitto."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alerts_rig import AlertRig

from alert_servers import MqttRecorder, mosquitto_unavailable, wait_until
from safewatch.alerts.channels.webhook import WebhookChannel
from safewatch.alerts.dispatcher import channel_cap
from safewatch.alerts.message import Composer, probe_item
from safewatch.alerts.rows import idempotency_key
from safewatch.config.alerts import WebhookChannelConfig

pytestmark = pytest.mark.timeout(60)


def delivered(rig: AlertRig, count: int, timeout: float = 10.0) -> None:
    assert wait_until(lambda: rig.service.outbox.counts().get("delivered", 0) >= count, timeout), (
        rig.service.outbox.counts()
    )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[AlertRig]:
    rig = AlertRig(tmp_path, ["mail", "hook", "slack", "teams"])
    yield rig
    rig.close()


def test_email_over_starttls_with_login_carries_the_still_and_the_link(rig: AlertRig) -> None:
    assert rig.smtp is not None
    incident = rig.incident()
    delivered(rig, 4)
    (mail,) = rig.smtp.received()
    assert mail.tls and mail.user == "alerts"
    assert mail.rcpt_tos == ["safety@plant.example"]
    key = idempotency_key(incident.id, "main", "opened")
    assert mail.message["Message-ID"] == f"<{key}@plant.example>"
    assert mail.message["Subject"] == "[high] hardhat-required on Yard camera"
    body = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"https://safewatch.plant.example/incidents/{incident.id}" in body
    (attachment,) = mail.message.iter_attachments()
    assert incident.snapshot is not None
    assert attachment.get_content() == rig.storage.evidence.read_bytes(incident.snapshot)
    sent = [e for e in rig.storage.repository.timeline(incident.id) if e.kind == "alert.sent"]
    assert sorted(e.detail["channel"] for e in sent) == ["hook", "mail", "slack", "teams"]


def test_an_email_the_server_accepted_is_delivered_whatever_it_answers_to_quit(
    tmp_path: Path,
) -> None:
    """Before, ``with smtp:`` raised on the 250 answer to QUIT after the message was accepted:
    the delivery was retried and the same email sent again until the attempts ran out."""
    rig = AlertRig(tmp_path, ["mail"], retry={"initial": "0.1s", "max_delay": "0.1s"})
    try:
        assert rig.smtp is not None
        rig.smtp.quit_reply = "250 bye"
        rig.incident()
        delivered(rig, 1)
        (row,) = rig.service.outbox.list()
        assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
        assert len(rig.smtp.received()) == 1
    finally:
        rig.close()


def test_webhook_requests_are_signed_and_slack_and_teams_get_their_formats(
    rig: AlertRig,
) -> None:
    assert rig.hook is not None and rig.slack is not None and rig.teams is not None
    incident = rig.incident()
    rig.close_incident(incident)
    delivered(rig, 8)
    requests = rig.hook.all()
    assert [r.signature_ok for r in requests] == [True, True]
    events = [(r.headers["x-safewatch-event"], r.json()["incident"]["id"]) for r in requests]
    assert sorted(events) == [("closed", incident.id), ("opened", incident.id)]
    for request in requests:
        assert request.headers["idempotency-key"] == request.json()["key"]
        assert request.path == "/safewatch"
    slack = [r.json() for r in rig.slack.all()]
    assert {s["blocks"][0]["type"] for s in slack} == {"header"}
    assert any(s["text"].startswith("[high] ended: hardhat-required") for s in slack)
    teams = [r.json() for r in rig.teams.all()]
    assert {t["attachments"][0]["content"]["type"] for t in teams} == {"AdaptiveCard"}


def test_the_receiver_refuses_a_replayed_signature_and_the_alert_becomes_a_dead_letter(
    rig: AlertRig,
) -> None:
    """A request signed ten minutes ago (a captured request sent again) gets 401; 4xx is
    permanent, so the alert is a dead letter at once, visible in ``alerts list``."""
    assert rig.hook is not None
    config = rig.site.config.alerts.channels["hook"]
    assert isinstance(config, WebhookChannelConfig)
    stale = WebhookChannel("hook", config, clock=lambda: time.time() - 600)
    plan = rig.service.dispatcher.plan
    channels = {**plan.channels, "hook": stale}
    rig.service.dispatcher.plan = dataclasses.replace(plan, channels=channels)
    rig.incident()
    assert wait_until(lambda: rig.service.outbox.counts().get("dead", 0) >= 1, 10)
    (request,) = rig.hook.all()
    assert request.signature_ok is False
    (dead,) = rig.service.outbox.list(["dead"])
    assert "HTTP 401" in (dead.last_error or "") and dead.attempts == 1


def test_a_wrong_smtp_password_and_an_untrusted_certificate_are_dead_letters(
    tmp_path: Path,
) -> None:
    wrong = AlertRig(tmp_path / "a", ["mail"], channel_overrides={"mail": {"password": "nope"}})
    try:
        wrong.incident()
        assert wait_until(lambda: wrong.service.outbox.counts().get("dead", 0) == 1, 10)
        (dead,) = wrong.service.outbox.list(["dead"])
        assert "refused the login of 'alerts'" in (dead.last_error or "")
        assert "nope" not in (dead.last_error or "")
        assert wrong.smtp is not None and wrong.smtp.received() == []
    finally:
        wrong.close()
    untrusted = AlertRig(tmp_path / "b", ["mail"], channel_overrides={"mail": {"ca_file": None}})
    try:
        untrusted.incident()
        assert wait_until(lambda: untrusted.service.outbox.counts().get("dead", 0) == 1, 10)
        (dead,) = untrusted.service.outbox.list(["dead"])
        assert "certificate not trusted" in (dead.last_error or "")
    finally:
        untrusted.close()


@pytest.mark.timeout(100)
def test_a_hanging_receiver_does_not_hold_up_the_other_channels(tmp_path: Path) -> None:
    """Every incident goes to a healthy webhook and to one that never answers (120 s timeout).
    At most half the senders may wait on the hanging one, so the healthy one gets every alert
    before the hanging sends time out (before: all 4 senders ended up on the hanging channel's
    rows, and the healthy one got 28 of 200 in 61 s). The 60 s bound is generous (it takes
    about a second) but must stay below the hanging channel's timeout: the claim is that the
    healthy one does not wait for it."""
    rig = AlertRig(tmp_path, ["hook", "hang"], route={"events": ["opened"]})
    try:
        assert rig.hook is not None and rig.hang is not None
        hang = rig.hang
        assert rig.service.dispatcher.plan.workers == 4
        count = 40
        for track in range(1, count + 1):
            rig.incident(track, still=False)
        hook = rig.hook
        arrived = wait_until(lambda: len(hook.accepted()) >= count, 60.0)
        assert arrived, (len(hook.accepted()), rig.service.outbox.counts())
        assert hang.received >= 1  # it was tried, and blocks a sender until its timeout
        assert hang.most_open <= channel_cap(4) == 2
    finally:
        rig.close()


@pytest.mark.skipif(mosquitto_unavailable() is not None, reason=str(mosquitto_unavailable()))
def test_mqtt_event_retained_state_and_home_assistant_discovery(tmp_path: Path) -> None:
    rig = AlertRig(tmp_path, ["mqtt"])
    assert rig.broker is not None
    live = MqttRecorder(rig.broker.port)
    try:
        first = rig.incident(track=1)
        second = rig.incident(track=2)
        delivered(rig, 2)
        topic = "safewatch/yard/hardhat-required/event"
        # The broker acknowledged both; it forwards them to the subscriber on its own time.
        assert wait_until(lambda: len(live.on(topic)) >= 2, 5)
        events = live.on(topic)
        assert len(events) == 2
        for message in events:
            assert message.user_properties["idempotency-key"] == message.json()["key"]
            assert not message.retain
        assert {m.json()["incident"]["id"] for m in events} == {first.id, second.id}

        late = MqttRecorder(rig.broker.port, ("safewatch/+/+/state", "homeassistant/#"))
        assert wait_until(lambda: len(late.all()) >= 2, 5)
        (state,) = late.on("safewatch/yard/hardhat-required/state")
        assert state.retain and state.json()["state"] == "ON"
        assert state.json()["open_incidents"] == 2
        (config,) = late.on("homeassistant/binary_sensor/safewatch_yard_hardhat-required/config")
        assert config.retain
        discovery = config.json()
        assert discovery["state_topic"] == "safewatch/yard/hardhat-required/state"
        assert discovery["device_class"] == "safety"
        late.close()

        rig.close_incident(first)
        delivered(rig, 3)
        assert wait_until(lambda: len(live.on("safewatch/yard/hardhat-required/state")) >= 3, 5)
        assert live.on("safewatch/yard/hardhat-required/state")[-1].json()["state"] == "ON"
        rig.close_incident(second)  # the last open one: the sensor turns off
        delivered(rig, 4)
        assert wait_until(lambda: len(live.on("safewatch/yard/hardhat-required/state")) >= 4, 5)
        assert live.on("safewatch/yard/hardhat-required/state")[-1].json()["state"] == "OFF"
    finally:
        live.close()
        rig.close()


@pytest.mark.skipif(mosquitto_unavailable() is not None, reason=str(mosquitto_unavailable()))
@pytest.mark.parametrize(
    "route", [{"events": ["opened"]}, {"digest": "1h"}], ids=["default-events", "digest"]
)
def test_the_retained_mqtt_state_turns_off_whatever_alerts_the_route_sends(
    tmp_path: Path, route: dict[str, object]
) -> None:
    """Before, the state rode only on single alerts: with the default ``events: [opened]`` the
    sensor never turned off, and a digest route published no state at all."""
    rig = AlertRig(tmp_path, ["mqtt"], route=route)
    assert rig.broker is not None
    topic = "safewatch/yard/hardhat-required/state"
    try:
        incident = rig.incident()
        delivered(rig, 1)
        rig.close_incident(incident)
        delivered(rig, 2)
        late = MqttRecorder(rig.broker.port, (topic,))
        try:
            assert wait_until(lambda: len(late.on(topic)) >= 1, 5)
            (state,) = late.on(topic)
            assert state.retain
            assert (state.json()["state"], state.json()["open_incidents"]) == ("OFF", 0)
            assert state.json()["last_event"] == "closed"
        finally:
            late.close()
    finally:
        rig.close()


def test_probe_message_of_alerts_test(rig: AlertRig) -> None:
    """What ``safewatch alerts test`` sends reaches the receivers like a real alert."""
    assert rig.hook is not None
    plan = rig.service.dispatcher.plan
    composer: Composer = plan.composer
    route = rig.site.config.alerts.routes[0]
    message = composer.compose(probe_item(route, "hook", time.time()))
    assert plan.channels["hook"].send(message) == "HTTP 200"
    (request,) = rig.hook.accepted()
    assert request.json()["event"] == "test" and request.signature_ok
