"""Generic webhook: a JSON POST per alert, signed with HMAC-SHA256 over a timestamp and the body.

Headers of every request:

* ``Idempotency-Key``: the same for every retry of one alert; receivers store it and ignore a
  repeat.
* ``X-Safewatch-Event``: ``opened``, ``updated``, ``closed``, ``escalation``, ``digest``, ``test``.
* ``X-Safewatch-Timestamp``: Unix seconds when this attempt was signed.
* ``X-Safewatch-Signature``: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"`` with the
  channel's secret (only when a secret is configured).

Signing the timestamp with the body lets a receiver refuse replays: a captured request re-sent
later carries an old timestamp, and changing it breaks the signature. :func:`verify_signature` is
the receiver's side, for Python receivers (constant-time comparison, five-minute tolerance).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from safewatch.alerts.channels.http import post_json
from safewatch.alerts.message import AlertMessage
from safewatch.config.alerts import WebhookChannelConfig
from safewatch.ingest.redact import redact_url

__all__ = ["WebhookChannel", "sign", "verify_signature", "webhook_body"]

SIGNATURE_TOLERANCE = 300.0
"""Seconds a signed timestamp stays acceptable (clock skew plus delivery time)."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = SIGNATURE_TOLERANCE,
) -> bool:
    """Whether a request is authentic and fresh (the receiver's check).

    Args:
        secret: The shared secret.
        timestamp: The ``X-Safewatch-Timestamp`` header.
        body: The raw request body, exactly as received.
        signature: The ``X-Safewatch-Signature`` header.
        now: Current Unix time (default: the clock).
        tolerance: Largest accepted age (and clock skew), seconds.
    """
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    # As bytes: compare_digest refuses str with characters beyond ASCII (TypeError), and a
    # header can carry any; such a signature is simply wrong.
    expected = sign(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass"))


def webhook_body(message: AlertMessage) -> dict[str, Any]:
    """The JSON document a webhook receives (version 1; documented in docs/alerts.md)."""
    return {
        "version": 1,
        "key": message.key,
        "event": message.event,
        "route": message.route_id,
        "site": message.site,
        "subject": message.subject,
        "text": message.text,
        "link": message.link,
        "incident": message.incident,
        "items": list(message.items),
        "created_at": message.created_at,
        "witness": message.witness,
    }


class WebhookChannel:
    """POSTs each alert as JSON to one URL.

    Args:
        name: Channel key.
        config: Its settings.
        clock: Time source for the signed timestamp (tests move it to check replay refusal).
    """

    kind = "webhook"
    needs_evidence = False
    needs_state = False

    def __init__(
        self, name: str, config: WebhookChannelConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.name = name
        self._config = config
        self._url = config.url.get_secret_value()
        self._shown = f"webhook {name} ({redact_url(self._url)})"
        self._secret = None if config.secret is None else config.secret.get_secret_value().encode()
        self._clock = clock

    def send(self, message: AlertMessage) -> str:
        """POST the alert (see the module docstring for the headers)."""
        body = json.dumps(webhook_body(message), separators=(",", ":")).encode()
        timestamp = str(int(self._clock()))
        headers = dict(self._config.headers)
        headers["Idempotency-Key"] = message.key
        headers["X-Safewatch-Event"] = message.event
        headers["X-Safewatch-Timestamp"] = timestamp
        if self._secret is not None:
            headers["X-Safewatch-Signature"] = sign(self._secret, timestamp, body)
        return post_json(self._url, body, headers, timeout=self._config.timeout, shown=self._shown)

    def close(self) -> None:
        """Nothing to release (one connection per request)."""
