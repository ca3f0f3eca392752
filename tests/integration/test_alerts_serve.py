"""``safewatch serve`` with alerts: incidents found live reach a webhook at once (not at the next
poll), each signed, and the ones closed at shutdown are announced before the process exits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from serve_support import write_site

from alert_servers import WebhookReceiver, wait_until
from assets import asset
from safewatch.config.loader import load_site
from safewatch.runtime.service import RuntimeService, ServeOptions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_serve_announces_live_incidents_and_their_end_at_shutdown(tmp_path: Path) -> None:
    video = asset("video/construction_cctv_640x352_24s.mp4")
    receiver = WebhookReceiver(b"serve-secret").start()
    alerts = {
        "channels": {
            "hook": {"type": "webhook", "url": f"{receiver.url}/in", "secret": "serve-secret"}
        },
        "routes": [{"id": "all", "channels": ["hook"], "events": ["opened", "closed"]}],
        "poll_interval": "30s",  # so an alert within seconds can only come from the wake-up
    }
    path = write_site(tmp_path, {"yard": str(video)}, extra={"alerts": alerts})
    site = yaml.safe_load(path.read_text())
    site["cameras"]["yard"]["loop"] = True
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    service = RuntimeService(load_site(path), ServeOptions(rules=tmp_path / "rules", http=False))
    service.start()
    try:
        assert wait_until(receiver.accepted, 60, 0.05), "no alert while serving"
        first = receiver.accepted()[0]
        body = first.json()
        assert body["event"] == "opened" and body["incident"]["camera_id"] == "yard"
        # From the incident's row being written to the receiver: the wake-up, not a 30 s poll.
        assert first.received_at - body["created_at"] < 5.0
    finally:
        stopped = time.monotonic()
        report = service.stop()
        receiver.stop()
    assert time.monotonic() - stopped < 30
    events = {(r.json()["incident"]["id"], r.json()["event"]) for r in receiver.accepted()}
    assert all(r.signature_ok for r in receiver.all())
    opened = {incident for incident, event in events if event == "opened"}
    closed = {incident for incident, event in events if event == "closed"}
    assert opened and opened == closed, "every announced incident is announced closed"
    assert {change.incident.id for change in report.closed} <= closed
