"""The rules stage: real tracker, rule engine and incident manager on SQLite, in order."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from runtime_fakes import person_at

from patience import poll
from safewatch.config.site import TrackerConfig
from safewatch.domain import Detections, Frame, RuleEvent, TrackedFrame
from safewatch.errors import StorageError
from safewatch.incidents import ChangeKind, EvidenceStore, IncidentChange, IncidentManager
from safewatch.rules import RuleEngine, load_rules
from safewatch.runtime.evaluation import RulesWorker
from safewatch.runtime.inference import Analysed
from safewatch.runtime.metrics import RuntimeMetrics
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.track import CameraTracker

RULES = """
version: 1
zones:
  everywhere: {camera: cam, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}
rules:
  - {id: keep-out, kind: zone_intrusion, zone: everywhere, objects: [person], min_duration: 0s}
"""


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[IncidentRepository]:
    engine = create_engine_for("sqlite:///db.sqlite", tmp_path)
    yield IncidentRepository(engine)
    engine.dispose()


def analysed(
    seq: int, detections: Detections, camera: str = "cam", incarnation: int = 1
) -> Analysed:
    now = time.time()
    frame = Frame(camera, seq, seq * 0.2, now - 0.05, np.zeros((48, 64, 3), np.uint8))
    return Analysed(frame, detections, True, incarnation, now - 0.05, now - 0.02, now - 0.01, 1)


def build(
    tmp_path: Path,
    repository: IncidentRepository,
    metrics: RuntimeMetrics,
    *,
    replays_from_start: bool = False,
    on_changes: Callable[[Sequence[IncidentChange]], None] = lambda _changes: None,
) -> RulesWorker:
    (tmp_path / "rules.yaml").write_text(RULES)
    rules = load_rules(tmp_path / "rules.yaml")
    manager = IncidentManager(repository, EvidenceStore(tmp_path / "evidence"))
    return RulesWorker(
        lambda camera: CameraTracker(TrackerConfig(), camera, frame_rate=5.0),
        RuleEngine(rules),
        manager,
        metrics,
        replays_from_start=lambda _camera: replays_from_start,
        on_changes=on_changes,
    )


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    poll(condition, timeout, period=0.01)


def test_incidents_open_live_and_close_at_stop(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    metrics = RuntimeMetrics()
    worker = build(tmp_path, repository, metrics)
    seen: list[Sequence[IncidentChange]] = []
    worker.add_listener(lambda _item, _tracked, _events, changes: seen.append(changes))
    worker.start()
    for seq in range(6):
        worker.submit(analysed(seq, person_at(20 + seq, 10)))
    wait_for(lambda: len(seen) == 6)
    opened = [c for changes in seen for c in changes if c.kind is ChangeKind.OPENED]
    assert len(opened) == 1
    assert repository.get(opened[0].incident.id).ended_at is None  # open while it goes on
    assert worker.counters()["cam"].analysed == 6
    closed = worker.stop(timeout=5.0)
    assert [c.kind for c in closed] == [ChangeKind.CLOSED]
    stored = repository.get(opened[0].incident.id)
    assert stored.ended_at is not None
    assert metrics.frame_to_incident._sum.get() > 0  # observed once, from the frame's capture
    assert metrics.incidents.labels(kind="opened")._value.get() == 1


def test_a_camera_finished_with_a_reason_chains_it_with_each_incident_it_closes(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    worker = build(tmp_path, repository, RuntimeMetrics())
    worker.start()
    for seq in range(4):
        worker.submit(analysed(seq, person_at(30, 10)))
    reason = "camera removed from the site file while it ran"
    assert worker.finish_camera("cam", timeout=5.0, reason=reason)
    for seq in range(4, 8):  # it comes back: its next incident ends without that reason
        worker.submit(analysed(seq, person_at(30, 10), incarnation=2))
    worker.stop(timeout=5.0)
    first, second = sorted(repository.list(), key=lambda i: i.started_at)
    reasons = [
        [e.detail.get("reason") for e in repository.timeline(i.id) if e.kind == "incident.closed"]
        for i in (first, second)
    ]
    assert reasons == [[reason], [None]]


def test_closes_made_without_a_frame_reach_the_dashboard(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    """The frame listeners were the only way incident changes reached the dashboard (the
    incident feed, the Live panel) in a single-host serve, and a camera finished (removed,
    reconfigured, restarted behind its last frame) or gone dark closes its incidents with no
    frame: the dashboard showed them ongoing until a reload."""
    told: list[tuple[str, str]] = []
    worker = build(
        tmp_path,
        repository,
        RuntimeMetrics(),
        on_changes=lambda changes: told.extend((str(c.kind), c.incident.id) for c in changes),
    )
    framed: list[str] = []
    worker.add_listener(lambda _f, _t, _e, changes: framed.extend(str(c.kind) for c in changes))
    # Driven on this thread, as the rules thread would, so that no sweep races a frame.
    for seq in range(4):
        worker.submit(analysed(seq, person_at(30, 10)))
        worker._evaluate(worker._queue.get_nowait())
    worker._finish("cam", "camera removed")
    (incident,) = repository.list()
    assert framed == ["opened"]
    assert told == [("closed", incident.id)]
    for seq in range(4, 8):  # it comes back, then goes dark: the silence sweep closes it
        worker.submit(analysed(seq, person_at(30, 10), incarnation=2))
        worker._evaluate(worker._queue.get_nowait())
    worker._end_silent(time.monotonic() + 120.0)
    second = max(repository.list(), key=lambda i: i.started_at)
    assert second.ended_at is not None
    assert told[-1] == ("closed", second.id)
    assert framed == ["opened", "opened"]


def test_finishing_a_camera_closes_its_incidents_after_its_queued_frames(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    worker = build(tmp_path, repository, RuntimeMetrics())
    worker.start()
    for seq in range(4):
        worker.submit(analysed(seq, person_at(30, 10)))
    assert worker.finish_camera("cam", timeout=5.0)
    (incident,) = repository.list()
    assert incident.ended_at is not None
    assert "cam" not in worker.counters()  # its tracker and state are gone
    for seq in range(4, 8):  # the camera comes back (reconfigured): a fresh episode
        worker.submit(analysed(seq, person_at(30, 10), incarnation=2))
    worker.stop(timeout=5.0)
    assert len(repository.list()) == 2


def test_a_restarted_worker_replaying_its_file_raises_no_incident_twice(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    """An archive camera's worker that crashes reads its file from the start again, while the
    camera's tracks and open episodes go on. Evaluated again, the replayed frames opened every
    incident a second time under new track ids."""
    worker = build(tmp_path, repository, RuntimeMetrics(), replays_from_start=True)
    worker.start()
    t0 = 1_700_000_000.0

    def on_file_clock(seq: int, incarnation: int) -> Analysed:
        item = analysed(seq, person_at(2 + 3.5 * seq, 10), incarnation=incarnation)  # walks
        frame = replace(item.frame, timestamp=t0 + seq * 0.2)
        return replace(item, frame=frame)

    for seq in range(10):
        worker.submit(on_file_clock(seq, 1))
    for seq in range(15):  # the restarted worker: the same file from its first frame
        worker.submit(on_file_clock(seq, 2))
    assert worker.finish_camera("cam", timeout=5.0)  # after its queued frames
    worker.stop(timeout=5.0)
    (incident,) = repository.list()
    assert incident.started_at < t0 + 1.0 and incident.ended_at == pytest.approx(t0 + 14 * 0.2)
    assert worker.replayed_frames == 10


def test_a_live_worker_restarted_behind_its_last_frame_starts_afresh_and_stays_watching(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    """A live camera's restarted worker is stamped from the wall clock, which can lie behind its
    last frame (stamps that ran ahead, a host clock stepped back). Skipping until the clock
    caught up left the camera blind; going on closed incidents before they started. Its open
    incident ends at its last frame, and the new run is watched at once."""
    worker = build(tmp_path, repository, RuntimeMetrics())
    worker.start()
    t0 = 1_700_000_000.0

    def stamped(seq: int, at: float, incarnation: int) -> Analysed:
        item = analysed(seq, person_at(30, 10), incarnation=incarnation)
        return replace(item, frame=replace(item.frame, timestamp=at))

    for seq in range(10):
        worker.submit(stamped(seq, t0 + 60.0 + 0.2 * seq, 1))
    for seq in range(10):  # restarted 50 s behind
        worker.submit(stamped(10 + seq, t0 + 10.0 + 0.2 * seq, 2))
    assert worker.finish_camera("cam", timeout=5.0)
    worker.stop(timeout=5.0)
    after, before = sorted(repository.list(), key=lambda i: i.started_at)
    # Each from its track's second frame (min_frames 2) to its run's last frame.
    assert (before.started_at, before.ended_at) == pytest.approx((t0 + 60.2, t0 + 61.8))
    assert (after.started_at, after.ended_at) == pytest.approx((t0 + 10.2, t0 + 11.8))
    assert worker.replayed_frames == 0


class _BrokenIncidents:
    def __init__(self) -> None:
        self.calls = 0

    def handle(
        self, events: Sequence[RuleEvent], tracked: TrackedFrame, frame: Frame
    ) -> list[IncidentChange]:
        self.calls += 1
        raise StorageError("database is locked")

    def close_all(self, at: float) -> list[IncidentChange]:
        return []

    def forget_camera(self, camera_id: str) -> list[object]:
        return []


class _NoRules:
    def evaluate(self, tracked: TrackedFrame) -> list[RuleEvent]:
        return []

    def finish(self, camera_id: str, at: float | None = None) -> list[RuleEvent]:
        return []


def test_dropping_a_lost_camera_writes_nothing_and_forgets_its_open_incident(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    """serve --cluster: a camera whose lease was lost stops without closing its incident (the
    new owner does), and nothing of it is written, not even at the final stop."""
    worker = build(tmp_path, repository, RuntimeMetrics())
    worker.start()
    for seq in range(4):
        worker.submit(analysed(seq, person_at(30, 10)))
    assert worker.drop_camera("cam", timeout=5.0)
    (incident,) = repository.list()
    assert incident.ended_at is None, "left open for the camera's new owner"
    with repository.engine.connect() as connection:
        last_seq = connection.exec_driver_sql("SELECT max(seq) FROM chain_entries").scalar()
    assert "cam" not in worker.counters()
    assert worker.stop(timeout=5.0) == [], "the stop closes nothing of the lost camera"
    assert repository.get(incident.id).ended_at is None
    with repository.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT max(seq) FROM chain_entries").scalar() == last_seq


def test_a_drop_that_timed_out_is_waited_for_not_queued_again(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    """A drop refused by a full queue queues nothing; one queued but not yet processed is
    waited for by the next call (one marker, not one per call) until the stage processed it.
    The stage's thread is not started until the end: nothing here depends on timing."""
    (tmp_path / "rules.yaml").write_text(RULES)
    worker = RulesWorker(
        lambda camera: CameraTracker(TrackerConfig(), camera, frame_rate=5.0),
        RuleEngine(load_rules(tmp_path / "rules.yaml")),
        IncidentManager(repository, EvidenceStore(tmp_path / "evidence")),
        RuntimeMetrics(),
        queue_size=2,
    )
    for seq in range(2):  # the queue is full
        worker.submit(analysed(seq, person_at(30, 10)))
    assert not worker.drop_camera("cam", timeout=0.01)
    assert worker.depth() == 2, "refused: not queued"
    for _ in range(2):  # room again (the frames are not needed here)
        worker._queue.get_nowait()
    assert not worker.drop_camera("cam", timeout=0.01)  # queued, not processed
    assert not worker.drop_camera("cam", timeout=0.01)
    assert worker.depth() == 1, "the second call waits for the same marker"
    worker.start()
    try:
        assert worker.drop_camera("cam", timeout=30.0)
        assert worker.depth() == 0
    finally:
        worker.stop(timeout=5.0)


def test_a_drop_that_fails_still_releases_its_waiter(
    tmp_path: Path, repository: IncidentRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """drop_camera waits on the marker it queued, not a new one: if forgetting the run raised,
    that marker was never set and the lost camera stayed stopping until the service stopped."""
    worker = build(tmp_path, repository, RuntimeMetrics())

    def broken(camera_id: str) -> None:
        raise RuntimeError("forgetting failed")

    monkeypatch.setattr(worker, "_drop", broken)
    worker.start()
    try:
        assert worker.drop_camera("cam", timeout=30.0)
    finally:
        worker.stop(timeout=5.0)


def test_a_storage_failure_is_counted_and_the_stage_goes_on() -> None:
    metrics = RuntimeMetrics()
    incidents = _BrokenIncidents()
    worker = RulesWorker(
        lambda camera: CameraTracker(TrackerConfig(), camera), _NoRules(), incidents, metrics
    )
    worker.start()
    for seq in range(3):
        worker.submit(analysed(seq, Detections.empty()))
    wait_for(lambda: incidents.calls == 3)
    assert worker.alive()
    assert metrics.errors.labels(stage="storage")._value.get() == 3
    worker.stop(timeout=5.0)


def test_person_seconds_by_ppe_state_reach_the_metrics(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    # A camera whose models can see hard hats but never do: every person-second is unknown.
    (tmp_path / "rules.yaml").write_text(RULES)
    metrics = RuntimeMetrics()
    worker = RulesWorker(
        lambda camera: CameraTracker(
            TrackerConfig(), camera, frame_rate=5.0, ppe_items={"hardhat"}
        ),
        RuleEngine(load_rules(tmp_path / "rules.yaml")),
        IncidentManager(repository, EvidenceStore(tmp_path / "evidence")),
        metrics,
    )
    tracks: list[int] = []
    worker.add_listener(
        lambda _item, tracked, _events, _changes: tracks.append(len(tracked.tracks))
    )
    worker.start()
    for seq in range(6):
        worker.submit(analysed(seq, person_at(20 + seq, 10)))
    wait_for(lambda: len(tracks) == 6)
    worker.stop(timeout=5.0)
    expected = 0.2 * sum(tracks[1:])  # each frame after the first books its 0.2 s step
    assert expected > 0
    unknown = metrics.registry.get_sample_value(
        "safewatch_camera_ppe_person_seconds_total",
        {"camera": "cam", "item": "hardhat", "state": "unknown"},
    )
    assert unknown == pytest.approx(expected)
    present = metrics.registry.get_sample_value(
        "safewatch_camera_ppe_person_seconds_total",
        {"camera": "cam", "item": "hardhat", "state": "present"},
    )
    assert present is None


def test_frames_of_a_run_that_ended_are_never_evaluated(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    """serve --cluster: a camera lost, then owned again. A frame of its old run that was still in
    an inference batch arrives after the drop (or after the new run started): it opens nothing,
    whatever epoch the camera is held at now; the new run's frames are evaluated."""
    worker = build(tmp_path, repository, RuntimeMetrics())
    worker.start()
    for seq in range(2):
        worker.submit(analysed(seq, Detections.empty(), incarnation=1))
    assert worker.drop_camera("cam", timeout=5.0)
    for seq in range(2, 6):  # the old run's late frames: a violation in each
        worker.submit(analysed(seq, person_at(30, 10), incarnation=1))
    for seq in range(6, 8):  # the new run starts with nothing to report
        worker.submit(analysed(seq, Detections.empty(), incarnation=2))
    worker.submit(analysed(8, person_at(30, 10), incarnation=1))  # one more late old frame
    wait_for(lambda: worker.ended_run_frames == 5)
    wait_for(lambda: worker.counters().get("cam") is not None)
    assert repository.list() == []
    assert worker.counters()["cam"].analysed == 2
    worker.stop(timeout=5.0)


def test_a_finish_that_timed_out_still_removes_the_cameras_series(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    """The service forgets a stopped camera's series once finish_camera returns; when that
    timed out (the rules stage behind), the frames still queued re-created them for good."""
    metrics = RuntimeMetrics()
    worker = build(tmp_path, repository, metrics)
    for seq in range(4):
        worker.submit(analysed(seq, person_at(30, 10)))
    assert not worker.finish_camera("cam", timeout=0.01)  # the stage is not even running
    metrics.forget_camera("cam")  # what the service does next
    worker.start()
    worker.stop(timeout=30.0)  # after the queued frames and the finish marker
    assert 'camera="cam"' not in metrics.render().decode()
