"""What operators do with an incident: acknowledge it, resolve it or call it a false positive.

An incident goes ``open -> acknowledged -> resolved | false_positive``: someone must own it before
closing it, and a closed incident stays closed (a mistake is corrected with a note, the history is
never rewritten). Every change, with who made it and why, and every note lands in the incident's
timeline, which is the incident's part of the tamper-evidence chain, together with what the
pipeline recorded (episode start, updates, end), the evidence written or removed, and what the
alerts recorded.

The check runs inside the repository's transaction (:meth:`IncidentRepository.set_status` with
``check=``), so two operators clicking at once cannot both act on a status that is already gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from safewatch.config.secrets import redact_secrets
from safewatch.domain import Incident, IncidentStatus
from safewatch.errors import SafewatchError
from safewatch.storage import ChainEntry, EntryKind, IncidentRepository

__all__ = [
    "ALLOWED",
    "IncidentLifecycle",
    "InvalidTransition",
    "TimelineEvent",
    "check_transition",
    "describe",
]

ALLOWED: Mapping[IncidentStatus, frozenset[IncidentStatus]] = {
    IncidentStatus.OPEN: frozenset({IncidentStatus.ACKNOWLEDGED}),
    IncidentStatus.ACKNOWLEDGED: frozenset(
        {IncidentStatus.RESOLVED, IncidentStatus.FALSE_POSITIVE}
    ),
    IncidentStatus.RESOLVED: frozenset(),
    IncidentStatus.FALSE_POSITIVE: frozenset(),
}
"""Status -> the statuses an operator may move it to."""


class InvalidTransition(SafewatchError):
    """An operator asked for a status change the lifecycle does not allow (HTTP 409 in the API)."""

    def __init__(self, current: IncidentStatus, requested: IncidentStatus) -> None:
        self.current = current
        self.requested = requested
        allowed = sorted(str(s) for s in ALLOWED[current])
        options = f"it can only become {' or '.join(allowed)}" if allowed else "it is closed"
        super().__init__(f"incident is {current}, cannot become {requested}: {options}")


def check_transition(current: IncidentStatus, requested: IncidentStatus) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> requested`` is allowed."""
    if requested not in ALLOWED[current]:
        raise InvalidTransition(current, requested)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One line of an incident's timeline, ready to show.

    Attributes:
        seq: Position in the tamper-evidence chain.
        at: Wall-clock seconds when it was recorded.
        kind: ``incident.opened``, ``incident.status``, ``incident.note``, ``evidence.written``,
            ``alert.sent``, ...
        actor: Who did it, for operator actions; ``None`` for the system.
        summary: One human sentence.
        detail: Everything recorded with it.
    """

    seq: int
    at: float
    kind: str
    actor: str | None
    summary: str
    detail: Mapping[str, Any]


def _size(detail: Mapping[str, Any]) -> str:
    size = detail.get("size")
    if not isinstance(size, int):
        return ""
    return f", {size / 1024:.0f} KiB" if size >= 1024 else f", {size} B"


def _alert_summary(kind: str, detail: Mapping[str, Any]) -> str:
    """Where an alert went (or why it was given up), from what the outbox chained with it.

    The error is masked again here (secrets by value, URLs by shape) although the dispatcher
    masks it before storing it: entries chained before that masking existed must not show a
    token either, and the chain itself is never rewritten.
    """
    event, channel = detail.get("event", "?"), detail.get("channel", "?")
    where = f"route {detail.get('route', '?')}, key {detail.get('key', '?')}"
    if kind == "alert.sent":
        receipt = f": {detail['receipt']}" if detail.get("receipt") else ""
        attempt = detail.get("attempt", "?")
        return f"{event} alert sent via {channel} ({where}, attempt {attempt}){receipt}"
    attempts = detail.get("attempts", "?")
    error = redact_secrets(str(detail.get("error") or "unknown error"))
    return f"{event} alert to {channel} given up after {attempts} attempt(s) ({where}): {error}"


def describe(entry: ChainEntry) -> TimelineEvent:
    """The timeline line of one chain entry."""
    detail = entry.detail
    actor = detail.get("actor") if isinstance(detail.get("actor"), str) else None
    kind = entry.kind
    by = f" by {actor}" if actor else ""
    if kind == EntryKind.INCIDENT_OPENED:
        summary = "episode started"
    elif kind == EntryKind.INCIDENT_UPDATED:
        changed = ", ".join(detail.get("changed", ())) or "record"
        summary = f"updated: {changed}"
    elif kind == EntryKind.INCIDENT_CLOSED:
        duration = detail.get("duration")
        summary = "episode ended" + (
            f" after {duration:.1f} s" if isinstance(duration, int | float) else ""
        )
    elif kind == EntryKind.STATUS_CHANGED:
        summary = f"{detail.get('from')} -> {detail.get('to')}{by}"
        if detail.get("note"):
            summary += f": {detail['note']}"
    elif kind == EntryKind.NOTE:
        summary = f"note{by}: {detail.get('text', '')}"
    elif kind == EntryKind.IMPORTED:
        summary = "chained (existed before the tamper-evidence chain)"
    elif kind == EntryKind.EVIDENCE_WRITTEN:
        summary = f"evidence written: {entry.subject}{_size(detail)}"
    elif kind == EntryKind.EVIDENCE_REMOVED:
        summary = f"evidence removed ({detail.get('reason', 'unknown reason')}): {entry.subject}"
    elif kind in ("alert.sent", "alert.dead"):
        summary = _alert_summary(kind, detail)
    else:
        summary = kind
    return TimelineEvent(entry.seq, entry.at, kind, actor, summary, detail)


class IncidentLifecycle:
    """Operator actions on stored incidents.

    Args:
        repository: Where incidents and their chain are.
    """

    def __init__(self, repository: IncidentRepository) -> None:
        self._repository = repository

    def transition(
        self,
        incident_id: str,
        status: IncidentStatus,
        *,
        actor: str | None = None,
        note: str | None = None,
    ) -> Incident:
        """Move the incident to ``status``, recording who and why.

        Raises:
            NotFound: No such incident.
            InvalidTransition: The lifecycle does not allow it from the current status.
            StorageError: The database cannot be written.
        """
        return self._repository.set_status(
            incident_id, status, actor=actor, note=note, check=check_transition
        )

    def acknowledge(self, incident_id: str, *, actor: str, note: str | None = None) -> Incident:
        """An operator takes the incident (``open -> acknowledged``)."""
        return self.transition(incident_id, IncidentStatus.ACKNOWLEDGED, actor=actor, note=note)

    def resolve(self, incident_id: str, *, actor: str, note: str | None = None) -> Incident:
        """The hazard was dealt with (``acknowledged -> resolved``)."""
        return self.transition(incident_id, IncidentStatus.RESOLVED, actor=actor, note=note)

    def mark_false_positive(
        self, incident_id: str, *, actor: str, note: str | None = None
    ) -> Incident:
        """There was no hazard (``acknowledged -> false_positive``); say why in ``note``."""
        return self.transition(incident_id, IncidentStatus.FALSE_POSITIVE, actor=actor, note=note)

    def add_note(self, incident_id: str, text: str, *, actor: str) -> TimelineEvent:
        """Add a note to the timeline (any status, also after closing).

        Raises:
            NotFound: No such incident.
            ValueError: Empty note.
            StorageError: The database cannot be written.
        """
        return describe(self._repository.add_note(incident_id, text, actor=actor))

    def timeline(self, incident_id: str) -> list[TimelineEvent]:
        """Everything recorded about the incident, oldest first.

        Raises:
            NotFound: No such incident.
            StorageError: The database cannot be read.
        """
        return [describe(entry) for entry in self._repository.timeline(incident_id)]
