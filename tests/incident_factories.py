"""The one sample-incident factory for tests that only need *an* incident row to move around
(bus, after-commit hooks, tracing, clip spools): by default camera ``cam-1``, rule ``hardhat``,
one person track, started at t=1000. Tests that need another camera, start or id say so through
the keyword arguments (a module with other defaults binds them once with ``functools.partial``)
instead of spelling out a whole :class:`Incident` of their own."""

from __future__ import annotations

from safewatch.domain import Incident, Severity
from safewatch.domain import incident_id as derived_id


def make_incident(
    track: int = 1,
    ended_at: float | None = None,
    *,
    camera: str = "cam-1",
    rule: str = "hardhat",
    started_at: float = 1000.0,
    incident_id: str | None = None,
    severity: Severity = Severity.HIGH,
    peak: float = 0.6,
    snapshot: str | None = None,
) -> Incident:
    """A PPE incident of person ``track`` open unless ``ended_at``; its id is derived from
    camera, rule, track and start (as the incident manager derives it) unless ``incident_id``
    names one."""
    return Incident(
        id=incident_id or derived_id(camera, rule, track, started_at),
        camera_id=camera,
        rule_id=rule,
        rule_kind="ppe",
        severity=severity,
        track_ids=(track,),
        started_at=started_at,
        ended_at=ended_at,
        peak_confidence=peak,
        message=f"person #{track} without hardhat",
        snapshot=snapshot,
    )
