"""``safewatch alerts test | list | retry`` as an operator runs them."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from alerts_support import make_incident

from alert_servers import WebhookReceiver, free_port
from cli_support import invoke
from safewatch.alerts.outbox import Outbox
from safewatch.alerts.rows import OutboxItem
from safewatch.config.loader import load_site
from safewatch.errors import ConfigError
from safewatch.incidents.site_storage import open_site_storage


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(b"cli-secret").start()
    yield server
    server.stop()


@pytest.fixture
def config(tmp_path: Path, receiver: WebhookReceiver) -> Path:
    site = {
        "version": 1,
        "site": {"name": "CLI yard", "timezone": "UTC"},
        "models": {"coco": {"path": "x.onnx"}},
        "cameras": {"yard": {"source": "a.mp4", "models": ["coco"]}},
        "storage": {"database": "sqlite:///data/site.db", "evidence_dir": "data/evidence"},
        "alerts": {
            "channels": {
                "hook": {"type": "webhook", "url": f"{receiver.url}/in", "secret": "cli-secret"},
                "down": {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/x"},
            },
            "routes": [
                {"id": "ops", "channels": ["hook"], "escalate_after": "5m", "escalate_to": ["down"]}
            ],
        },
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def test_alerts_test_sends_through_every_channel_and_says_why_one_failed(
    config: Path, receiver: WebhookReceiver
) -> None:
    code, output = invoke("alerts", "test", "ops", "--config", str(config))
    assert code == 0, output
    assert "ok   hook (webhook): HTTP 200" in output
    (request,) = receiver.accepted()
    assert request.signature_ok is True
    body = request.json()
    assert (body["event"], body["route"]) == ("test", "ops")
    assert request.headers["idempotency-key"] == body["key"]

    code, output = invoke("alerts", "test", "ops", "--escalation", "--config", str(config))
    assert code == 1
    assert "FAIL down (webhook, transient): cannot reach webhook down" in output
    assert "Connection refused" in output

    with pytest.raises(ConfigError, match=r"no alert route 'nope' .* \(routes: ops\)"):
        invoke("alerts", "test", "nope", "--config", str(config))


def test_alerts_test_reports_each_channel_even_after_an_unexpected_error(
    config: Path, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel that raises something other than a DeliveryError (a bug, a URL that slipped
    past the checks) is one FAIL line, with secrets masked; the channels after it are tried."""
    from safewatch.alerts.channels.slack import SlackChannel

    def broken(self: SlackChannel, message: object) -> str:
        raise RuntimeError("unexpected trouble with chat-token-SECRET3")

    monkeypatch.setattr(SlackChannel, "send", broken)
    monkeypatch.setenv("CHAT_TOKEN", "chat-token-SECRET3")
    document = yaml.safe_load(config.read_text())
    channels = document["alerts"]["channels"]
    channels["chat"] = {"type": "slack", "url": f"{receiver.url}/services/${{CHAT_TOKEN}}"}
    document["alerts"]["routes"][0]["channels"] = ["chat", "hook"]
    config.write_text(yaml.safe_dump(document))

    code, output = invoke("alerts", "test", "ops", "--escalation", "--config", str(config))
    assert code == 1
    lines = output.splitlines()
    assert "FAIL chat (slack, unexpected error): RuntimeError: unexpected trouble with ***" in lines
    assert any(line.startswith("ok   hook (webhook): HTTP 200") for line in lines), output
    assert any(line.startswith("FAIL down (webhook, transient)") for line in lines), output
    assert "SECRET3" not in output and "Traceback" not in output

    channels["down"]["url"] = "http://127.0.0.1:abc/x"  # refused when the site file loads
    config.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match="port that is not a number"):
        invoke("alerts", "test", "ops", "--config", str(config))


def test_a_receivers_answer_is_printed_as_text_masked_and_the_other_channels_still_run(
    config: Path, receiver: WebhookReceiver
) -> None:
    """A 400 whose body held "[/docs]" was a Rich MarkupError traceback, and the channels after
    it were never tried; the answer (which may echo the signing secret) was printed unmasked."""
    receiver.status = 400
    receiver.answer = b"bad payload, see [/docs] (signed with cli-secret?)"
    code, output = invoke("alerts", "test", "ops", "--escalation", "--config", str(config))
    assert code == 1
    lines = output.splitlines()
    assert any(
        line.startswith("FAIL hook (webhook, permanent):")
        and line.endswith(
            "answered HTTP 400 Bad Request: bad payload, see [/docs] (signed with ***?)"
        )
        for line in lines
    ), output
    assert any(line.startswith("FAIL down (webhook, transient)") for line in lines), output
    assert "cli-secret" not in output


def dead_and_pending(config: Path, error: str) -> tuple[OutboxItem, OutboxItem]:
    """One incident's deliveries: the webhook's failed for good with ``error`` (dead), the
    escalation due in five minutes (pending, not claimed)."""
    site = load_site(config)
    storage = open_site_storage(site)
    try:
        from safewatch.alerts.service import AlertService

        service = AlertService(site, storage.repository)
        service.start()
        service.dispatcher.stop()
        storage.repository.upsert(make_incident())
        outbox = Outbox(storage.engine)
        now = time.time() + 1  # the escalation is due in five minutes: not claimed
        (dead,) = outbox.claim("cli", now, 10, 60)
        assert dead.channel == "hook"
        outbox.failed(
            dead, "cli", now, error, permanent=True, retry=site.config.alerts.retry,
            rng=random.Random(0),
        )  # fmt: skip
        service.close()
        (pending,) = (item for item in outbox.list() if item.status == "pending")
    finally:
        storage.close()
    return dead, pending


def test_alerts_list_shows_dead_letters_and_retry_requeues_them(config: Path) -> None:
    item, _ = dead_and_pending(config, "HTTP 410 Gone: see [/docs]")

    code, output = invoke("alerts", "list", "--config", str(config))
    assert code == 0, output
    assert "outbox: 1 dead, 1 pending" in output
    assert "error: HTTP 410 Gone: see [/docs]" in output and item.id in output
    assert "dead      opened     ops -> hook" in output
    code, output = invoke("alerts", "list", "--status", "delivered", "--config", str(config))
    assert code == 0 and "HTTP 410" not in output

    with pytest.raises(ConfigError, match="--dead"):
        invoke("alerts", "retry", "--config", str(config))
    code, output = invoke("alerts", "retry", "--dead", "--config", str(config))
    assert code == 0 and "requeued 1 dead delivery" in output
    code, output = invoke("alerts", "list", "--config", str(config))
    assert "outbox: 2 pending" in output


def test_alerts_retry_names_ids_it_did_not_requeue(config: Path) -> None:
    """An id that does not exist (a typo) or is not dead was "requeued 0" with exit 0, and ids
    given with --dead were ignored: every dead delivery was requeued."""
    dead, pending = dead_and_pending(config, "HTTP 410 Gone")

    code, output = invoke("alerts", "retry", "nosuchid", pending.id, "--config", str(config))
    assert code == 1 and "requeued 0 dead deliveries" in output
    assert "not requeued: nosuchid (no such delivery)" in output
    assert f"not requeued: {pending.id} (pending, not dead)" in output
    code, output = invoke("alerts", "retry", "nosuchid", "--dead", "--config", str(config))
    assert code == 2 and "not both" in output
    code, output = invoke("alerts", "list", "--config", str(config))
    assert "outbox: 1 dead, 1 pending" in output
    code, output = invoke("alerts", "retry", dead.id, "nosuchid", "--config", str(config))
    assert code == 1 and "requeued 1 dead delivery" in output
    assert "not requeued: nosuchid" in output and f"not requeued: {dead.id}" not in output
    code, output = invoke("alerts", "list", "--config", str(config))
    assert "outbox: 2 pending" in output
