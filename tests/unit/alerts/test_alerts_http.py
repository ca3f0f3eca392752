"""What the HTTP channels (webhook, Slack, Teams) make of a receiver's answer, against a real
HTTP server on loopback: redirects are never followed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from alert_servers import WebhookReceiver
from safewatch.alerts.channels import DeliveryError, build_channel
from safewatch.alerts.message import AlertMessage
from safewatch.config.alerts import SlackChannelConfig, WebhookChannelConfig


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def probe() -> AlertMessage:
    return AlertMessage("k" * 32, "test", "ops", "test alert", "text", {}, None, site="Yard")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_permanent_failure_naming_the_redacted_location(
    receiver: WebhookReceiver, status: int
) -> None:
    """urllib turns a redirected POST into a GET without the body; a 200 to that GET must not
    count as a delivery (the receiver never saw the alert)."""
    receiver.status = status
    receiver.location = "/new-home?token=newtok-SECRET2&v=1"
    config = WebhookChannelConfig(type="webhook", url=f"{receiver.url}/old?token=oldtok-SECRET1")
    channel = build_channel("hook", config)
    with pytest.raises(DeliveryError) as caught:
        channel.send(probe())
    error = caught.value
    assert error.permanent
    text = str(error)
    assert f"answered HTTP {status}" in text
    assert f"to {receiver.url}/new-home?token=***&v=1" in text
    assert "SECRET" not in text
    assert [r.method for r in receiver.all()] == ["POST"]  # the redirect was not followed


def test_a_chat_webhook_redirect_shows_the_host_only(receiver: WebhookReceiver) -> None:
    receiver.status = 301
    receiver.location = "/services/T0/B0/NEWSECRET"
    config = SlackChannelConfig(type="slack", url=f"{receiver.url}/services/T0/B0/OLDSECRET")
    with pytest.raises(DeliveryError, match=r"HTTP 301 .* to http://127\.0\.0\.1:\d+/\*\*\*;") as c:
        build_channel("chat", config).send(probe())
    assert c.value.permanent and "SECRET" not in str(c.value)
    assert [r.method for r in receiver.all()] == ["POST"]


def test_a_url_that_slipped_past_the_checks_is_a_permanent_failure() -> None:
    """The site file refuses such URLs; one built without its checks (http.client.InvalidURL at
    send time) is a dead letter, not a traceback on every retry."""
    config = WebhookChannelConfig.model_construct(
        type="webhook", url=SecretStr("http://127.0.0.1:abc/x?token=tok-SECRET4"), timeout=5.0
    )
    config = config.model_copy(update={"secret": None, "headers": {}})
    with pytest.raises(DeliveryError, match=r"the URL cannot be sent \(InvalidURL\)") as caught:
        build_channel("hook", config).send(probe())
    assert caught.value.permanent and "SECRET4" not in str(caught.value)


def test_a_receiver_that_does_not_answer_in_http_is_a_transient_failure() -> None:
    """A TLS port spoken to in plain HTTP, or anything else that is no HTTP status line:
    http.client.BadStatusLine reached the dispatcher as an unexpected error (a traceback on
    every attempt). It is a delivery failure to try again, as a receiver that is down."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]

    def answer_garbage() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        config = WebhookChannelConfig(type="webhook", url=f"http://127.0.0.1:{port}/hook")
        with pytest.raises(DeliveryError, match="did not answer in HTTP") as caught:
            build_channel("hook", config).send(probe())
        assert not caught.value.permanent
    finally:
        thread.join(10)
        server.close()
