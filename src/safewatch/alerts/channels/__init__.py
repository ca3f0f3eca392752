"""Alert channels: email (SMTP), generic webhook, Slack, Microsoft Teams, MQTT."""

from __future__ import annotations

from pathlib import Path

from safewatch.alerts.channels.base import Channel, DeliveryError
from safewatch.config.alerts import (
    ChannelConfig,
    EmailChannelConfig,
    MqttChannelConfig,
    SlackChannelConfig,
    TeamsChannelConfig,
    WebhookChannelConfig,
)

__all__ = ["Channel", "DeliveryError", "build_channel"]


def build_channel(name: str, config: ChannelConfig, base_dir: Path | None = None) -> Channel:
    """The channel for one ``alerts.channels`` entry (nothing connects until the first send).

    Args:
        name: The channel's key.
        config: Its settings.
        base_dir: The site file's folder: relative ``ca_file`` paths are relative to it.
    """
    if isinstance(config, EmailChannelConfig | MqttChannelConfig) and config.ca_file is not None:
        ca_file = config.ca_file.expanduser()
        if base_dir is not None and not ca_file.is_absolute():
            ca_file = base_dir / ca_file
        config = config.model_copy(update={"ca_file": ca_file})
    if isinstance(config, EmailChannelConfig):
        from safewatch.alerts.channels.email import EmailChannel

        return EmailChannel(name, config)
    if isinstance(config, WebhookChannelConfig):
        from safewatch.alerts.channels.webhook import WebhookChannel

        return WebhookChannel(name, config)
    if isinstance(config, SlackChannelConfig):
        from safewatch.alerts.channels.slack import SlackChannel

        return SlackChannel(name, config)
    if isinstance(config, TeamsChannelConfig):
        from safewatch.alerts.channels.teams import TeamsChannel

        return TeamsChannel(name, config)
    if isinstance(config, MqttChannelConfig):
        from safewatch.alerts.channels.mqtt import MqttChannel

        return MqttChannel(name, config)
    raise TypeError(f"unknown channel config {type(config).__name__}")  # pragma: no cover
