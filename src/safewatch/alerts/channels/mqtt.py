"""MQTT: an event message per alert and a retained state per camera and rule (Home Assistant).

Topics, with ``P`` the channel's ``topic_prefix`` and camera and rule ids made topic-safe:

* ``P/CAMERA/RULE/event``: one JSON message per alert (opened, updated, closed, escalation), not
  retained, for automations that react to each violation;
* ``P/CAMERA/RULE/state``: retained JSON ``{"state": "ON" | "OFF", "open_incidents": n, ...}``,
  ON while an incident of that rule is open on that camera. Counted from the database when the
  alert is sent, so it is right even when alerts are retried out of order. Published with every
  incident alert, and alone (event ``state``) for an open or close that a covering route sends
  no alert of (its events, schedule, rate limit or digest), see
  :mod:`safewatch.alerts.writer`;
* ``P/digest/ROUTE`` and ``P/test/ROUTE``: digests and test alerts;
* ``homeassistant/binary_sensor/safewatch_CAMERA_RULE/config``: retained discovery config
  (``discovery: true``), so Home Assistant shows a "safety" binary sensor per camera and rule.

Every message carries the idempotency key twice: in the JSON body (``key``) for MQTT 3 clients,
and as the MQTT 5 user property ``idempotency-key``. Publishing waits for the broker's
acknowledgement (QoS 1 and 2); a broker that is down or does not acknowledge in time is a
transient failure, and the client is dropped so a half-sent message is never re-sent by the
client library behind the outbox's back (the outbox retries, with the same key).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from safewatch.alerts.channels.base import DeliveryError
from safewatch.alerts.message import AlertMessage
from safewatch.config.alerts import MqttChannelConfig

__all__ = ["MqttChannel", "topic_part"]

_UNSAFE = re.compile(r"[/#+\s\x00]")
_OBJECT_ID = re.compile(r"[^A-Za-z0-9_-]")
_INCIDENT_EVENTS = ("opened", "updated", "closed", "escalation", "state")


def topic_part(value: str) -> str:
    """``value`` usable as one topic level (no ``/``, wildcards or spaces)."""
    return _UNSAFE.sub("_", value) or "_"


class MqttChannel:
    """Publishes alerts to one MQTT broker over one lazily opened connection.

    Args:
        name: Channel key.
        config: Broker and topics.
    """

    kind = "mqtt"
    needs_evidence = False
    needs_state = True

    def __init__(self, name: str, config: MqttChannelConfig) -> None:
        self.name = name
        self._config = config
        self._shown = f"mqtt {name} (mqtt://{config.host}:{config.port})"
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._refusal: str | None = None
        self._announced: set[tuple[str, str]] = set()

    # -- connection ---------------------------------------------------------------------------

    def _on_connect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
        self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def _connect(self) -> mqtt.Client:
        config = self._config
        client_id = config.client_id or f"safewatch-{uuid.uuid4().hex[:10]}"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        client.connect_timeout = config.timeout
        if config.username is not None:
            password = None if config.password is None else config.password.get_secret_value()
            client.username_pw_set(config.username, password)
        if config.tls:
            ca = None if config.ca_file is None else str(config.ca_file)
            client.tls_set(ca_certs=ca)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._connected.clear()
        self._refusal = None
        try:
            client.connect(config.host, config.port, keepalive=60)
        except OSError as error:
            raise DeliveryError(f"cannot connect to {self._shown}: {error}") from None
        client.loop_start()
        if not self._connected.wait(config.timeout):
            self._drop(client)
            raise DeliveryError(f"{self._shown} did not accept the connection in time")
        if self._refusal is not None:
            self._drop(client)
            permanent = "authori" in self._refusal.lower() or "password" in self._refusal.lower()
            raise DeliveryError(
                f"{self._shown} refused the connection: {self._refusal}", permanent=permanent
            )
        self._announced.clear()  # discovery configs are re-sent once per connection
        return client

    @staticmethod
    def _drop(client: mqtt.Client) -> None:
        try:
            client.disconnect()
        finally:
            client.loop_stop()

    # -- publishing ---------------------------------------------------------------------------

    def _publish(
        self, client: mqtt.Client, topic: str, payload: dict[str, Any], key: str, retain: bool
    ) -> None:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.UserProperty = [("idempotency-key", key)]
        properties.ContentType = "application/json"
        body = json.dumps(payload, separators=(",", ":"))
        info = client.publish(
            topic, body, qos=self._config.qos, retain=retain, properties=properties
        )
        try:
            info.wait_for_publish(self._config.timeout)
        except (RuntimeError, ValueError) as error:
            raise DeliveryError(f"{self._shown}: cannot publish to {topic}: {error}") from None
        if not info.is_published():
            raise DeliveryError(f"{self._shown} did not acknowledge {topic} in time")

    def _topics(self, camera: str, rule: str) -> tuple[str, str]:
        base = f"{self._config.topic_prefix}/{topic_part(camera)}/{topic_part(rule)}"
        return f"{base}/event", f"{base}/state"

    def _discovery(
        self, client: mqtt.Client, message: AlertMessage, camera: str, rule: str, state: str
    ) -> None:
        config = self._config
        if not config.discovery or (camera, rule) in self._announced:
            return
        object_id = _OBJECT_ID.sub("_", f"safewatch_{camera}_{rule}")
        camera_name = message.fields.get("camera_name") or camera
        document = {
            "name": f"{rule}",
            "unique_id": object_id,
            "object_id": object_id,
            "state_topic": state,
            "value_template": "{{ value_json.state }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "safety",
            "json_attributes_topic": state,
            "device": {
                "identifiers": [_OBJECT_ID.sub("_", f"safewatch_{message.site}_{camera}")],
                "name": f"{camera_name} (safewatch)",
                "manufacturer": "safewatch",
            },
        }
        topic = f"{config.discovery_prefix}/binary_sensor/{object_id}/config"
        self._publish(client, topic, document, message.key, retain=True)
        self._announced.add((camera, rule))

    def _messages(self, client: mqtt.Client, message: AlertMessage) -> int:
        prefix = self._config.topic_prefix
        body: dict[str, Any] = {
            "key": message.key,
            "event": message.event,
            "route": message.route_id,
            "site": message.site,
            "subject": message.subject,
            "text": message.text,
            "link": message.link,
            "incident": message.incident,
            "created_at": message.created_at,
        }
        incident = message.incident or {}
        camera, rule = str(incident.get("camera_id", "")), str(incident.get("rule_id", ""))
        if message.event not in _INCIDENT_EVENTS or not camera or not rule:
            group = message.event if message.event in ("test", "witness") else "digest"
            body["witness"] = message.witness
            body["items"] = list(message.items)
            topic = f"{prefix}/{group}/{topic_part(message.route_id)}"
            self._publish(client, topic, body, message.key, retain=False)
            return 1
        event_topic, state_topic = self._topics(camera, rule)
        # "state": only the retained state (an open or close no single alert to us carries).
        published = 0 if message.event == "state" else 1
        if published:
            self._publish(client, event_topic, body, message.key, retain=False)
        if message.open_count is None:
            return published
        self._discovery(client, message, camera, rule, state_topic)
        last_event = message.event
        if last_event == "state":  # the change it stands for
            last_event = "opened" if incident.get("ended_at") is None else "closed"
        state = {
            "state": "ON" if message.open_count > 0 else "OFF",
            "open_incidents": message.open_count,
            "incident_id": incident.get("id"),
            "severity": incident.get("severity"),
            "last_event": last_event,
            "key": message.key,
            "updated_at": time.time(),
        }
        self._publish(client, state_topic, state, message.key, retain=True)
        return published + 1

    def send(self, message: AlertMessage) -> str:
        """Publish the alert's event (and state) messages; returns how many were acknowledged."""
        with self._lock:
            client = self._client
            if client is None or not self._connected.is_set():
                if client is not None:
                    self._drop(client)
                self._client = None
                client = self._client = self._connect()
            try:
                count = self._messages(client, message)
            except DeliveryError:
                self._client = None
                self._drop(client)
                raise
        return f"published {count} message(s)"

    def close(self) -> None:
        """Disconnect from the broker."""
        with self._lock:
            if self._client is not None:
                self._drop(self._client)
                self._client = None
