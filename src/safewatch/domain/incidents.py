"""An incident: one violation episode, as stored and reported."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from safewatch.domain.events import Severity

__all__ = ["Incident", "IncidentStatus", "incident_id"]


class IncidentStatus(StrEnum):
    """Operator-facing state of an incident."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


def incident_id(camera_id: str, rule_id: str, track_id: int, started_at: float) -> str:
    """Derive the incident id from what identifies the episode.

    A re-delivered event produces the same id, so storing it again is harmless (idempotent
    consumers under at-least-once delivery). Milliseconds are enough to tell episodes apart.
    """
    key = f"{camera_id}\x1f{rule_id}\x1f{track_id}\x1f{round(started_at * 1000)}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Incident:
    """A violation episode with its evidence.

    Attributes:
        id: Derived by :func:`incident_id`.
        camera_id: Camera key.
        rule_id: Rule id.
        rule_kind: Rule kind.
        severity: Rule severity.
        track_ids: Tracks involved, subject first.
        started_at: Wall-clock seconds of the first violating frame.
        ended_at: Wall-clock seconds of the last violating frame; ``None`` while open.
        peak_confidence: Highest evidence confidence seen during the episode.
        message: Human sentence.
        snapshot: Evidence still, relative to the evidence folder; ``None`` if none was written.
        clip: Evidence clip (H.264 MP4), relative to the evidence folder; set only once the file
            is complete (never points at a partial clip), ``None`` until then or if none.
        zone_id: Zone involved, if any.
        status: Operator state.
    """

    id: str
    camera_id: str
    rule_id: str
    rule_kind: str
    severity: Severity
    track_ids: tuple[int, ...]
    started_at: float
    ended_at: float | None
    peak_confidence: float
    message: str
    snapshot: str | None = None
    clip: str | None = None
    zone_id: str | None = None
    status: IncidentStatus = IncidentStatus.OPEN

    @property
    def duration(self) -> float | None:
        """Seconds from first to last violating frame; ``None`` while the episode is open."""
        return None if self.ended_at is None else self.ended_at - self.started_at
