"""Alerts: routed, rate-limited, retried deliveries of incident changes (see docs/alerts.md).

Incident change -> :class:`OutboxWriter` (rows in the same transaction) -> :class:`Dispatcher`
(claims, sends through a channel, retries with backoff, dead letters) -> email, webhook, Slack,
Teams, MQTT.
"""

from safewatch.alerts.channels import Channel, DeliveryError, build_channel
from safewatch.alerts.dispatcher import Delivery, Dispatcher, DispatchPlan
from safewatch.alerts.message import AlertMessage, Composer
from safewatch.alerts.outbox import Outbox
from safewatch.alerts.routing import Router
from safewatch.alerts.rows import OutboxItem, idempotency_key
from safewatch.alerts.service import AlertService, build_plan, start_alerts
from safewatch.alerts.writer import OutboxWriter

__all__ = [
    "AlertMessage",
    "AlertService",
    "Channel",
    "Composer",
    "Delivery",
    "DeliveryError",
    "DispatchPlan",
    "Dispatcher",
    "Outbox",
    "OutboxItem",
    "OutboxWriter",
    "Router",
    "build_channel",
    "build_plan",
    "idempotency_key",
    "start_alerts",
]
