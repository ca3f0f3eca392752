"""One sample incident for the tests that only need *an* incident row to move around (bus,
after-commit hooks, tracing): camera ``cam-1``, rule ``hardhat``, one person track."""

from __future__ import annotations

from safewatch.domain import Incident, Severity, incident_id


def make_incident(track: int = 1, ended_at: float | None = None) -> Incident:
    """A PPE incident of person ``track`` that started at t=1000, open unless ``ended_at``."""
    return Incident(
        id=incident_id("cam-1", "hardhat", track, 1000.0),
        camera_id="cam-1",
        rule_id="hardhat",
        rule_kind="ppe",
        severity=Severity.HIGH,
        track_ids=(track,),
        started_at=1000.0,
        ended_at=ended_at,
        peak_confidence=0.6,
        message=f"person #{track} without hardhat",
    )
