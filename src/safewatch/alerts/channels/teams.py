"""Microsoft Teams incoming webhook (Workflows): an Adaptive Card per alert.

Teams' Workflows webhooks take a ``message`` with Adaptive Card attachments (the older Office 365
connector cards are being retired). The card has the subject, the text, a fact set and a button
to the incident; the idempotency key is in a small footer line. The URL is the credential.
"""

from __future__ import annotations

from typing import Any

from safewatch.alerts.channels.chat import facts, post_card, receiver_name
from safewatch.alerts.message import AlertMessage
from safewatch.config.alerts import TeamsChannelConfig

__all__ = ["TeamsChannel", "teams_payload"]

_URGENT = {"high", "critical"}


def teams_payload(message: AlertMessage) -> dict[str, Any]:
    """The webhook body for ``message``."""
    urgent = message.event == "escalation" or message.fields.get("severity") in _URGENT
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": message.subject,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": "Attention" if urgent else "Default",
        },
        {"type": "TextBlock", "text": message.text, "wrap": True},
    ]
    pairs = facts(message)
    if pairs:
        body.append({"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in pairs]})
    body.append(
        {
            "type": "TextBlock",
            "text": f"safewatch · {message.site} · {message.event} · key {message.key}",
            "size": "Small",
            "isSubtle": True,
            "wrap": True,
        }
    )
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if message.link:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open incident", "url": message.link}
        ]
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


class TeamsChannel:
    """Posts each alert to one Teams incoming webhook."""

    kind = "teams"
    needs_evidence = False
    needs_state = False

    def __init__(self, name: str, config: TeamsChannelConfig) -> None:
        self.name = name
        self._config = config
        self._url = config.url.get_secret_value()
        self._shown = receiver_name("teams", name, self._url)

    def send(self, message: AlertMessage) -> str:
        """POST the Adaptive Card."""
        return post_card(
            self._url,
            teams_payload(message),
            message,
            timeout=self._config.timeout,
            shown=self._shown,
        )

    def close(self) -> None:
        """Nothing to release."""
