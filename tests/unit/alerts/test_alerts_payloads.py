"""What each channel puts on the wire: webhook signature (and its verifier), Slack Block Kit,
Teams Adaptive Card, the email (Message-ID from the key, thread, attachment), MQTT topics; and
the message composer (templates, links, digests, evidence size limit)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alerts_support import T0, make_incident, make_site

from safewatch.alerts.channels.email import build_email
from safewatch.alerts.channels.mqtt import topic_part
from safewatch.alerts.channels.slack import escape, slack_payload
from safewatch.alerts.channels.teams import teams_payload
from safewatch.alerts.channels.webhook import sign, verify_signature, webhook_body
from safewatch.alerts.message import AlertMessage, Composer
from safewatch.alerts.rows import OutboxItem, idempotency_key, incident_json
from safewatch.config.alerts import EmailChannelConfig

SECRET = b"shared-secret"


def item(
    event: str = "opened", snapshot: str | None = "yard/2023-11-14/abc.jpg", **payload: object
) -> OutboxItem:
    incident = make_incident(snapshot=snapshot)
    key = idempotency_key(incident.id, "night", event)
    body = {"incident": incident_json(incident), "event": event, "at": T0 + 1, **payload}
    return OutboxItem(
        f"{key}:hook", key, incident.id, "night", "hook", event, "sending", 0, T0, T0, None, None,
        body,
    )  # fmt: skip


def composer(
    tmp_path: Path,
    evidence: bytes | None = None,
    stored_still: Callable[[str], str | None] | None = None,
    **alerts: object,
) -> Composer:
    block = {
        "incident_url": "https://sw.example/incidents/{incident_id}",
        "channels": {"hook": {"type": "webhook", "url": "http://x/"}},
        "templates": {"terse": {"subject": "{rule}@{camera}", "text": "{message} ({link})"}},
        "routes": [{"id": "night", "channels": ["hook"]}, {"id": "t", "channels": ["hook"]}],
        **alerts,
    }
    site = make_site(block, tmp_path)
    return Composer(
        site.config.alerts,
        site_name="North yard",
        tz=ZoneInfo("Europe/Berlin"),
        camera_names={"yard": "Yard camera"},
        read_evidence=None if evidence is None else (lambda key: evidence),
        clock=lambda: T0 + 900,
        stored_still=stored_still,
        still_wait=0.5,
    )


@pytest.fixture
def message(tmp_path: Path) -> AlertMessage:
    return composer(tmp_path, b"\xff\xd8jpeg").compose(item(), evidence=True)


def test_the_default_message_names_camera_rule_time_and_link(message: AlertMessage) -> None:
    assert message.subject == "[high] hardhat-required on Yard camera"
    assert "Started: 2023-11-14 23:13:20 CET" in message.text
    assert message.link is not None and message.link.endswith(message.incident["id"])  # type: ignore[index]
    assert message.text.endswith(message.link)
    assert message.evidence is not None and message.evidence.name == "abc.jpg"
    assert message.created_at == T0 + 1


def test_a_route_template_and_an_evidence_size_limit(tmp_path: Path) -> None:
    compose = composer(
        tmp_path,
        b"x" * 2000,
        routes=[{"id": "night", "channels": ["hook"], "template": "terse"}],
    )
    terse = compose.compose(item(), evidence=True, max_evidence_bytes=1000)
    assert terse.subject == "hardhat-required@yard"
    assert terse.text == f"person #4 without hardhat ({terse.link})"
    assert terse.evidence is None  # too large: linked, not attached


def test_an_opened_alert_waits_briefly_for_the_still_stored_after_its_row(
    tmp_path: Path,
) -> None:
    """A live incident's row (and its alert) is stored before the evidence thread writes its
    still: the message attaches the still stored since, waiting for it when just opened."""
    asked: list[str] = []

    def stored(incident_id: str) -> str | None:
        asked.append(incident_id)
        return "yard/2023-11-14/late.jpg" if len(asked) >= 3 else None

    message = composer(tmp_path, b"\xff\xd8jpeg", stored).compose(
        item(snapshot=None), evidence=True
    )
    assert message.evidence is not None and message.evidence.name == "late.jpg"
    assert asked == [message.incident["id"]] * 3  # type: ignore[index]
    # No still ever (its write failed): sent without one after the wait, never blocked longer.
    started = time.monotonic()
    bare = composer(tmp_path, b"\xff\xd8jpeg", lambda _id: None).compose(
        item(snapshot=None), evidence=True
    )
    assert bare.evidence is None and 0.5 <= time.monotonic() - started < 5.0
    # A closed alert does not wait; channels without attachments never look.
    looked: list[str] = []

    def none_yet(incident_id: str) -> str | None:
        looked.append(incident_id)
        return None

    closed = composer(tmp_path, b"\xff\xd8jpeg", none_yet)
    assert closed.compose(item("closed", snapshot=None), evidence=True).evidence is None
    assert closed.compose(item(snapshot=None)).evidence is None
    assert len(looked) == 1


def test_a_digest_lists_every_incident(tmp_path: Path) -> None:
    entries = [
        {"incident": incident_json(make_incident(track=t, started_at=T0 + t)), "event": "opened"}
        for t in range(3)
    ]
    digest = composer(tmp_path).compose(
        item("digest", items=entries, reasons=["rate_limit"], incident=None)
    )
    assert digest.subject == "3 safewatch alerts (night)"
    lines = digest.text.splitlines()
    assert sum("hardhat-required on Yard camera (opened)" in line for line in lines) == 3
    assert "rate limit" in lines[-1]


def test_webhook_signature_verifies_and_refuses_tampering_and_replays() -> None:
    body = b'{"event":"opened"}'
    timestamp = str(int(T0))
    signature = sign(SECRET, timestamp, body)
    assert verify_signature(SECRET, timestamp, body, signature, now=T0 + 10)
    assert not verify_signature(SECRET, timestamp, body + b" ", signature, now=T0 + 10)
    assert not verify_signature(b"other", timestamp, body, signature, now=T0 + 10)
    assert not verify_signature(SECRET, str(int(T0) + 1), body, signature, now=T0 + 10)
    assert not verify_signature(SECRET, timestamp, body, signature, now=T0 + 301)  # replay
    assert not verify_signature(SECRET, "yesterday", body, signature, now=T0)
    # a header with characters beyond ASCII is a wrong signature, not a TypeError
    assert not verify_signature(SECRET, timestamp, body, "sha256=é" + signature[8:], now=T0)
    assert not verify_signature(SECRET, timestamp, body, "sha256=\ud800", now=T0)


def test_webhook_body_is_versioned_json(message: AlertMessage) -> None:
    body = webhook_body(message)
    assert json.loads(json.dumps(body)) == body
    assert (body["version"], body["key"], body["event"]) == (1, message.key, "opened")
    assert body["incident"]["camera_id"] == "yard"


def test_slack_blocks(message: AlertMessage) -> None:
    payload = slack_payload(message)
    assert payload["text"] == message.subject
    kinds = [block["type"] for block in payload["blocks"]]
    assert kinds == ["header", "section", "section", "actions", "context"]
    fields = payload["blocks"][2]["fields"]
    assert {"type": "mrkdwn", "text": "*Camera*\nYard camera"} in fields
    assert payload["blocks"][3]["elements"][0]["url"] == message.link
    assert message.key in payload["blocks"][4]["elements"][0]["text"]
    assert escape("a <b> & c") == "a &lt;b&gt; &amp; c"


def test_teams_adaptive_card(message: AlertMessage) -> None:
    payload = teams_payload(message)
    (attachment,) = payload["attachments"]
    card = attachment["content"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == message.subject
    assert card["body"][0]["color"] == "Attention"  # high severity
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Rule"] == "hardhat-required"
    assert card["actions"][0] == {
        "type": "Action.OpenUrl",
        "title": "Open incident",
        "url": message.link,
    }


def test_email_message_id_is_the_idempotency_key(message: AlertMessage) -> None:
    config = EmailChannelConfig.model_validate(
        {
            "type": "email",
            "host": "smtp",
            "from": "safewatch <alerts@plant.example>",
            "to": ["a@plant.example", "b@plant.example"],
        }
    )
    mail = build_email(message, config)
    assert mail["Message-ID"] == f"<{message.key}@plant.example>"
    assert mail["X-Safewatch-Idempotency-Key"] == message.key
    assert mail["References"] == f"<incident-{message.incident['id']}@plant.example>"  # type: ignore[index]
    assert mail["To"] == "a@plant.example, b@plant.example"
    (attachment,) = mail.iter_attachments()
    assert attachment.get_filename() == "abc.jpg"
    assert attachment.get_content() == b"\xff\xd8jpeg"
    assert message.link is not None and message.link in mail.get_body().get_content()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "expected"), [("yard", "yard"), ("a/b", "a_b"), ("x#+ y", "x___y"), ("", "_")]
)
def test_topic_parts_are_safe(value: str, expected: str) -> None:
    assert topic_part(value) == expected
