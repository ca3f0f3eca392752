"""What a channel sends: an :class:`AlertMessage`, composed from an outbox row.

Composition happens at delivery time, not when the row is queued: the text uses the templates in
force, the evidence still is read only for channels that attach it, and the MQTT state reflects
the incidents open *now* (a retried "opened" alert for an incident that has closed meanwhile must
not turn a Home Assistant sensor back on).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from safewatch.alerts.rows import OutboxItem
from safewatch.alerts.templates import (
    DEFAULT_TEMPLATES,
    Template,
    incident_fields,
    render,
)
from safewatch.config.alerts import AlertsConfig, RouteConfig
from safewatch.errors import SafewatchError

__all__ = ["AlertMessage", "Composer", "Evidence", "probe_item"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Evidence:
    """An evidence file to attach."""

    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One alert, ready for any channel.

    Attributes:
        key: Idempotency key: the same for every retry of this alert (receivers de-duplicate).
        event: ``opened``, ``updated``, ``closed``, ``escalation``, ``digest`` or ``test``.
        route_id: The route it came through.
        subject: Rendered subject / title.
        text: Rendered body.
        fields: Every template field as text (chat channels show a few as facts).
        incident: The incident as stored in the outbox (``None`` for a digest).
        items: A digest's incidents, each ``{"incident": {...}, "event": ...}``.
        link: Link to the incident, or ``None``.
        site: Site name.
        created_at: When the change happened (wall clock): latency is measured from it.
        evidence: The evidence still, for channels that attach it.
        open_count: Incidents of this camera and rule open now (MQTT state), when asked for.
        witness: For a ``witness`` alert, the chain head ``{"seq", "hash", "at", "time"}``.
    """

    key: str
    event: str
    route_id: str
    subject: str
    text: str
    fields: Mapping[str, str]
    incident: Mapping[str, Any] | None
    items: tuple[Mapping[str, Any], ...] = ()
    link: str | None = None
    site: str = ""
    created_at: float = 0.0
    evidence: Evidence | None = None
    open_count: int | None = None
    witness: Mapping[str, Any] | None = None


def probe_item(route: RouteConfig, channel: str, now: float) -> OutboxItem:
    """A synthetic delivery for ``safewatch alerts test ROUTE`` (a fresh key every time)."""
    incident = {
        "id": "test-" + uuid.uuid4().hex[:12],
        "camera_id": route.match.cameras[0] if route.match.cameras else "test-camera",
        "rule_id": "test-alert",
        "rule_kind": "test",
        "severity": str(route.match.min_severity or "high"),
        "track_ids": [],
        "started_at": now,
        "ended_at": None,
        "duration": None,
        "peak_confidence": 1.0,
        "message": f"Test alert of route {route.id}",
        "snapshot": None,
        "clip": None,
        "zone_id": None,
        "status": "open",
    }
    return OutboxItem(
        id=f"test:{channel}",
        key=uuid.uuid4().hex,
        incident_id=None,
        route_id=route.id,
        channel=channel,
        event="test",
        status="sending",
        attempts=0,
        due_at=now,
        created_at=now,
        delivered_at=None,
        last_error=None,
        payload={"incident": incident, "event": "test", "at": now},
    )


class Composer:
    """Turns outbox rows into messages, with the site's templates, names and time zone.

    Args:
        config: The alerts block.
        site_name: Shown in messages.
        tz: The site's time zone.
        camera_names: Camera key -> display name.
        read_evidence: Reads an evidence file by its key (``EvidenceStore.read_bytes``).
        open_count: Counts open incidents of a camera and rule (``Outbox.open_count``).
        clock: Wall clock (how long an escalated incident has waited).
        stored_still: The still an incident points at now (``Outbox.still_of``). A live
            incident's row is stored before its still (the evidence thread writes it a few
            milliseconds later), so the alert queued with the row names none: a message that
            attaches the still looks it up here.
        still_wait: How long an ``opened`` message that attaches the still waits for it.
    """

    def __init__(
        self,
        config: AlertsConfig,
        *,
        site_name: str,
        tz: ZoneInfo,
        camera_names: Mapping[str, str],
        read_evidence: Callable[[str], bytes] | None = None,
        open_count: Callable[[str, str], int] | None = None,
        clock: Callable[[], float] = time.time,
        stored_still: Callable[[str], str | None] | None = None,
        still_wait: float = 2.0,
    ) -> None:
        self._clock = clock
        self._stored_still = stored_still
        self._still_wait = still_wait
        self._config = config
        self._site = site_name
        self._tz = tz
        self._names = dict(camera_names)
        self._read_evidence = read_evidence
        self._open_count = open_count

    @property
    def camera_names(self) -> dict[str, str]:
        """Camera key -> display name."""
        return dict(self._names)

    def _template(self, route: RouteConfig | None, event: str) -> Template:
        if event not in ("digest", "test") and route is not None and route.template:
            custom = self._config.templates.get(route.template)
            if custom is not None:
                return Template(custom.subject, custom.text)
        return DEFAULT_TEMPLATES.get(event, DEFAULT_TEMPLATES["opened"])

    def link(self, incident_id: str) -> str | None:
        """The incident's link (``alerts.incident_url``), if configured."""
        if not self._config.incident_url or not incident_id:
            return None
        return render(self._config.incident_url, {"incident_id": incident_id})

    def compose(
        self,
        item: OutboxItem,
        *,
        evidence: bool = False,
        state: bool = False,
        max_evidence_bytes: int = 10 * 2**20,
    ) -> AlertMessage:
        """The message of one delivery.

        Args:
            item: The claimed outbox row.
            evidence: Read the incident's evidence still (email).
            state: Count the open incidents of its camera and rule (MQTT).
            max_evidence_bytes: A larger still is not attached (the link still points at it).
        """
        if item.event == "witness":
            return self._witness(item)
        route = self._config.route(item.route_id)
        payload = item.payload
        incident = payload.get("incident")
        items: tuple[Mapping[str, Any], ...] = tuple(payload.get("items", ()))
        data: Mapping[str, Any] = incident if isinstance(incident, dict) else {}
        link = self.link(str(data.get("id", ""))) if item.event not in ("digest", "test") else None
        waited = None
        if item.event == "escalation":
            waited = self._clock() - float(data.get("started_at", item.created_at))
        fields = incident_fields(
            data,
            tz=self._tz,
            event=item.event,
            route=item.route_id,
            site=self._site,
            camera_names=self._names,
            link=link or "",
            count=len(items) if items else 1,
            waited=waited,
        )
        template = self._template(route, item.event)
        subject = render(template.subject, fields).replace("\n", " ")
        text = render(template.text, fields)
        if items:
            text = text + "\n\n" + self._digest_lines(items, payload)
        attachment = None
        still = self._still_key(data, item.event) if evidence else None
        if still:
            attachment = self._evidence(still, max_evidence_bytes)
        open_now = None
        if state and data.get("camera_id") and data.get("rule_id"):
            if self._open_count is not None and item.event != "test":
                open_now = self._open_count(str(data["camera_id"]), str(data["rule_id"]))
            elif item.event == "test":
                open_now = 0
        return AlertMessage(
            key=item.key,
            event=item.event,
            route_id=item.route_id,
            subject=subject,
            text=text,
            fields=fields,
            incident=data if incident is not None else None,
            items=items,
            link=link,
            site=self._site,
            created_at=float(payload.get("at", item.created_at)),
            evidence=attachment,
            open_count=open_now,
        )

    def _witness(self, item: OutboxItem) -> AlertMessage:
        """The chain head as a message: prose for a person, one line for ``verify --witness``."""
        from safewatch.incidents.witness import ChainWitness

        data = item.payload.get("witness")
        witness = ChainWitness.from_json(json.dumps(data).encode())
        text = (
            f"The tamper-evidence chain of {self._site} held entry {witness.seq} at "
            f"{witness.when}. Keep this message where the site cannot change it: "
            "'safewatch verify --witness FILE' (this message saved as a file) checks that the "
            "site's database still holds that entry, so newest entries cut off with the chain "
            f"head set back are found.\n\n{witness.line()}"
        )
        fields = {
            "event": "witness",
            "route": item.route_id,
            "site": self._site,
            "seq": str(witness.seq),
            "hash": witness.hash,
            "time": witness.when,
        }
        return AlertMessage(
            key=item.key,
            event="witness",
            route_id=item.route_id,
            subject=f"safewatch chain witness of {self._site}: entry {witness.seq}",
            text=text,
            fields=fields,
            incident=None,
            site=self._site,
            created_at=float(item.payload.get("at", item.created_at)),
            witness=json.loads(witness.to_json()),
        )

    def _digest_lines(
        self, items: tuple[Mapping[str, Any], ...], payload: Mapping[str, Any]
    ) -> str:
        lines = []
        for entry in items:
            fields = incident_fields(
                entry.get("incident", {}),
                tz=self._tz,
                event=str(entry.get("event", "")),
                route="",
                site=self._site,
                camera_names=self._names,
            )
            link = self.link(fields["incident_id"])
            line = (
                f"- {fields['started_at']} [{fields['severity']}] {fields['rule']} on "
                f"{fields['camera_name']} ({fields['event']})"
            )
            lines.append(f"{line} {link}" if link else line)
        if "rate_limit" in payload.get("reasons", ()):
            lines.append("(held back by the route's rate limit)")
        return "\n".join(lines)

    def _still_key(self, data: Mapping[str, Any], event: str) -> str | None:
        """The still to attach: the payload's, else the one stored since (waiting when opened)."""
        if data.get("snapshot"):
            return str(data["snapshot"])
        incident_id = data.get("id")
        if self._stored_still is None or not incident_id or event == "test":
            return None
        deadline = time.monotonic() + (self._still_wait if event == "opened" else 0.0)
        while True:
            still = self._stored_still(str(incident_id))
            if still or time.monotonic() >= deadline:
                return still
            time.sleep(0.05)

    def _evidence(self, key: str, limit: int) -> Evidence | None:
        if self._read_evidence is None:
            return None
        try:
            data = self._read_evidence(key)
        except SafewatchError as error:
            log.warning("alert without evidence still %s: %s", key, error)
            return None
        if len(data) > limit:
            return None
        name = key.rsplit("/", 1)[-1]
        kind = "image/png" if name.endswith(".png") else "image/jpeg"
        return Evidence(name, kind, data)
