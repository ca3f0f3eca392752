"""Fault test: every receiver goes down while incidents keep coming, and comes back.

The SMTP server, the webhook receiver and the MQTT broker process are stopped (connections
refused) for ``SAFEWATCH_ALERT_OUTAGE_S`` seconds (3 in CI; run it by hand with 60, see
docs/alerts.md) while an incident opens every 0.1 s and closes 0.3 s later. After they are
started again every alert must arrive: nothing is lost, nothing is left dead, and a duplicate only
ever repeats an alert with its own idempotency key. The retry cap is
``SAFEWATCH_ALERT_MAX_DELAY_S`` (1 s here; the default is 5 minutes) after a first delay of
``SAFEWATCH_ALERT_INITIAL_S`` (0.2 s here; default 2 s): the cap bounds how long after the
recovery the backlog takes to leave.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from alerts_rig import AlertRig
from sqlalchemy import text

from alert_servers import MqttRecorder, mosquitto_unavailable, wait_until

OUTAGE = float(os.environ.get("SAFEWATCH_ALERT_OUTAGE_S", "3"))
MAX_DELAY = float(os.environ.get("SAFEWATCH_ALERT_MAX_DELAY_S", "1"))
INITIAL = float(os.environ.get("SAFEWATCH_ALERT_INITIAL_S", "0.2"))
RATE = 0.1
"""Seconds between two incidents."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(int(OUTAGE * 2 + MAX_DELAY * 4 + 120)),
    pytest.mark.skipif(mosquitto_unavailable() is not None, reason=str(mosquitto_unavailable())),
]


class Generator(threading.Thread):
    """Opens an incident every RATE seconds and closes each 0.3 s later."""

    def __init__(self, rig: AlertRig) -> None:
        super().__init__(daemon=True)
        self.rig = rig
        self.stop = threading.Event()
        self.opened = 0

    def run(self) -> None:
        pending: list[tuple[float, Any]] = []
        track = 0
        while not self.stop.is_set():
            now = time.time()
            track += 1
            pending.append((now + 0.3, self.rig.incident(track, still=track % 5 == 0)))
            self.opened += 1
            while pending and pending[0][0] <= now:
                self.rig.close_incident(pending.pop(0)[1], after=0.3)
            self.stop.wait(RATE)
        for _, incident in pending:
            self.rig.close_incident(incident, after=0.3)


def mail_alert(message: Any) -> tuple[str, str]:
    """(key, incident id + event) of a received email, from its headers."""
    key = str(message["X-Safewatch-Idempotency-Key"])
    assert str(message["Message-ID"]).startswith(f"<{key}@")
    incident = str(message["References"]).strip("<>").split("@")[0].removeprefix("incident-")
    return key, f"{incident}:{message['X-Safewatch-Event']}"


def check(name: str, expected: dict[str, str], received: Iterable[tuple[str, str]]) -> dict:
    """Every expected key arrived; repeats carry their own key and content.

    Args:
        name: Channel, for messages.
        expected: Idempotency key -> the incident id + event it announces.
        received: (key, incident id + event) of everything the receiver got.
    """
    got = list(received)
    counts = collections.Counter(key for key, _ in got)
    missing = set(expected) - set(counts)
    assert not missing, f"{name}: {len(missing)} of {len(expected)} alerts never arrived"
    assert set(counts) <= set(expected), f"{name}: alerts nobody queued"
    for key, what in got:
        assert what == expected[key], f"{name}: key {key} carried a different alert"
    duplicates = sum(n - 1 for n in counts.values())
    return {"alerts": len(expected), "received": len(got), "duplicates": duplicates}


def test_receivers_down_get_every_alert_after_they_recover(tmp_path: Path) -> None:
    retry = {"max_attempts": 1000, "initial": INITIAL, "max_delay": MAX_DELAY, "jitter": 0.5}
    rig = AlertRig(tmp_path, ["mail", "hook", "mqtt"], retry=retry)
    assert rig.smtp is not None and rig.hook is not None and rig.broker is not None
    rig.broker.stop()  # again, persistent, so the subscriber's session outlives the outage
    rig.broker.persistent = True
    rig.broker.start()
    subscriber = MqttRecorder(rig.broker.port, ("safewatch/+/+/event",), session="fault-test")
    generator = Generator(rig)
    try:
        generator.start()
        time.sleep(1.0)
        down_at = time.time()
        rig.smtp.stop()
        rig.hook.stop()
        rig.broker.stop()
        time.sleep(OUTAGE)
        up_at = time.time()
        rig.broker.start()
        rig.hook.start()
        rig.smtp.start()
        time.sleep(1.0)
        generator.stop.set()
        generator.join(10)

        outbox = rig.service.outbox

        def settled() -> bool:
            counts = outbox.counts()
            return not any(counts.get(s) for s in ("pending", "sending", "held"))

        assert wait_until(settled, MAX_DELAY * 3 + 60, 0.1), outbox.counts()
        counts = outbox.counts()
        assert set(counts) == {"delivered"}, counts
        rows = outbox.list(None, limit=100_000)

        def expected(channel: str) -> dict[str, str]:
            return {r.key: f"{r.incident_id}:{r.event}" for r in rows if r.channel == channel}

        hooks = [
            (r.headers["idempotency-key"], f"{r.json()['incident']['id']}:{r.json()['event']}")
            for r in rig.hook.accepted()
        ]
        assert all(r.signature_ok for r in rig.hook.all())
        mails = [mail_alert(m.message) for m in rig.smtp.received()]
        assert wait_until(lambda: len(subscriber.all()) >= len(expected("mqtt")), 15)
        mqtt = [
            (
                m.user_properties["idempotency-key"],
                f"{m.json()['incident']['id']}:{m.json()['event']}",
            )
            for m in subscriber.all()
        ]
        figures = {
            "outage_s": OUTAGE,
            "initial_s": INITIAL,
            "max_delay_s": MAX_DELAY,
            "incidents": generator.opened,
            "queued_during_outage": sum(1 for r in rows if down_at <= r.created_at < up_at),
            "max_attempts": max(r.attempts for r in rows),
            "webhook": check("webhook", expected("hook"), hooks),
            "email": check("email", expected("mail"), mails),
            "mqtt": check("mqtt", expected("mqtt"), mqtt),
        }
        last = max(r.delivered_at or 0 for r in rows)
        figures["last_delivery_after_recovery_s"] = round(last - up_at, 2)
        # Per channel too: email (a TLS handshake per message) is throughput-bound after an
        # outage, the webhook and MQTT are bound by how long their retries wait.
        figures["last_after_recovery_by_channel_s"] = {
            channel: round(
                max(r.delivered_at or 0 for r in rows if r.channel == channel) - up_at, 2
            )
            for channel in ("mail", "hook", "mqtt")
        }
        print(f"\nalert fault test figures: {figures}")
        assert figures["queued_during_outage"] > 0
        assert figures["max_attempts"] > 1  # the outage really made deliveries fail
        with rig.storage.engine.connect() as connection:  # one timeline entry per delivery
            sent = connection.execute(
                text("SELECT count(*) FROM chain_entries WHERE kind = 'alert.sent'")
            ).scalar()
        assert sent == len(rows)
    finally:
        generator.stop.set()
        subscriber.close()
        rig.close()
