"""The bus's wire format: versioned JSON envelopes.

Every message on the bus (in memory or on Redis) is one :class:`Envelope`: a ``type`` naming what
it carries, a JSON ``body``, the chain sequence number of an incident change (``seq``), and the
W3C trace context of the span that produced it (``trace``), so a span on the reading side joins
the writer's trace. The encoding is compact JSON with a format number ``v``: a reader refuses a
newer format with a clear error instead of misreading it, which is what lets analyzers and API
nodes of different versions share one Redis during a rolling upgrade (a new format gets a new
``v``; readers learn it before writers start sending it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from safewatch.domain import Incident, IncidentStatus, Severity

__all__ = [
    "BUS_FORMAT",
    "INCIDENT_CHANGE",
    "LIVE_FRAME",
    "BusFormatError",
    "Envelope",
    "decode",
    "encode",
    "incident_change",
    "incident_from_json",
    "incident_to_json",
]

BUS_FORMAT = 1
"""The envelope format this code writes and the newest it reads."""

INCIDENT_CHANGE = "incident.change"
"""An incident was opened, updated, closed or acted on; ``seq`` is its chain entry's number and
the body is ``{"kind": "opened" | "updated" | "closed" | "status", "actor": ..., "incident":
{...}}``."""

LIVE_FRAME = "live.frame"
"""The overlay metadata of a camera's newest analysed frame
(:func:`safewatch.api.live.frame_metadata`); lossy by design, never pixels."""


class BusFormatError(ValueError):
    """A message that is not a bus envelope this version can read."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One bus message.

    Attributes:
        type: :data:`INCIDENT_CHANGE`, :data:`LIVE_FRAME`, ...
        body: JSON object.
        seq: Chain sequence number of an incident change (orders changes and tells a gap);
            ``None`` for messages outside the chain.
        trace: W3C trace context (``traceparent``, ``tracestate``) of the producing span; empty
            when tracing is off.
        at: Wall-clock seconds when it was made.
        v: Format number (:data:`BUS_FORMAT`).
    """

    type: str
    body: dict[str, Any]
    seq: int | None = None
    trace: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    v: int = BUS_FORMAT


def encode(envelope: Envelope) -> bytes:
    """Compact UTF-8 JSON of ``envelope``.

    Raises:
        BusFormatError: The body is not JSON-able (a bug in the producer, named here rather than
            as a ``TypeError`` deep in a sender thread).
    """
    try:
        text = json.dumps(
            {
                "v": envelope.v,
                "type": envelope.type,
                "seq": envelope.seq,
                "at": envelope.at,
                "trace": envelope.trace,
                "body": envelope.body,
            },
            separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise BusFormatError(f"a {envelope.type} envelope is not JSON: {exc}") from exc
    return text.encode()


def decode(data: bytes | str) -> Envelope:
    """The envelope in ``data``.

    Raises:
        BusFormatError: Not JSON, not an object, a missing or mistyped field, or a newer format.
    """
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BusFormatError(f"a bus message is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise BusFormatError(f"a bus message must be a JSON object, got {type(raw).__name__}")
    version = raw.get("v")
    if not isinstance(version, int) or version < 1:
        raise BusFormatError(f"a bus message has no valid format number 'v' (got {version!r})")
    if version > BUS_FORMAT:
        raise BusFormatError(
            f"a bus message has format {version}, newer than this safewatch reads "
            f"({BUS_FORMAT}): upgrade this node"
        )
    kind, body, seq, trace, at = (raw.get(k) for k in ("type", "body", "seq", "trace", "at"))
    if not isinstance(kind, str) or not isinstance(body, dict):
        raise BusFormatError("a bus message needs a string 'type' and an object 'body'")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
        raise BusFormatError(f"a bus message's 'seq' must be a positive integer, got {seq!r}")
    if not isinstance(trace, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in trace.items()
    ):
        raise BusFormatError("a bus message's 'trace' must map strings to strings")
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise BusFormatError(f"a bus message's 'at' must be a number, got {at!r}")
    return Envelope(kind, body, seq, dict(trace), float(at), version)


def incident_to_json(incident: Incident) -> dict[str, Any]:
    """``incident`` as a JSON object (every field, enums as their values)."""
    return {
        "id": incident.id,
        "camera_id": incident.camera_id,
        "rule_id": incident.rule_id,
        "rule_kind": incident.rule_kind,
        "severity": str(incident.severity),
        "track_ids": list(incident.track_ids),
        "started_at": incident.started_at,
        "ended_at": incident.ended_at,
        "peak_confidence": incident.peak_confidence,
        "message": incident.message,
        "snapshot": incident.snapshot,
        "clip": incident.clip,
        "zone_id": incident.zone_id,
        "status": str(incident.status),
    }


def incident_from_json(data: dict[str, Any]) -> Incident:
    """The incident of :func:`incident_to_json`.

    Raises:
        BusFormatError: A field is missing or has the wrong type.
    """
    try:
        ended = data["ended_at"]
        return Incident(
            id=str(data["id"]),
            camera_id=str(data["camera_id"]),
            rule_id=str(data["rule_id"]),
            rule_kind=str(data["rule_kind"]),
            severity=Severity(data["severity"]),
            track_ids=tuple(int(t) for t in data["track_ids"]),
            started_at=float(data["started_at"]),
            ended_at=None if ended is None else float(ended),
            peak_confidence=float(data["peak_confidence"]),
            message=str(data["message"]),
            snapshot=data.get("snapshot"),
            clip=data.get("clip"),
            zone_id=data.get("zone_id"),
            status=IncidentStatus(data.get("status", "open")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BusFormatError(f"an incident in a bus message is malformed: {exc!r}") from exc


def incident_change(
    kind: str,
    incident: Incident,
    *,
    seq: int | None = None,
    actor: str | None = None,
    trace: dict[str, str] | None = None,
    at: float | None = None,
) -> Envelope:
    """An :data:`INCIDENT_CHANGE` envelope."""
    return Envelope(
        INCIDENT_CHANGE,
        {"kind": kind, "actor": actor, "incident": incident_to_json(incident)},
        seq,
        dict(trace or {}),
        time.time() if at is None else at,
    )
