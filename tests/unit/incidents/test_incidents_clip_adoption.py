"""A camera lost by one recorder and owned by another (``serve --cluster``, one shared spool):
the loser closes its clip where it is without storing it and lets it go; the new owner, which
found it held at first, tries again and stores it with the reason in the chain. Real SQLite,
real folder, real H.264 decoded back."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import av
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from db_servers import PostgresServer
from evidence_frames import CAM, coded_frame
from incident_factories import make_incident
from patience import poll
from safewatch.config.site import EvidenceConfig
from safewatch.domain import Incident
from safewatch.incidents import EvidenceRecorder, EvidenceStore
from safewatch.incidents.clips import (
    CLIP_RECOVERED,
    PART_SUFFIX,
    ClipEncoder,
    ClipInfo,
    PartLock,
)
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.storage.hash_chain import lock_head
from safewatch.storage.migrate import upgrade

FPS = 10.0


def test_a_lost_cameras_clip_is_let_go_and_stored_by_the_next_owner(
    engine: Engine, tmp_path: Path
) -> None:
    repo = IncidentRepository(engine)
    store = EvidenceStore(tmp_path / "evidence", log=repo)
    config = EvidenceConfig(pre_seconds=0, post_seconds=1, buffer_seconds=2, annotate_clips=False)
    frame, _ = coded_frame(0, FPS)
    incident = make_incident(4, incident_id="inc-1", camera=CAM, started_at=frame.timestamp)
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
        assert CAM not in loser.stats.buffered_bytes, "its pre-roll is let go with the camera"
        lock = PartLock.try_acquire(part, create=False)
        assert lock is not None, "the loser still holds its clip"
        lock.release()
        assert repo.get("inc-1").clip is None, "the loser stored nothing"
        # the heir's retries: 1 s, then 2 s, ...
        poll(lambda: repo.get("inc-1").clip, 20, "the heir to store the let-go clip", 0.1)
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


def _closed(incident_id: str, index: int = 0) -> Incident:
    """An incident that started at frame ``index`` and was closed 2 s later."""
    started = coded_frame(index, FPS)[0].timestamp
    return make_incident(4, started + 2, incident_id=incident_id, camera=CAM, started_at=started)


def _left_clip(spool: Path, incident: Incident, frames: int) -> Path:
    """A clip a dead writer left: complete fragments, nobody holds it."""
    spool.mkdir(parents=True, exist_ok=True)
    part = spool / f"{incident.id}{PART_SUFFIX}"
    info = ClipInfo(incident.id, CAM, incident.started_at, 0.0)
    encoder = ClipEncoder(part, info, fps=FPS)
    for index in range(frames):
        frame, _ = coded_frame(index, FPS)
        encoder.add(frame.image, frame.timestamp)
    encoder.finish()
    return part


def test_a_storage_error_on_one_clip_neither_stops_the_others_nor_strands_it(
    engine: Engine, tmp_path: Path
) -> None:
    """Finding: one failed store aborted the camera's whole adoption, with no retry."""
    repo = IncidentRepository(engine)
    store = EvidenceStore(tmp_path / "evidence", log=repo)
    spool = store.root / ".clips-in-progress"
    first, second = _closed("inc-a"), _closed("inc-b")
    for incident in (first, second):
        repo.upsert(incident)
        _left_clip(spool, incident, 12)
    # A real write error: a folder where inc-a's clip must go.
    key = store.key_for("inc-a", camera_id=CAM, at=first.started_at, suffix=".mp4")
    (store.root / key).mkdir(parents=True)
    config = EvidenceConfig(pre_seconds=0, post_seconds=1, buffer_seconds=2, annotate_clips=False)
    heir = EvidenceRecorder(store, repo, config, on_full="wait", recover=False)
    try:
        heir.adopt_clips(CAM, reason="analyzer_lost", previous_owner="loser")
        assert heir.flush(30, adoptions=True)
        assert repo.get("inc-b").clip is not None, "the next clip was still adopted"
        assert repo.get("inc-a").clip is None and (spool / f"inc-a{PART_SUFFIX}").exists()
        assert heir.stats.errors >= 1
        (store.root / key).rmdir()  # storage is back: the retry (1 s, then 2 s) stores it
        poll(lambda: repo.get("inc-a").clip, 20, "the retry to store inc-a's clip", 0.1)
    finally:
        heir.close(30)
    assert repo.get("inc-a").clip == key
    assert not list(spool.glob(f"*{PART_SUFFIX}"))
    recovered = [e for e in repo.timeline("inc-a") if e.kind == CLIP_RECOVERED]
    assert len(recovered) == 1 and recovered[0].detail["frames"] == 12


def test_adoption_runs_beside_the_live_clips_not_in_front_of_them(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    """Finding: salvage and upload ran on the evidence thread, whose full queue drops live
    frames. Here the adoption is held as long as the test likes (it waits for the chain lock,
    which the test holds in PostgreSQL) while live frames come in batches, each flushed: the
    evidence thread must take them all meanwhile. No timing margin is involved."""
    with pg_server.fresh_schema() as url:
        engine = create_engine_for(url, tmp_path)
        upgrade(engine)
        try:
            repo = IncidentRepository(engine)
            store = EvidenceStore(tmp_path / "evidence", log=repo)
            spool = store.root / ".clips-in-progress"
            old = _closed("inc-old")
            repo.upsert(old)
            _left_clip(spool, old, 40)
            live = dataclasses.replace(_closed("inc-live", 100), ended_at=None)
            repo.upsert(live)
            config = EvidenceConfig(
                pre_seconds=0, post_seconds=1, buffer_seconds=2, annotate_clips=False
            )
            recorder = EvidenceRecorder(
                store, repo, config, on_full="drop", max_queued_frames=16, recover=False
            )
            try:
                with Session(engine) as blocker, blocker.begin():
                    lock_head(blocker)  # every chained write waits until this commits
                    recorder.adopt_clips(CAM, reason="analyzer_lost", previous_owner="loser")
                    recorder.open_clip(live)
                    for batch in range(10):
                        for index in range(100 + batch * 8, 108 + batch * 8):
                            recorder.observe(*coded_frame(index, FPS))
                        assert recorder.flush(30), "the evidence thread waits for the adoption"
                    assert recorder.stats.frames_dropped == 0
                    assert (spool / f"inc-old{PART_SUFFIX}").exists(), "the adoption was held"
                assert recorder.flush(30, adoptions=True)
                assert repo.get("inc-old").clip is not None
            finally:
                recorder.close(30)
        finally:
            engine.dispose()


def test_a_failed_chain_entry_keeps_the_clip_for_a_retry_with_its_reason(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: the file went before ``clip.recovered`` was chained, so a failed chain write
    left a clip with no recorded reason and nothing to retry."""
    from safewatch.errors import SafewatchError
    from safewatch.incidents.clips import adopt_clips

    repo = IncidentRepository(engine)
    store = EvidenceStore(tmp_path / "evidence", log=repo)
    spool = store.root / ".clips-in-progress"
    incident = _closed("inc-c")
    repo.upsert(incident)
    part = _left_clip(spool, incident, 10)
    real = repo.record_event

    def blip(*args: object, **kwargs: object) -> object:
        raise SafewatchError("database unreachable a moment")

    monkeypatch.setattr(repo, "record_event", blip)
    first = adopt_clips(spool, store, repo, CAM, reason="analyzer_lost", previous_owner="a1")
    assert list(first.failed) == ["inc-c"] and part.exists(), "the file stays for the retry"
    monkeypatch.setattr(repo, "record_event", real)
    second = adopt_clips(spool, store, repo, CAM, reason="analyzer_lost", previous_owner="a1")
    assert second.completed == ["inc-c"] and not part.exists()
    recovered = [e for e in repo.timeline("inc-c") if e.kind == CLIP_RECOVERED]
    assert len(recovered) == 1 and recovered[0].detail["frames"] == 10
    assert repo.get("inc-c").clip is not None


def test_a_clip_that_keeps_failing_stops_being_retried(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: a clip whose store fails for good was decoded again every 30 s forever on an
    analyzer doing live inference. After the cap it stays in the spool (next claim or start)."""
    from safewatch.incidents import recorder as recorder_module

    monkeypatch.setattr(recorder_module, "_ADOPT_MAX_FAILED_TRIES", 2)
    repo = IncidentRepository(engine)
    store = EvidenceStore(tmp_path / "evidence", log=repo)
    spool = store.root / ".clips-in-progress"
    incident = _closed("inc-d")
    repo.upsert(incident)
    part = _left_clip(spool, incident, 6)
    key = store.key_for("inc-d", camera_id=CAM, at=incident.started_at, suffix=".mp4")
    (store.root / key).mkdir(parents=True)  # a write error that does not go away
    config = EvidenceConfig(pre_seconds=0, post_seconds=1, buffer_seconds=2, annotate_clips=False)
    heir = EvidenceRecorder(store, repo, config, on_full="wait", recover=False)
    try:
        heir.adopt_clips(CAM, reason="analyzer_lost", previous_owner="loser")
        poll(lambda: heir.stats.errors >= 2, 30, "the first try and its one retry")
        time.sleep(4.0)  # a third try would come 2 s after the second
        assert heir.flush(30, adoptions=True)
        assert heir.stats.errors == 2, "tried again past the cap"
    finally:
        heir.close(30)
    assert part.exists() and repo.get("inc-d").clip is None
