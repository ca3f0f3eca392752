"""Message templates: ``{field}`` placeholders filled from the incident.

Deliberately not ``str.format`` (which reaches attributes and items: ``{x.__class__}``) and not
``${...}`` (the site file's environment syntax): a placeholder is a lower-case field name in
braces, ``{{`` and ``}}`` write literal braces, and an unknown field is an error when the site file
loads, not a broken message at three in the morning. Times are shown in the site's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "DEFAULT_TEMPLATES",
    "FIELDS",
    "Template",
    "check_template",
    "incident_fields",
    "render",
]

FIELDS: Mapping[str, str] = {
    "incident_id": "Incident id.",
    "camera": "Camera key.",
    "camera_name": "Camera display name (the key when it has none).",
    "rule": "Rule id.",
    "rule_kind": "Rule kind (ppe, zone_intrusion, ...).",
    "severity": "low, medium, high or critical.",
    "message": "The rule's sentence about this incident.",
    "zone": "Zone id, or empty.",
    "track_ids": "Tracks involved, e.g. '4, 7'.",
    "peak_confidence": "Highest confidence seen, e.g. 0.87.",
    "started_at": "Start, site-local time.",
    "ended_at": "End, site-local time, or empty while open.",
    "duration": "Length in seconds, e.g. '12.4 s', or empty while open.",
    "status": "Operator status (open, acknowledged, ...).",
    "event": "opened, updated, closed, escalation, digest or test.",
    "route": "Route id.",
    "site": "Site name.",
    "link": "Link to the incident (alerts.incident_url), or empty.",
    "count": "Number of alerts in a digest (1 otherwise).",
    "waited": "For escalations: how long the incident has been unacknowledged.",
}
"""Every placeholder a template may use, with what it holds (docs/alerts.md lists them)."""

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True, slots=True)
class Template:
    """A subject and a body."""

    subject: str
    text: str


DEFAULT_TEMPLATES: Mapping[str, Template] = {
    "opened": Template(
        "[{severity}] {rule} on {camera_name}",
        "{message}\nCamera: {camera_name}\nRule: {rule} ({rule_kind}), severity {severity}\n"
        "Started: {started_at}\nConfidence: {peak_confidence}\n{link}",
    ),
    "updated": Template(
        "[{severity}] {rule} on {camera_name}: confidence {peak_confidence}",
        "{message}\nCamera: {camera_name}\nStarted: {started_at}\n"
        "Confidence now: {peak_confidence}\n{link}",
    ),
    "closed": Template(
        "[{severity}] ended: {rule} on {camera_name} ({duration})",
        "{message}\nCamera: {camera_name}\nFrom {started_at} to {ended_at} ({duration})\n"
        "Status: {status}\n{link}",
    ),
    "escalation": Template(
        "[ESCALATION] [{severity}] {rule} on {camera_name}: unacknowledged for {waited}",
        "Nobody has acknowledged this incident for {waited}.\n{message}\n"
        "Camera: {camera_name}\nStarted: {started_at}\n{link}",
    ),
    "digest": Template(
        "{count} safewatch alerts ({route})",
        "{count} alerts on route {route} of {site} were gathered into this summary.",
    ),
    "test": Template(
        "safewatch test alert ({route})",
        "This is a test of route {route} of {site}: if you can read it, the channel works.",
    ),
}
"""Built-in text per event; a route's ``template`` replaces it for single incidents."""


def check_template(text: str, fields: Collection[str] = FIELDS) -> frozenset[str]:
    """Refuse unknown placeholders and stray braces.

    Args:
        text: The template.
        fields: The placeholders it may use (default: every field of a message).

    Returns:
        The placeholders it uses.

    Raises:
        ValueError: Naming the bad placeholder and listing the known ones.
    """
    used: set[str] = set()
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            raise ValueError(f"stray {token!r}: write {token * 2!r} for a literal brace")
        if name not in fields:
            known = ", ".join(f"{{{field}}}" for field in sorted(fields))
            raise ValueError(f"unknown placeholder {{{name}}}; known: {known}")
        used.add(name)
    return frozenset(used)


def render(text: str, fields: Mapping[str, str]) -> str:
    """Fill ``text``'s placeholders (checked with :func:`check_template` beforehand).

    Unknown names render as empty text, so a template stays usable after a field is dropped.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        return "" if name is None else fields.get(name, "")

    rendered = _TOKEN.sub(replace, text)
    # A template ending in "{link}" without a link leaves a blank last line: drop it.
    return "\n".join(line.rstrip() for line in rendered.splitlines()).strip()


def _local(timestamp: float | None, tz: ZoneInfo) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def incident_fields(
    incident: Mapping[str, Any] | None,
    *,
    tz: ZoneInfo,
    event: str,
    route: str,
    site: str,
    camera_names: Mapping[str, str],
    link: str = "",
    count: int = 1,
    waited: float | None = None,
) -> dict[str, str]:
    """Every :data:`FIELDS` entry as text, from an incident as stored in the outbox payload."""
    data = incident or {}
    camera = str(data.get("camera_id", ""))
    started = data.get("started_at")
    ended = data.get("ended_at")
    duration = None if ended is None or started is None else float(ended) - float(started)
    confidence = data.get("peak_confidence")
    return {
        "incident_id": str(data.get("id", "")),
        "camera": camera,
        "camera_name": camera_names.get(camera, camera),
        "rule": str(data.get("rule_id", "")),
        "rule_kind": str(data.get("rule_kind", "")),
        "severity": str(data.get("severity", "")),
        "message": str(data.get("message", "")),
        "zone": str(data.get("zone_id") or ""),
        "track_ids": ", ".join(str(t) for t in data.get("track_ids", ())),
        "peak_confidence": "" if confidence is None else f"{float(confidence):.2f}",
        "started_at": _local(None if started is None else float(started), tz),
        "ended_at": _local(None if ended is None else float(ended), tz),
        "duration": _seconds(duration),
        "status": str(data.get("status", "")),
        "event": event,
        "route": route,
        "site": site,
        "link": link,
        "count": str(count),
        "waited": _seconds(waited),
    }
