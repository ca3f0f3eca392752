"""A site whose alerts go to real local receivers, for the alert integration tests and bench.

:class:`AlertRig` starts whichever receivers are asked for (aiosmtpd with STARTTLS and AUTH, a
signature-checking webhook receiver, Slack and Teams stand-ins, mosquitto), writes a site file
whose ``alerts`` block points at them, opens the site's storage and starts its alerts, so a test
only stores incidents and looks at what arrived.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from alert_servers import (
    HangingReceiver,
    MosquittoBroker,
    SmtpServer,
    WebhookReceiver,
    make_tls_files,
)
from safewatch.alerts import AlertService, start_alerts
from safewatch.config.loader import load_site
from safewatch.domain import Incident, Severity, incident_id
from safewatch.incidents.site_storage import SiteStorage, open_site_storage

WEBHOOK_SECRET = "integration-hmac-secret"


class AlertRig:
    """Receivers + a site + its storage and alert service.

    Args:
        folder: Where the site file, database, evidence and certificates go.
        channels: Which receivers to start: ``mail``, ``hook``, ``slack``, ``teams``, ``mqtt``,
            and ``hang`` (a webhook receiver that never answers; its channel waits 120 s).
        retry: The ``alerts.retry`` block.
        route: Extra keys of the single route (all the started channels, opened and closed).
        alerts: Extra keys of the alerts block.
        channel_overrides: Keys to change in a channel's block (wrong password, ...).
        database: The site's database URL (PostgreSQL is migrated here first).
    """

    def __init__(
        self,
        folder: Path,
        channels: Iterable[str],
        *,
        retry: Mapping[str, Any] | None = None,
        route: Mapping[str, Any] | None = None,
        alerts: Mapping[str, Any] | None = None,
        channel_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        database: str = "sqlite:///data/site.db",
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.names = list(channels)
        self.smtp: SmtpServer | None = None
        self.hook: WebhookReceiver | None = None
        self.slack: WebhookReceiver | None = None
        self.teams: WebhookReceiver | None = None
        self.broker: MosquittoBroker | None = None
        self.hang: HangingReceiver | None = None
        blocks: dict[str, dict[str, Any]] = {}
        if "mail" in self.names:
            self.tls = make_tls_files(folder / "tls")
            self.smtp = SmtpServer(self.tls).start()
            blocks["mail"] = {
                "type": "email",
                "host": "127.0.0.1",
                "port": self.smtp.port,
                "security": "starttls",
                "username": self.smtp.username,
                "password": self.smtp.password,
                "ca_file": str(self.tls.ca),
                "from": "safewatch <alerts@plant.example>",
                "to": ["safety@plant.example"],
            }
        if "hook" in self.names:
            self.hook = WebhookReceiver(WEBHOOK_SECRET.encode()).start()
            blocks["hook"] = {
                "type": "webhook",
                "url": f"{self.hook.url}/safewatch",
                "secret": WEBHOOK_SECRET,
            }
        if "slack" in self.names:
            self.slack = WebhookReceiver().start()
            blocks["slack"] = {"type": "slack", "url": f"{self.slack.url}/services/T0/B0/x"}
        if "teams" in self.names:
            self.teams = WebhookReceiver().start()
            blocks["teams"] = {"type": "teams", "url": f"{self.teams.url}/workflows/abc"}
        if "hang" in self.names:
            self.hang = HangingReceiver().start()
            blocks["hang"] = {"type": "webhook", "url": f"{self.hang.url}/in", "timeout": "120s"}
        if "mqtt" in self.names:
            self.broker = MosquittoBroker().start()
            blocks["mqtt"] = {"type": "mqtt", "host": "127.0.0.1", "port": self.broker.port}
        for name, override in (channel_overrides or {}).items():
            blocks[name] = {**blocks[name], **override}
        main_route = {"id": "main", "channels": self.names, "events": ["opened", "closed"]}
        block: dict[str, Any] = {
            "incident_url": "https://safewatch.plant.example/incidents/{incident_id}",
            "channels": blocks,
            "routes": [{**main_route, **(route or {})}],
            "retry": dict(retry or {}),
            "poll_interval": "0.2s",
            **(alerts or {}),
        }
        site = {
            "version": 1,
            "site": {"name": "Integration yard", "timezone": "Europe/Berlin"},
            "models": {"coco": {"path": "x.onnx"}},
            "cameras": {"yard": {"source": "a.mp4", "models": ["coco"], "name": "Yard camera"}},
            "storage": {"database": database, "evidence_dir": "data/evidence"},
            "alerts": block,
        }
        self.site_path = folder / "site.yaml"
        self.site_path.write_text(yaml.safe_dump(site, sort_keys=False))
        self.site = load_site(self.site_path)
        if not database.startswith("sqlite"):
            from safewatch.storage import create_engine_for
            from safewatch.storage.migrate import upgrade

            engine = create_engine_for(database, folder)
            upgrade(engine)
            engine.dispose()
        self.storage: SiteStorage = open_site_storage(self.site)
        service = start_alerts(self.site, self.storage)
        assert service is not None
        self.service: AlertService = service

    def incident(
        self,
        track: int = 4,
        *,
        started_at: float | None = None,
        still: bool = True,
        severity: Severity = Severity.HIGH,
    ) -> Incident:
        """Store a new open incident on camera ``yard`` (with an evidence still)."""
        incident = self.prepare(track, started_at=started_at, still=still, severity=severity)
        self.storage.repository.upsert(incident)
        return incident

    def prepare(
        self,
        track: int = 4,
        *,
        started_at: float | None = None,
        still: bool = True,
        severity: Severity = Severity.HIGH,
    ) -> Incident:
        """A new open incident on camera ``yard``, its still written, not stored yet."""
        started = time.time() if started_at is None else started_at
        key = incident_id("yard", "hardhat-required", track, started)
        snapshot = None
        if still:
            image = np.full((48, 64, 3), track % 255, np.uint8)
            snapshot = self.storage.evidence.write_still(key, image, camera_id="yard", at=started)
        incident = Incident(
            id=key,
            camera_id="yard",
            rule_id="hardhat-required",
            rule_kind="ppe",
            severity=severity,
            track_ids=(track,),
            started_at=started,
            ended_at=None,
            peak_confidence=0.9,
            message=f"person #{track} without hardhat",
            snapshot=snapshot,
        )
        return incident

    def close_incident(self, incident: Incident, after: float = 2.0) -> Incident:
        """Store the incident's end."""
        import dataclasses

        closed = dataclasses.replace(incident, ended_at=incident.started_at + after)
        self.storage.repository.upsert(closed)
        return closed

    def close(self) -> None:
        """Stop everything (alerts first, then receivers; a hanging receiver first of all, or
        stopping the alerts would wait for its sends to time out)."""
        if self.hang is not None:
            self.hang.stop()
        self.service.close()
        self.storage.close()
        for server in (self.smtp, self.hook, self.slack, self.teams):
            if server is not None:
                server.stop()
        if self.broker is not None:
            self.broker.close()
