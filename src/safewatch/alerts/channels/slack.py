"""Slack incoming webhook: a Block Kit message (header, text, facts, a button to the incident).

The webhook URL is the credential, so errors name only its host. Slack does not de-duplicate;
the idempotency key is shown in the message's context line so people can tell a repeat.
"""

from __future__ import annotations

from typing import Any

from safewatch.alerts.channels.chat import facts, post_card, receiver_name
from safewatch.alerts.message import AlertMessage
from safewatch.config.alerts import SlackChannelConfig

__all__ = ["SlackChannel", "escape", "slack_payload"]


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: AlertMessage) -> dict[str, Any]:
    """The webhook body for ``message`` (``text`` is the notification fallback)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": escape(message.text)[:3000]}},
    ]
    pairs = facts(message)[:10]
    if pairs:
        fields = [
            {"type": "mrkdwn", "text": f"*{escape(title)}*\n{escape(value)}"[:2000]}
            for title, value in pairs
        ]
        blocks.append({"type": "section", "fields": fields})
    if message.link:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Open incident"},
            "url": message.link,
        }
        blocks.append({"type": "actions", "elements": [button]})
    context = f"safewatch · {escape(message.site)} · {message.event} · key `{message.key}`"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": message.subject, "blocks": blocks}


class SlackChannel:
    """Posts each alert to one Slack incoming webhook."""

    kind = "slack"
    needs_evidence = False
    needs_state = False

    def __init__(self, name: str, config: SlackChannelConfig) -> None:
        self.name = name
        self._config = config
        self._url = config.url.get_secret_value()
        self._shown = receiver_name("slack", name, self._url)

    def send(self, message: AlertMessage) -> str:
        """POST the Block Kit message."""
        return post_card(
            self._url,
            slack_payload(message),
            message,
            timeout=self._config.timeout,
            shown=self._shown,
        )

    def close(self) -> None:
        """Nothing to release."""
