"""What the rule engine says about a frame."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Phase", "RuleEvent", "Severity"]


class Severity(StrEnum):
    """How urgent a violation is; routes alerts and sorts incident lists."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Phase(StrEnum):
    """Where a violation episode is in its life."""

    STARTED = "started"
    ONGOING = "ongoing"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """One rule's verdict on one episode at one frame.

    An episode is one uninterrupted violation by one subject (a track, or a zone for occupancy
    rules). ``STARTED`` is emitted once the violation has lasted the rule's ``min_duration``;
    ``ONGOING`` on every later frame it still holds; ``ENDED`` once it has stopped (or the track is
    gone for longer than the grace period).

    Attributes:
        rule_id: The rule's id from the rule file.
        rule_kind: The rule's kind (``ppe``, ``zone_intrusion``, ...).
        camera_id: Camera the frame came from.
        phase: Episode phase.
        track_ids: Tracks involved (the subject first).
        started_at: Wall-clock seconds when the violation began (first violating frame, not when
            ``min_duration`` was reached), from the frame clock.
        at: Wall-clock seconds of the frame this event was emitted for.
        severity: The rule's severity.
        confidence: Confidence of the evidence in this frame (e.g. the no-hardhat detection).
        message: One human sentence, e.g. ``person #4 without hardhat``.
        zone_id: The zone involved, if any.
        seq: Sequence number of the frame this event was emitted for.
    """

    rule_id: str
    rule_kind: str
    camera_id: str
    phase: Phase
    track_ids: tuple[int, ...]
    started_at: float
    at: float
    severity: Severity
    confidence: float
    message: str
    zone_id: str | None = None
    seq: int = -1
