"""The shapes of ``/healthz`` and ``/readyz``, as the API serves them.

The runtime fills them (:mod:`safewatch.runtime.health`) and the API (and its separate process)
serves them; they live here so the API depends on no part of the runtime, while the runtime, which
starts the API, may depend on the API.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "METRICS_CONTENT_TYPE",
    "CameraReadiness",
    "ComponentHealth",
    "FrameCounts",
    "Liveness",
    "PPECoverageOut",
    "Readiness",
    "ReadyState",
    "stale_after",
]

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Media type of ``/metrics`` (Prometheus text exposition format 0.0.4)."""

ReadyState = Literal["ready", "degraded", "not_ready", "stopping"]


class ComponentHealth(BaseModel):
    """One part of the server (database, inference thread, rules thread, site reload)."""

    ok: bool
    message: str = ""
    seconds_since_heartbeat: float | None = None


class FrameCounts(BaseModel):
    """Frame counters of one camera since the server started."""

    decoded: int
    sampled: int
    inferred: int
    motion_skipped: int
    analysed: int
    dropped: dict[str, int] = Field(description="By stage: source, frozen, mailbox, torn, stale.")


class PPECoverageOut(BaseModel):
    """How much of the people's time in view one PPE item could be checked on a camera."""

    item: str
    share: float | None = Field(
        description="(present + absent) / all person-seconds over the window; null: nobody seen."
    )
    verified_seconds: float = Field(description="Person-seconds with a verdict, in the window.")
    person_seconds: float = Field(description="All person-seconds of the item, in the window.")
    window_seconds: float
    total_share: float | None = Field(description="The same since the camera started.")
    total_person_seconds: float


class CameraReadiness(BaseModel):
    """One camera, as ``/readyz`` shows it."""

    ready: bool
    name: str
    worker: str = Field(description="starting, running, backoff, stopped, ended or failed.")
    source: str = Field(
        description="connecting, streaming, stalled, frozen, reconnecting, ended, failed."
    )
    message: str
    pid: int | None
    restarts: int
    reconnects: int
    seconds_since_decoded: float | None
    seconds_since_inferred: float | None
    seconds_since_evaluated: float | None
    fps_target: float
    fps_decoded: float
    fps_analysed: float
    frames: FrameCounts
    problems: list[str] = Field(
        default_factory=list,
        description="Why a streaming camera is not ready (e.g. analysis behind its fps).",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Limits of what the camera protects that leave it ready but make /readyz "
        "degraded: PPE checked for too little of the people's time (watchdog.ppe_min_share).",
    )
    ppe: list[PPECoverageOut] = Field(
        default_factory=list,
        description="Per PPE item, the share of person-seconds whose state could be checked.",
    )


class Readiness(BaseModel):
    """The body of ``/readyz``."""

    status: ReadyState
    database: ComponentHealth
    inference: ComponentHealth
    rules: ComponentHealth
    site: ComponentHealth
    cameras: dict[str, CameraReadiness]
    incidents: ComponentHealth | None = Field(
        default=None,
        description="Incident writes: not ok (the server degraded) while incidents wait in "
        "memory because the database refused them, or the last write was refused; their "
        "alerts wait with them.",
    )
    evidence: ComponentHealth | None = Field(
        default=None,
        description="The evidence recorder: not ok (the server degraded) for 10 minutes after "
        "a still, clip or sealed original could not be stored; the message counts them.",
    )
    cluster: ComponentHealth | None = Field(
        default=None,
        description="serve --cluster analyzers: the membership's threads and rounds, and "
        "cameras no analyzer may run; not ok makes the server degraded.",
    )


class Liveness(BaseModel):
    """The body of ``/healthz``."""

    status: Literal["alive", "hung"]
    uptime_seconds: float
    problems: list[str] = Field(default_factory=list)


def stale_after(fps: float) -> float:
    """Seconds without an evaluated frame after which a streaming camera is not ready."""
    return max(3.0, 5.0 / fps)
