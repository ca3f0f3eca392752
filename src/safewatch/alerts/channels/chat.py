"""What chat messages show besides the text: a few facts, picked per event."""

from __future__ import annotations

import json
from typing import Any

from safewatch.alerts.channels.http import post_json
from safewatch.alerts.message import AlertMessage

__all__ = ["facts", "host_only", "post_card", "receiver_name"]


def facts(message: AlertMessage) -> list[tuple[str, str]]:
    """``(title, value)`` pairs for a chat card; empty values are left out."""
    if message.event == "digest":
        pairs = [("Alerts", message.fields.get("count", "")), ("Route", message.route_id)]
    elif message.event == "test":
        pairs = [("Route", message.route_id), ("Site", message.site)]
    elif message.event == "witness":
        f = message.fields
        pairs = [("Chain entry", f.get("seq", "")), ("Seen", f.get("time", ""))]
    else:
        f = message.fields
        pairs = [
            ("Camera", f.get("camera_name", "")),
            ("Rule", f.get("rule", "")),
            ("Severity", f.get("severity", "")),
            ("Started", f.get("started_at", "")),
            ("Confidence", f.get("peak_confidence", "")),
        ]
        if message.event == "closed":
            pairs.append(("Duration", f.get("duration", "")))
        if message.event == "escalation":
            pairs.append(("Unacknowledged for", f.get("waited", "")))
        if f.get("zone"):
            pairs.append(("Zone", f["zone"]))
    return [(title, value) for title, value in pairs if value]


def host_only(url: str) -> str:
    """A chat webhook's URL as errors show it: scheme and host (the path is the credential)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/***"


def receiver_name(kind: str, name: str, url: str) -> str:
    """How to name a chat webhook in errors: its host only (the path is the credential)."""
    return f"{kind} {name} ({host_only(url)})"


def post_card(
    url: str, payload: dict[str, Any], message: AlertMessage, *, timeout: float, shown: str
) -> str:
    """POST a chat card (Slack, Teams) with the alert's idempotency key; errors name the
    webhook by its host only (the rest of a chat webhook URL is its secret)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Idempotency-Key": message.key}
    return post_json(url, body, headers, timeout=timeout, shown=shown, show_url=host_only)
