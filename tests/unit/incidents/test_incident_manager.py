"""Incident manager lifecycle with synthetic rule events, on a real SQLite file and folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from safewatch.domain import (
    Frame,
    Incident,
    IncidentStatus,
    Phase,
    RuleEvent,
    Severity,
    Track,
    TrackedFrame,
    Zone,
    incident_id,
)
from safewatch.errors import FencedWrite, StorageError
from safewatch.incidents import ChangeKind, EvidenceStore, IncidentChange, IncidentManager
from safewatch.storage import IncidentRepository

T0 = 1_700_000_000.0
CAM = "line-2"
RULE = "hardhat-required"


class CountingRepository(IncidentRepository):
    """The real repository, counting writes (writes are what the manager must keep rare)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.upserts = 0

    def upsert(self, incident, *, reason=None, held_until=None):  # type: ignore[no-untyped-def]
        self.upserts += 1
        super().upsert(incident, reason=reason, held_until=held_until)


@pytest.fixture
def repo(engine: Engine) -> CountingRepository:
    return CountingRepository(engine)


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence")


def zones(camera: str) -> Sequence[Zone]:
    return [Zone("press", camera, ((0.1, 0.5), (0.6, 0.5), (0.6, 0.95)))]


@pytest.fixture
def manager(repo: CountingRepository, store: EvidenceStore) -> IncidentManager:
    return IncidentManager(repo, store, zones)


def event(
    phase: Phase, at: float, confidence: float = 0.6, track: int = 4, started_at: float = T0
) -> RuleEvent:
    return RuleEvent(
        rule_id=RULE,
        rule_kind="ppe",
        camera_id=CAM,
        phase=phase,
        track_ids=(track,),
        started_at=started_at,
        at=at,
        severity=Severity.HIGH,
        confidence=confidence,
        message=f"person #{track} without hardhat",
    )


def frame_at(at: float, camera: str = CAM) -> tuple[TrackedFrame, Frame]:
    seq = round((at - T0) * 10)
    tracks = (Track(4, "person", (100.0, 100.0, 140.0, 200.0), 0.9),)
    tracked = TrackedFrame(camera, seq, at - T0, at, 640, 352, tracks)
    return tracked, Frame(camera, seq, at - T0, at, np.full((352, 640, 3), 80, np.uint8))


def run(manager: IncidentManager, events: Sequence[RuleEvent]) -> list[IncidentChange]:
    changes: list[IncidentChange] = []
    for e in events:
        tracked, frame = frame_at(e.at)
        changes += manager.handle([e], tracked, frame)
    return changes


def episode(track: int = 4, started_at: float = T0) -> list[RuleEvent]:
    """STARTED at +3 s, ONGOING every 0.2 s to +20 s with a rising then falling confidence."""
    events = [event(Phase.STARTED, started_at + 3.0, 0.5, track, started_at)]
    for i in range(1, 86):
        conf = 0.5 + 0.4 * min(i, 40) / 40 - 0.3 * max(i - 60, 0) / 25
        events.append(event(Phase.ONGOING, started_at + 3.0 + 0.2 * i, conf, track, started_at))
    events.append(event(Phase.ENDED, started_at + 20.5, 0.0, track, started_at))
    return events


def test_started_opens_an_incident_with_a_still(
    manager: IncidentManager, repo: CountingRepository, store: EvidenceStore
) -> None:
    changes = run(manager, [event(Phase.STARTED, T0 + 3)])
    assert [c.kind for c in changes] == [ChangeKind.OPENED]
    incident = changes[0].incident
    assert incident.id == incident_id(CAM, RULE, 4, T0)
    assert incident.ended_at is None
    assert incident.snapshot is not None and store.path_of(incident.snapshot).exists()
    assert repo.get(incident.id) == incident
    assert manager.open_incidents == [incident]


def test_full_lifecycle(manager: IncidentManager, repo: CountingRepository) -> None:
    changes = run(manager, episode())
    kinds = [c.kind for c in changes]
    assert kinds[0] is ChangeKind.OPENED and kinds[-1] is ChangeKind.CLOSED
    assert set(kinds[1:-1]) <= {ChangeKind.UPDATED}
    stored = repo.get(changes[0].incident.id)
    assert stored.ended_at == T0 + 20.5
    assert stored.duration == pytest.approx(20.5)
    assert stored.peak_confidence == pytest.approx(0.9)
    assert stored.status is IncidentStatus.OPEN
    assert manager.open_incidents == []


def test_ongoing_writes_are_rare(manager: IncidentManager, repo: CountingRepository) -> None:
    events = episode()
    run(manager, events)
    # 87 events over 17.5 s: open + close + a rising peak persisted at most every 5 s
    assert repo.upserts <= 2 + 4
    assert len(events) > 80


def test_peak_not_yet_persisted_is_written_at_close(
    manager: IncidentManager, repo: CountingRepository
) -> None:
    run(manager, [event(Phase.STARTED, T0 + 3, 0.5), event(Phase.ONGOING, T0 + 3.2, 0.8)])
    key = incident_id(CAM, RULE, 4, T0)
    assert repo.get(key).peak_confidence == 0.5  # not due yet
    run(manager, [event(Phase.ENDED, T0 + 3.4, 0.0)])
    assert repo.get(key).peak_confidence == 0.8


def test_replay_to_the_same_manager_changes_nothing(
    manager: IncidentManager, repo: CountingRepository
) -> None:
    events = episode()
    run(manager, events)
    writes = repo.upserts
    assert run(manager, events) == []
    assert repo.upserts == writes
    assert len(repo.list()) == 1


def test_replay_to_a_fresh_manager_creates_no_duplicate(
    repo: CountingRepository, store: EvidenceStore
) -> None:
    events = episode()
    run(IncidentManager(repo, store), events)
    first = repo.get(incident_id(CAM, RULE, 4, T0))
    run(IncidentManager(repo, store), events)
    assert len(repo.list()) == 1
    assert repo.get(first.id) == first


def test_restart_mid_episode_keeps_the_stored_still(
    repo: CountingRepository, store: EvidenceStore
) -> None:
    events = episode()
    run(IncidentManager(repo, store), events[:10])
    key = incident_id(CAM, RULE, 4, T0)
    snapshot = repo.get(key).snapshot
    assert snapshot is not None
    changes = run(IncidentManager(repo, store), events[10:])
    assert changes[-1].kind is ChangeKind.CLOSED
    assert changes[-1].incident.snapshot == snapshot
    assert repo.get(key).ended_at == T0 + 20.5


def test_ended_without_any_record_still_stores_the_incident(manager: IncidentManager) -> None:
    changes = run(manager, [event(Phase.ENDED, T0 + 9, 0.7)])
    assert [c.kind for c in changes] == [ChangeKind.CLOSED]
    assert changes[0].incident.ended_at == T0 + 9


def test_still_is_replaced_by_a_clearly_better_frame_at_most_once_per_interval(
    repo: CountingRepository, tmp_path: Path
) -> None:
    writes: list[float] = []

    class RecordingStore(EvidenceStore):
        def write_still(self, incident_id, image, *, camera_id, at):  # type: ignore[no-untyped-def]
            writes.append(at)
            return super().write_still(incident_id, image, camera_id=camera_id, at=at)

    manager = IncidentManager(repo, RecordingStore(tmp_path / "ev"), still_interval=10.0)
    run(manager, episode())
    # one still at start; confidence climbs 0.5 -> 0.9, so one rewrite after 10 s, no more
    assert len(writes) == 2


def test_two_tracks_make_two_incidents(manager: IncidentManager) -> None:
    changes = run(
        manager, [event(Phase.STARTED, T0 + 3, track=4), event(Phase.STARTED, T0 + 3, track=5)]
    )
    assert len({c.incident.id for c in changes}) == 2
    assert len(manager.open_incidents) == 2


def test_close_all_at_end_of_stream(manager: IncidentManager, repo: CountingRepository) -> None:
    run(manager, [event(Phase.STARTED, T0 + 3, track=4), event(Phase.STARTED, T0 + 4, track=5)])
    changes = manager.close_all(T0 + 12)
    assert [c.kind for c in changes] == [ChangeKind.CLOSED, ChangeKind.CLOSED]
    assert all(repo.get(c.incident.id).ended_at == T0 + 12 for c in changes)
    assert manager.open_incidents == []
    assert manager.close_all(T0 + 13) == []


def test_memory_of_closed_episodes_is_bounded(
    repo: CountingRepository, store: EvidenceStore
) -> None:
    manager = IncidentManager(repo, store, remember_closed=3)
    for i in range(6):
        start = T0 + 100 * i
        run(manager, [event(Phase.STARTED, start + 1, started_at=start)])
        run(manager, [event(Phase.ENDED, start + 2, started_at=start)])
    assert len(manager._closed) == 3
    assert manager._open == {}


def test_evidence_failure_still_stores_the_incident(repo: CountingRepository) -> None:
    class BrokenStore(EvidenceStore):
        def write_still(self, incident_id, image, *, camera_id, at):  # type: ignore[no-untyped-def]
            raise StorageError("disk full")

    manager = IncidentManager(repo, BrokenStore(Path("/nonexistent")))
    changes = run(manager, [event(Phase.STARTED, T0 + 3)])
    assert changes[0].incident.snapshot is None
    assert repo.get(changes[0].incident.id).snapshot is None


class Wall:
    """The process clock the manager's wait after a refused write runs on, driven by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def paced(manager_of: Callable[[Wall], IncidentManager]) -> tuple[IncidentManager, Wall]:
    """A manager whose process clock runs with the frames it is given (one live camera in real
    time: each frame arrives at its own time); never backwards."""
    wall = Wall()
    manager = manager_of(wall)
    handle = manager.handle

    def timed(
        events: Sequence[RuleEvent], tracked: TrackedFrame, frame: Frame
    ) -> list[IncidentChange]:
        wall.now = max(wall.now, frame.timestamp)
        return handle(events, tracked, frame)

    manager.handle = timed  # type: ignore[method-assign]
    return manager, wall


class FlakyRepository(IncidentRepository):
    """The real repository over SQLite, whose writes fail while ``down`` (a locked file, a
    PostgreSQL restart), as the real one raises them."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.down = False
        self.refused = 0

    def upsert(self, incident, *, reason=None, held_until=None):  # type: ignore[no-untyped-def]
        if self.down:
            self.refused += 1
            raise StorageError("database is locked")
        super().upsert(incident, reason=reason, held_until=held_until)

    def hold(self, incident_id: str, at: float) -> None:
        if self.down:
            self.refused += 1
            raise StorageError("database is locked")
        super().hold(incident_id, at)

    def get(self, incident_id: str) -> Incident:
        if self.down and self.reads_fail:
            raise StorageError("database is locked")
        return super().get(incident_id)

    reads_fail = False


def flaky(engine: Engine, store: EvidenceStore) -> tuple[FlakyRepository, IncidentManager, Wall]:
    """A paced manager over a repository the test can take down."""
    repo = FlakyRepository(engine)
    manager, wall = paced(lambda wall: IncidentManager(repo, store, zones, clock=wall))
    return repo, manager, wall


def test_an_opening_the_database_refused_is_stored_later_with_its_still(
    engine: Engine, store: EvidenceStore
) -> None:
    repo = FlakyRepository(engine)
    failures: list[StorageError] = []
    manager, _ = paced(
        lambda wall: IncidentManager(
            repo, store, zones, on_write_failure=failures.append, clock=wall
        )
    )
    events = episode()
    repo.down = True
    assert run(manager, events[:5]) == []  # STARTED and 0.8 s of ONGOING, all refused
    assert repo.list() == [] and len(failures) >= 1
    repo.down = False
    changes = run(manager, events[5:10])
    # Tried again once its 1 s wait was over, with the incident as it stood then.
    assert [c.kind for c in changes] == [ChangeKind.OPENED]
    stored = repo.get(changes[0].incident.id)
    assert stored.started_at == T0 and stored.snapshot is not None
    assert store.path_of(stored.snapshot).exists()
    run(manager, events[10:])
    closed = repo.get(stored.id)
    assert closed.ended_at == T0 + 20.5 and closed.snapshot == stored.snapshot


def test_a_restart_during_an_outage_still_closes_the_episode_it_resumes(
    engine: Engine, store: EvidenceStore
) -> None:
    """A manager restarted mid-episode reads the stored incident at its first event; with the
    database down that read failed and the event was lost: an ENDED one left it open for good."""
    repo = FlakyRepository(engine)
    events = episode()
    run(IncidentManager(repo, store, zones), events[:10])
    key = incident_id(CAM, RULE, 4, T0)
    snapshot = repo.get(key).snapshot
    assert snapshot is not None
    repo.down = repo.reads_fail = True
    manager, _ = paced(lambda wall: IncidentManager(repo, store, zones, clock=wall))
    assert run(manager, events[10:]) == []  # the rest of the episode, ENDED included: refused
    repo.down = False
    tracked, frame = frame_at(T0 + 64.0)
    changes = manager.handle([], tracked, frame)
    assert [c.kind for c in changes] == [ChangeKind.CLOSED]
    closed = repo.get(key)
    assert closed.ended_at == T0 + 20.5
    assert closed.snapshot == snapshot  # the still taken before the restart is kept


def test_a_closing_the_database_refused_is_stored_later_at_its_own_end(
    engine: Engine, store: EvidenceStore
) -> None:
    repo, manager, _ = flaky(engine, store)
    events = episode()
    run(manager, events[:-1])
    repo.down = True
    assert run(manager, events[-1:]) == []
    # The camera goes on without this episode; the database comes back 40 s later. Each refusal
    # doubles the wait (1 s, then 2 s), so both writes are due again 3 s after that frame.
    assert run(manager, [event(Phase.STARTED, T0 + 61.0, track=9, started_at=T0 + 61.0)]) == []
    repo.down = False
    tracked, frame = frame_at(T0 + 61.5)
    assert manager.handle([], tracked, frame) == [], "not tried again before its wait is over"
    tracked, frame = frame_at(T0 + 64.0)
    changes = manager.handle([], tracked, frame)
    assert sorted(c.kind for c in changes) == [ChangeKind.CLOSED, ChangeKind.OPENED]
    closed = repo.get(incident_id(CAM, RULE, 4, T0))
    assert closed.ended_at == T0 + 20.5, "closed at its end, not when the write went through"
    # And at a stop, an unsaved close also keeps its own end.
    repo.down = True
    run(manager, [event(Phase.ENDED, T0 + 70.0, track=9, started_at=T0 + 61.0)])
    repo.down = False
    manager.close_all(T0 + 3600.0)
    assert repo.get(incident_id(CAM, RULE, 9, T0 + 61.0)).ended_at == T0 + 70.0


def test_a_refused_write_loses_neither_the_frames_other_events_nor_a_one_frame_incident(
    engine: Engine, store: EvidenceStore
) -> None:
    repo, manager, _ = flaky(engine, store)
    run(manager, [event(Phase.STARTED, T0 + 3.0)])
    repo.down = True
    tracked, frame = frame_at(T0 + 4.0)
    crossing = [  # a line crossing starts and ends in one frame
        event(Phase.STARTED, T0 + 4.0, track=7, started_at=T0 + 4.0),
        event(Phase.ENDED, T0 + 4.0, track=7, started_at=T0 + 4.0),
    ]
    assert manager.handle([event(Phase.ENDED, T0 + 4.0), *crossing], tracked, frame) == []
    repo.down = False
    tracked, frame = frame_at(T0 + 6.0)
    changes = manager.handle([], tracked, frame)
    assert sorted((c.incident.track_ids[0], c.kind) for c in changes) == [
        (4, ChangeKind.CLOSED),
        (7, ChangeKind.CLOSED),
    ]
    assert repo.get(incident_id(CAM, RULE, 7, T0 + 4.0)).ended_at == T0 + 4.0


def test_an_end_before_the_start_is_stored_as_a_zero_length_incident(
    manager: IncidentManager, repo: CountingRepository
) -> None:
    # A camera clock stepped back (an NTP step, a restarted worker) between start and end.
    run(manager, [event(Phase.STARTED, T0 + 3.0, started_at=T0 + 3.0)])
    run(manager, [event(Phase.ENDED, T0 - 45.0, started_at=T0 + 3.0)])
    stored = repo.get(incident_id(CAM, RULE, 4, T0 + 3.0))
    assert stored.ended_at == stored.started_at == T0 + 3.0


class LosableFence:
    """A cluster fence that lets writes through until the camera is lost (then refuses them as
    :class:`safewatch.cluster.EpochFence` does once another analyzer holds the lease)."""

    def __init__(self) -> None:
        self.lost = False
        self.cameras: set[str] | None = None  # which cameras are lost (None: all)

    def check(self, session: object, camera_id: str) -> None:
        if self.lost and (self.cameras is None or camera_id in self.cameras):
            raise FencedWrite(camera_id, 1, "other-analyzer", 2)

    def continues(self, session: object, incident: object) -> None:
        return None


def test_fenced_writes_are_dropped_with_one_warning(
    engine: Engine, store: EvidenceStore, caplog: pytest.LogCaptureFixture
) -> None:
    fence = LosableFence()
    repo = IncidentRepository(engine, fence=fence)
    manager, _ = paced(lambda wall: IncidentManager(repo, store, zones, clock=wall))
    events = episode()
    run(manager, events[:5])
    (stored,) = repo.list()
    assert stored.ended_at is None
    fence.lost = True
    with caplog.at_level("WARNING", logger="safewatch.incidents.manager"):
        changes = run(manager, events[5:] + episode(track=7, started_at=T0 + 30))
    assert changes == []
    assert manager.open_incidents == []
    warnings = [r for r in caplog.records if "no longer its owner" in r.getMessage()]
    assert len(warnings) == 1
    assert [i.id for i in repo.list()] == [stored.id]  # nothing written after the loss
    assert repo.get(stored.id).ended_at is None  # left to the new owner


class NotingRecorder:
    """What the manager asks of an evidence recorder, in order (the real one draws and encodes
    on its own thread; here only the order matters: a clip never precedes its incident's row)."""

    def __init__(self, repo: FlakyRepository) -> None:
        self.repo = repo
        self.calls: list[tuple[str, str, bool]] = []
        self.still_frames: list[float] = []

    def observe(self, frame: Frame, tracked: TrackedFrame) -> None:
        return None

    def _note(self, what: str, incident_id_: str) -> None:
        stored = any(i.id == incident_id_ for i in self.repo.list())
        self.calls.append((what, incident_id_, stored))

    def record_still(self, incident_id_: str, frame: Frame, tracked: TrackedFrame, **_: object):  # type: ignore[no-untyped-def]
        self._note("still", incident_id_)
        self.still_frames.append(frame.timestamp)

    def open_clip(self, incident):  # type: ignore[no-untyped-def]
        self._note("open_clip", incident.id)

    def close_clip(self, incident):  # type: ignore[no-untyped-def]
        self._note("close_clip", incident.id)


def test_with_a_recorder_a_delayed_opening_gets_its_still_and_clip_once_its_row_exists(
    engine: Engine, store: EvidenceStore
) -> None:
    repo = FlakyRepository(engine)
    recorder = NotingRecorder(repo)
    manager, _ = paced(
        lambda wall: IncidentManager(repo, store, zones, recorder=recorder, clock=wall)  # type: ignore[arg-type]
    )
    events = episode()
    repo.down = True
    run(manager, events[:3])
    assert recorder.calls == [], "no still or clip for a row that does not exist"
    repo.down = False
    run(manager, events[3:])
    key = incident_id(CAM, RULE, 4, T0)
    assert recorder.calls[:2] == [("still", key, True), ("open_clip", key, True)]
    assert recorder.calls[-1] == ("close_clip", key, True)
    assert all(stored for _, _, stored in recorder.calls)
    # The still shows the frame that opened it, not the one the write went through on (the
    # person may have left the zone by then).
    assert recorder.still_frames[0] == events[0].at < events[3].at


def test_a_database_that_is_down_is_tried_once_per_wait_not_once_per_write(
    engine: Engine, store: EvidenceStore
) -> None:
    """Each refused write waits SQLite's busy timeout (5 s) or a TCP connect timeout. Trying
    every hold, update and waiting write of every frame made one frame with 5 open incidents
    cost five waits, enough to get the rules stage declared hung and restarted."""
    repo, manager, _ = flaky(engine, store)
    tracks = range(1, 6)
    for track in tracks:
        run(manager, [event(Phase.STARTED, T0 + 3.0, track=track)])
    repo.down = True
    per_frame = []
    for i in range(1, 51):  # 10 s at 5 fps, every incident ongoing
        at = T0 + 3.0 + 0.2 * i
        tracked, frame = frame_at(at)
        before = repo.refused
        manager.handle([event(Phase.ONGOING, at, track=t) for t in tracks], tracked, frame)
        per_frame.append(repo.refused - before)
    assert max(per_frame) == 1
    assert sum(per_frame) <= 4  # at 0 s, then after waits of 1, 2 and 4 s
    repo.down = False
    ends = [event(Phase.ENDED, T0 + 13.4, track=t) for t in tracks]
    tracked, frame = frame_at(T0 + 30.0)
    manager.handle(ends, tracked, frame)
    assert sorted(i.ended_at for i in repo.list()) == [T0 + 13.4] * 5


def test_a_close_that_waits_keeps_the_reason_it_closes(
    engine: Engine, store: EvidenceStore
) -> None:
    repo, manager, _ = flaky(engine, store)
    run(manager, [event(Phase.STARTED, T0 + 3.0)])
    repo.down = True
    with manager.closing(CAM, "camera removed from the site file"):
        run(manager, [event(Phase.ENDED, T0 + 4.0)])
    repo.down = False
    manager.close_all(T0 + 60.0)
    key = incident_id(CAM, RULE, 4, T0)
    closed = [e for e in repo.timeline(key) if e.kind == "incident.closed"]
    assert [e.detail.get("reason") for e in closed] == ["camera removed from the site file"]
    assert repo.get(key).ended_at == T0 + 4.0


def test_a_late_opening_gets_the_still_of_its_opening_frame_and_no_clip_of_a_later_moment(
    engine: Engine, store: EvidenceStore
) -> None:
    """Written 10 s late, the clip would have come from the buffer of then (a later moment,
    perhaps after the violation ended); and no still replacement may reach the recorder while
    the row does not exist. The still comes from the frame that opened the incident, kept for
    that: before, a late opening got no still at all, though the right frame was in hand."""
    repo = FlakyRepository(engine)
    recorder = NotingRecorder(repo)
    manager, _ = paced(
        lambda wall: IncidentManager(repo, store, zones, recorder=recorder, clock=wall)  # type: ignore[arg-type]
    )
    events = episode()  # STARTED at +3 s; confidence rises to 0.9 by +11 s
    repo.down = True
    run(manager, [e for e in events if e.at < T0 + 13.0])
    assert recorder.calls == []
    repo.down = False
    run(manager, [e for e in events if e.at >= T0 + 13.0])
    key = incident_id(CAM, RULE, 4, T0)
    assert repo.get(key).ended_at == T0 + 20.5
    # Its still, from the frame that opened it, once the row exists; no clip (its frames are
    # gone), and no still before the row.
    assert recorder.calls[0] == ("still", key, True)
    assert recorder.still_frames[0] == events[0].at
    assert "open_clip" not in [c[0] for c in recorder.calls]
    assert recorder.calls[-1][0] == "close_clip"
    assert all(stored for _, _, stored in recorder.calls)


def test_a_camera_on_an_older_clock_is_not_held_back_by_another_cameras_wait(
    engine: Engine, store: EvidenceStore
) -> None:
    """One manager serves cameras on different clocks (an archive replayed on its file's clock
    beside live cameras). The wait after a refusal is measured on each camera's own clock: a
    wait set on a live camera's frame would otherwise never end for the archive's."""
    repo, manager, wall = flaky(engine, store)
    archive_t0 = T0 - 9 * 365 * 86400.0  # a file from nine years before

    repo.down = True
    run(manager, [event(Phase.STARTED, T0 + 3.0)])  # the live camera's write is refused
    archived = RuleEvent(
        rule_id=RULE,
        rule_kind="ppe",
        camera_id="archive",
        phase=Phase.STARTED,
        track_ids=(2,),
        started_at=archive_t0,
        at=archive_t0,
        severity=Severity.HIGH,
        confidence=0.7,
        message="person #2 without hardhat",
    )
    manager.handle([archived], *frame_at(archive_t0, "archive"))
    repo.down = False
    wall.now += 1.2  # the process clock goes on; the archive's own clock is years behind
    manager.handle([], *frame_at(archive_t0 + 1.2, "archive"))
    assert [i.camera_id for i in repo.list()] == ["archive"]


def test_one_wait_holds_every_camera(engine: Engine, store: EvidenceStore) -> None:
    """One rules thread serves every camera, and each refused try blocks it (a 5 s lock wait):
    a wait per camera made eight cameras try eight times per round, until every frame tried."""
    repo, manager, _ = flaky(engine, store)
    cameras = [f"cam{i}" for i in range(8)]

    def started(camera: str, at: float) -> RuleEvent:
        return dataclasses.replace(event(Phase.STARTED, at, started_at=at), camera_id=camera)

    repo.down = True
    for i in range(50):  # 10 s: every camera's frame, each opening an incident at first
        at = T0 + 0.2 * i
        for camera in cameras:
            manager.handle([started(camera, at)] if i == 0 else [], *frame_at(at, camera))
    assert repo.refused <= 4  # at 0 s, then after waits of 1, 2 and 4 s
    repo.down = False  # the next try is due at 15 s (refused at 0, 1, 3, 7; waits 1, 2, 4, 8 s)
    for camera in cameras:
        manager.handle([], *frame_at(T0 + 15.2, camera))
    assert sorted(i.camera_id for i in repo.list()) == cameras


def test_closing_everything_after_a_lost_camera_does_not_stop_halfway(
    engine: Engine, store: EvidenceStore
) -> None:
    """A fenced write drops every episode of the camera; close_all went on to the next key of
    that camera and raised KeyError, so the other cameras' incidents were left open."""
    fence = LosableFence()
    repo = IncidentRepository(engine, fence=fence)
    manager = IncidentManager(repo, store, zones)
    run(manager, [event(Phase.STARTED, T0 + 3.0, track=1), event(Phase.STARTED, T0 + 3.0, track=2)])
    other = dataclasses.replace(event(Phase.STARTED, T0 + 3.0, track=3), camera_id="dock")
    manager.handle([other], *frame_at(T0 + 3.0, "dock"))
    fence.lost = True  # the line camera (not the dock) now belongs to another analyzer
    fence.cameras = {CAM}
    manager.close_all(T0 + 10.0)
    assert manager.open_incidents == []
    dock = repo.get(incident_id("dock", RULE, 3, T0))
    assert dock.ended_at == T0 + 10.0


def test_a_refusal_is_forgotten_with_the_incidents_it_held_back(
    engine: Engine, store: EvidenceStore
) -> None:
    """The episodes a refused write left in memory are dropped (the camera changed owner):
    /readyz stayed degraded with "0 incident(s) held in memory ... last write refused" until
    the next write went through, hours later at a quiet site."""
    repo, manager, _ = flaky(engine, store)
    repo.down = True
    run(manager, episode()[:5])
    assert manager.unsaved == 1 and manager.refused is not None
    manager.forget_camera(CAM)
    assert manager.unsaved == 0
    assert manager.refused is None
