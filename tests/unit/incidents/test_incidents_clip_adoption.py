"""A camera lost by one recorder and owned by another (``serve --cluster``, one shared spool):
the loser closes its clip where it is without storing it and lets it go; the new owner, which
found it held at first, tries again and stores it with the reason in the chain. Real SQLite,
real folder, real H.264 decoded back."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from sqlalchemy import Engine

from evidence_frames import CAM, coded_frame
from safewatch.config.site import EvidenceConfig
from safewatch.domain import Incident, Severity
from safewatch.incidents import EvidenceRecorder, EvidenceStore
from safewatch.incidents.clips import CLIP_RECOVERED, PART_SUFFIX, PartLock
from safewatch.storage import IncidentRepository, create_engine_for

FPS = 10.0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine_for("sqlite:///db/safewatch.db", tmp_path)
    yield engine
    engine.dispose()


def test_a_lost_cameras_clip_is_let_go_and_stored_by_the_next_owner(
    engine: Engine, tmp_path: Path
) -> None:
    repo = IncidentRepository(engine)
    store = EvidenceStore(tmp_path / "evidence", log=repo)
    config = EvidenceConfig(pre_seconds=0, post_seconds=1, buffer_seconds=2, annotate_clips=False)
    frame, _ = coded_frame(0, FPS)
    incident = Incident(
        id="inc-1",
        camera_id=CAM,
        rule_id="helmet",
        rule_kind="ppe",
        severity=Severity("high"),
        track_ids=(4,),
        started_at=frame.timestamp,
        ended_at=None,
        peak_confidence=0.8,
        message="no helmet",
        snapshot=None,
    )
    repo.upsert(incident)
    loser = EvidenceRecorder(store, repo, config, on_full="wait")
    heir = EvidenceRecorder(store, repo, config, on_full="wait")
    try:
        loser.open_clip(incident)
        for index in range(31):
            loser.observe(*coded_frame(index, FPS))
        assert loser.flush(30)
        part = store.root / ".clips-in-progress" / f"inc-1{PART_SUFFIX}"
        assert part.exists()
        # The takeover closed the incident; the heir finds the clip still held by the loser.
        repo.upsert(dataclasses.replace(incident, ended_at=frame.timestamp + 3))
        heir.adopt_clips(CAM, reason="analyzer_lost", previous_owner="loser")
        assert heir.flush(30)
        assert repo.get("inc-1").clip is None and part.exists(), "held: not taken"
        # The loser learns it lost the camera: the clip is closed unstored and let go.
        loser.drop_camera(CAM)
        assert loser.flush(30)
        lock = PartLock.try_acquire(part, create=False)
        assert lock is not None, "the loser still holds its clip"
        lock.release()
        assert repo.get("inc-1").clip is None, "the loser stored nothing"
        deadline = time.monotonic() + 20  # the heir's retries: 1 s, then 2 s, ...
        while repo.get("inc-1").clip is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        loser.close(30)
        heir.close(30)
    clip = repo.get("inc-1").clip
    assert clip is not None and not part.exists()
    with av.open(str(store.root / clip)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 31, "closed by the loser, the clip is complete"
    entries = [e for e in repo.timeline("inc-1") if e.kind == CLIP_RECOVERED]
    assert len(entries) == 1
    assert entries[0].detail["previous_owner"] == "loser"
    assert entries[0].detail["frames"] == 31
