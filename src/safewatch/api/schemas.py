"""Request and response bodies of the API (pydantic, so the OpenAPI document describes them).

Separate input and output models, as the FastAPI template does: an input model accepts only what a
client may set, an output model never carries a secret (no password hash, no token hash).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from safewatch.api.camera_state import CameraStateOut
from safewatch.api.errors import ErrorDetail
from safewatch.domain import Incident
from safewatch.rules.reload import ReloadStatus
from safewatch.storage.incident_repository import check_note

__all__ = [
    "BucketOut",
    "BulkFailureOut",
    "BulkTransitionIn",
    "BulkTransitionOut",
    "CameraOut",
    "IncidentDetailOut",
    "IncidentOut",
    "IncidentPageOut",
    "LoginIn",
    "MeOut",
    "NoteIn",
    "ReloadStatusOut",
    "TimelineEventOut",
    "TransitionIn",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    """Credentials."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class MeOut(BaseModel):
    """The authenticated user, and the CSRF token to send with changes (session logins)."""

    username: str
    role: str
    method: Literal["session", "token"]
    csrf_token: str | None = None


class IncidentOut(BaseModel):
    """One incident as lists and detail pages show it."""

    id: str
    camera_id: str
    rule_id: str
    rule_kind: str
    severity: str
    status: str
    track_ids: list[int]
    started_at: float = Field(description="Epoch seconds of the first violating frame.")
    ended_at: float | None = Field(description="Epoch seconds of the last; null while open.")
    duration: float | None
    peak_confidence: float
    message: str
    zone_id: str | None
    has_still: bool
    has_clip: bool

    @classmethod
    def of(cls, incident: Incident) -> IncidentOut:
        """From the domain incident."""
        return cls(
            id=incident.id,
            camera_id=incident.camera_id,
            rule_id=incident.rule_id,
            rule_kind=incident.rule_kind,
            severity=str(incident.severity),
            status=str(incident.status),
            track_ids=list(incident.track_ids),
            started_at=incident.started_at,
            ended_at=incident.ended_at,
            duration=incident.duration,
            peak_confidence=round(incident.peak_confidence, 4),
            message=incident.message,
            zone_id=incident.zone_id,
            has_still=incident.snapshot is not None,
            has_clip=incident.clip is not None,
        )


class IncidentPageOut(BaseModel):
    """One page of incidents, newest first."""

    items: list[IncidentOut]
    total: int = Field(description="Matches in all (-1 when not counted).")
    limit: int
    offset: int
    has_more: bool


class TimelineEventOut(BaseModel):
    """One line of an incident's timeline (its part of the tamper-evidence chain)."""

    seq: int
    at: float
    kind: str
    actor: str | None
    summary: str


class IncidentDetailOut(BaseModel):
    """An incident with its timeline and what the caller may do with it."""

    incident: IncidentOut
    timeline: list[TimelineEventOut]
    allowed: list[str] = Field(description="Statuses the incident may move to now.")


NOTE_MAX_LENGTH = 4000
"""Longest note, on its own or with a decision: the incident page has one note box (maxlength
4000) for both, and a decision whose note passed 2000 was refused (422) with the note box still
accepting it. Stored in the chain entry's ``detail`` (a ``Text`` column, no length limit)."""


class TransitionIn(_In):
    """An operator's decision."""

    status: Literal["acknowledged", "resolved", "false_positive"]
    note: str | None = Field(
        None, max_length=NOTE_MAX_LENGTH, description="Why; kept in the timeline."
    )


class BulkTransitionIn(_In):
    """One decision for several incidents (a grouped row or a selection of the triage list)."""

    ids: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]] = Field(
        min_length=1,
        max_length=500,
        description="Incident ids (each 1-64 of A-Z a-z 0-9 _ -); repeats count once.",
    )
    status: Literal["acknowledged", "resolved", "false_positive"]
    note: str | None = Field(
        None, max_length=NOTE_MAX_LENGTH, description="Why; kept in each timeline."
    )
    take_open: bool = Field(
        True,
        description=(
            "Resolve or call false positive an open incident by acknowledging it first (both steps"
            " land in its timeline under the caller's name), as one operator closing a flood"
            " would; false: open ones fail with invalid_transition."
        ),
    )


class BulkFailureOut(BaseModel):
    """An incident of a bulk decision that did not change, and why."""

    id: str
    error: str = Field(description="not_found or invalid_transition.")
    message: str


class BulkTransitionOut(BaseModel):
    """What a bulk decision changed; each change is its own transaction and timeline entry."""

    changed: list[IncidentOut]
    failed: list[BulkFailureOut]


class NoteIn(_In):
    """A note for the timeline."""

    # The repository's own check as well as the pattern: str.strip() also removes \x1c-\x1f,
    # which the JSON-schema \S accepts; the store's ValueError would otherwise be a 500.
    text: Annotated[str, AfterValidator(check_note)] = Field(
        min_length=1, max_length=NOTE_MAX_LENGTH, pattern=r"\S"
    )


class BucketOut(BaseModel):
    """One count of an aggregate; only the grouped fields are set."""

    count: int
    start: float | None = None
    camera: str | None = None
    rule: str | None = None
    kind: str | None = None
    severity: str | None = None
    status: str | None = None


class CameraOut(BaseModel):
    """A camera of the site, with its live state."""

    id: str
    name: str
    enabled: bool
    fps: float
    models: list[str]
    live_url: str | None = Field(description="WebRTC/HLS player URL from a media server.")
    live: bool = Field(description="Whether analysed frames have arrived from it.")
    last_frame_at: float | None
    width: int | None
    height: int | None
    state: CameraStateOut | None = Field(
        None, description="The camera's state as the runtime sees it (what its tile shows)."
    )


class ReloadStatusOut(BaseModel):
    """The rule set in force and the latest reload."""

    ok: bool
    generation: int
    at: float
    message: str
    errors: list[str]
    attempts: int
    failures: int
    warnings: list[str] = Field(
        default_factory=list,
        description="Protection that disappeared: rules the latest generation dropped, enabled "
        "cameras no enabled rule runs on.",
    )
    dropped: list[str] = Field(
        default_factory=list,
        description="Rules in force since start-up or the last acknowledgement that are gone "
        "(removed or disabled), until they come back or an admin acknowledges their removal "
        "(POST /api/v1/rules/dropped/acknowledge); /readyz is degraded meanwhile.",
    )

    @classmethod
    def of(cls, status: ReloadStatus) -> ReloadStatusOut:
        """From the holder's status."""
        return cls(
            ok=status.ok,
            generation=status.generation,
            at=status.at,
            message=status.message,
            errors=list(status.errors),
            attempts=status.attempts,
            failures=status.failures,
            warnings=list(status.warnings),
            dropped=list(status.dropped),
        )


class ValidationOut(BaseModel):
    """The outcome of validating rule files."""

    ok: bool
    errors: list[ErrorDetail]
    rules: int
    zones: int
    lines: int
