"""Clips left in the shared spool by a camera nobody runs (disabled or removed while its owner
was dead): swept by the one analyzer holding the sweep's advisory lock, after the quiet-orphan
wait, and stored or given ``clip.unrecoverable``; a camera owned again is left to its owner.
Real PostgreSQL, real H.264."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from evidence_frames import CAM, T0, coded_frame
from incident_factories import make_incident
from safewatch.domain import Incident
from safewatch.incidents import EvidenceStore
from safewatch.incidents.clips import (
    CAMERA_NOT_RUN,
    CLIP_RECOVERED,
    CLIP_UNRECOVERABLE,
    PART_SUFFIX,
    ClipEncoder,
    ClipInfo,
)
from safewatch.runtime.clip_sweep import SWEEP_LOCK, ClipSweeper
from safewatch.storage import IncidentRepository
from safewatch.storage.cluster_tables import CameraLeaseRow

QUIET = 60.0


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    """The shared ``pg_engine`` under the name these tests use."""
    return pg_engine


def _left(spool: Path, incident: Incident, *, frames: int, age: float) -> Path:
    part = spool / f"{incident.id}{PART_SUFFIX}"
    if frames:
        info = ClipInfo(incident.id, incident.camera_id, incident.started_at, 0.0)
        encoder = ClipEncoder(part, info, fps=10.0)
        for index in range(frames):
            frame, _ = coded_frame(index, 10.0)
            encoder.add(frame.image, frame.timestamp)
        encoder.finish()
    else:
        part.write_bytes(b"not a clip")
    stamp = time.time() - age
    os.utime(part, (stamp, stamp))
    return part


def test_clips_of_cameras_nobody_runs_are_swept_once(engine: Engine, tmp_path: Path) -> None:
    repo = IncidentRepository(engine)
    store = EvidenceStore(tmp_path / "evidence", log=repo)
    spool = tmp_path / "evidence" / ".clips-in-progress"
    spool.mkdir(parents=True)
    cases = {  # incident: camera, frames, seconds since last written
        "gone-ok": ("gone", 8, 2 * QUIET),
        "gone-bad": ("gone", 0, 2 * QUIET),
        "gone-fresh": ("gone", 8, 1.0),  # written to lately: maybe a frozen owner's
        "run": (CAM, 8, 2 * QUIET),  # an enabled camera: its owner adopts it
        "back": ("back", 8, 2 * QUIET),  # enabled again and owned: its owner adopts it
    }
    parts = {}
    for incident_id, (camera, frames, age) in cases.items():
        incident = make_incident(4, incident_id=incident_id, camera=camera, started_at=T0)
        repo.upsert(incident)
        parts[incident_id] = _left(spool, incident, frames=frames, age=age)
    with engine.begin() as connection:
        now = connection.scalar(select(func.extract("epoch", func.clock_timestamp())))
        at = float(now)
        connection.execute(
            CameraLeaseRow.__table__.insert().values(
                camera_id="back",
                owner="other",
                epoch=3,
                expires_at=at + 600,
                acquired_at=at,
                renewed_at=at,
            )
        )
    sweepers = [
        ClipSweeper(spool, store, engine, lambda: [CAM], quiet_seconds=QUIET) for _ in range(2)
    ]
    with engine.connect() as holder:  # another analyzer sweeps this round
        assert holder.scalar(select(func.pg_try_advisory_lock(SWEEP_LOCK)))
        assert [s.sweep_once() for s in sweepers] == [None, None]
        holder.scalar(select(func.pg_advisory_unlock(SWEEP_LOCK)))
        holder.commit()
    reports = sweepers[0].sweep_once()
    assert reports is not None
    assert reports["gone"].completed == ["gone-ok"] and list(reports["gone"].unusable) == [
        "gone-bad"
    ]
    assert not reports["back"].completed and parts["back"].exists(), "fenced: left to its owner"
    assert parts["run"].exists() and parts["gone-fresh"].exists()
    assert not parts["gone-ok"].exists() and not parts["gone-bad"].exists()
    stored = repo.get("gone-ok")
    assert stored.clip is not None and (store.root / stored.clip).stat().st_size > 0
    recovered = [e for e in repo.timeline("gone-ok") if e.kind == CLIP_RECOVERED]
    assert [e.detail["reason"] for e in recovered] == [CAMERA_NOT_RUN]
    assert recovered[0].detail["frames"] == 8
    lost = [e for e in repo.timeline("gone-bad") if e.kind == CLIP_UNRECOVERABLE]
    assert len(lost) == 1 and lost[0].detail["reason"] == CAMERA_NOT_RUN
    assert repo.get("back").clip is None
    # The next round finds nothing more to do (the fresh one is still quiet for less).
    again = sweepers[1].sweep_once()
    assert again is not None and not any(r.completed or r.unusable for r in again.values())


def test_a_stopping_server_ends_a_round_at_the_next_clip(engine: Engine, tmp_path: Path) -> None:
    """Finding: a round had no end but its last clip, so SIGTERM waited on every clip left."""
    from safewatch.incidents.clips import sweep_clips

    repo = IncidentRepository(engine)
    store = EvidenceStore(tmp_path / "evidence", log=repo)
    spool = tmp_path / "evidence" / ".clips-in-progress"
    spool.mkdir(parents=True)
    parts = []
    for index in range(3):
        incident = make_incident(4, incident_id=f"gone-{index}", camera="gone", started_at=T0)
        repo.upsert(incident)
        parts.append(_left(spool, incident, frames=8, age=2 * QUIET))
    asked: list[int] = []

    def stopping() -> bool:  # SIGTERM arrives while the first clip is being stored
        asked.append(1)
        return len(asked) > 1

    reports = sweep_clips(spool, store, repo, frozenset(), quiet_seconds=QUIET, stopping=stopping)
    assert reports["gone"].completed == ["gone-0"]
    assert not parts[0].exists() and parts[1].exists() and parts[2].exists()
