"""A camera outage ends open episodes at their last frame instead of counting as violation time.

A zone-level rule (occupancy, blocked exit) has no track to lose: an episode violating on both
sides of a 30-minute outage was stored as one 30-minute incident. Real rule engine, incident
manager and SQLite; tracked frames made by hand.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import MagicMock

import numpy as np
import pytest

from safewatch.domain import Frame, Track, TrackedFrame
from safewatch.errors import StorageError
from safewatch.incidents import EvidenceStore, IncidentManager
from safewatch.pipeline.step import RuleStep
from safewatch.rules import RuleEngine, load_rules
from safewatch.runtime.evaluation import RulesWorker
from safewatch.storage import IncidentRepository, create_engine_for

RULES = """
version: 1
zones:
  landing: {camera: cam, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}
rules:
  - {id: one-at-landing, kind: occupancy, zone: landing, objects: [person], max_count: 1,
     min_duration: 1s}
"""
T0 = 1_700_000_000.0


def crowded(at: float, seq: int) -> tuple[Frame, TrackedFrame]:
    tracks = tuple(
        Track(i, "person", (10.0 + 30 * i, 20.0, 30.0 + 30 * i, 60.0), 0.9) for i in (1, 2)
    )
    tracked = TrackedFrame("cam", seq, at - T0, at, 128, 96, tracks)
    return Frame("cam", seq, at - T0, at, np.zeros((96, 128, 3), np.uint8)), tracked


@pytest.fixture
def built(tmp_path: Path) -> Iterator[tuple[RuleStep, IncidentManager, IncidentRepository]]:
    """The occupancy rule's step over a real incident manager and SQLite file."""
    (tmp_path / "rules.yaml").write_text(RULES)
    engine = create_engine_for("sqlite:///db.sqlite", tmp_path)
    repository = IncidentRepository(engine)
    manager = IncidentManager(repository, EvidenceStore(tmp_path / "evidence"))
    yield (
        RuleStep("cam", RuleEngine(load_rules(tmp_path / "rules.yaml")), manager),
        manager,
        repository,
    )
    engine.dispose()


def run(step: RuleStep, times: list[float]) -> None:
    for seq, at in enumerate(times):
        step.apply(*crowded(at, seq))


def test_an_outage_splits_a_zone_level_incident_and_says_why(
    built: tuple[RuleStep, IncidentManager, IncidentRepository],
) -> None:
    step, manager, repository = built
    before = [T0 + 0.2 * i for i in range(30)]  # 6 s crowded
    after = [T0 + 1800.0 + 0.2 * i for i in range(30)]  # 30 min later: crowded again
    run(step, before + after)
    manager.close_all(after[-1])
    first, second = sorted(repository.list(), key=lambda i: i.started_at)
    assert (first.started_at, first.ended_at) == (T0, before[-1])
    assert (second.started_at, second.ended_at) == (after[0], after[-1])
    reasons = [
        e.detail.get("reason") for e in repository.timeline(first.id) if e.kind == "incident.closed"
    ]
    assert reasons == ["no frame for 1794 s"]


def test_time_lapse_sampling_is_no_outage(
    built: tuple[RuleStep, IncidentManager, IncidentRepository],
) -> None:
    """A camera analysed once every 2 minutes: each gap is its usual interval, not an outage."""
    step, manager, repository = built
    run(step, [T0 + 120.0 * i for i in range(6)])
    manager.close_all(T0 + 600.0)
    (incident,) = repository.list()
    assert (incident.started_at, incident.ended_at) == (T0, T0 + 600.0)


def test_a_camera_that_goes_dark_closes_its_incidents_without_waiting_for_a_frame(
    built: tuple[RuleStep, IncidentManager, IncidentRepository],
) -> None:
    """The outage was noticed only when the next frame came: a camera dark for hours kept its
    incident open all that time. The serving loop now asks every second or so."""
    step, _, repository = built
    assert step.end_if_silent(3600.0) is None  # no frame yet: nothing to end
    step.apply(*crowded(T0, 0))
    assert step.end_if_silent(3600.0) is None  # one frame: its usual interval is unknown
    run(step, [T0 + 0.2 * i for i in range(1, 30)])  # 6 s crowded, then nothing
    assert step.end_if_silent(30.0) is None  # dark for 30 s: not an outage yet
    (incident,) = repository.list()
    assert incident.ended_at is None
    ended = step.end_if_silent(61.0)
    assert ended is not None
    events, changes = ended
    assert [str(e.phase) for e in events] == ["ended"] and len(changes) == 1
    (incident,) = repository.list()
    assert incident.ended_at == T0 + 0.2 * 29  # at its last frame, not when noticed
    reasons = [
        e.detail.get("reason")
        for e in repository.timeline(incident.id)
        if e.kind == "incident.closed"
    ]
    assert reasons == ["no frame for 61 s"]
    assert step.end_if_silent(120.0) is None  # once per silence
    run(step, [T0 + 600.0 + 0.2 * i for i in range(10)])  # back: a new incident, no error
    assert len(repository.list()) == 2


def test_the_rules_worker_ends_a_silent_cameras_episodes_by_arrival_time(
    built: tuple[RuleStep, IncidentManager, IncidentRepository],
) -> None:
    """The silence is measured where frames are handed to the rules stage: a frame that stage
    has not evaluated yet (it stalled, or a restarted archive camera's replay it skips) is no
    silence; and the evidence recorder is told, clips or not, once per silence."""
    step, _, repository = built
    run(step, [T0 + 0.2 * i for i in range(30)])
    silent: list[str] = []
    worker = RulesWorker(
        MagicMock(), MagicMock(), MagicMock(), MagicMock(), on_silent=silent.append
    )
    camera = MagicMock()
    camera.step.rules = step
    worker._cameras["cam"] = camera
    worker._end_silent(time.monotonic() + 61.0)  # no frame handed over yet: not judged
    assert silent == []
    worker._arrived["cam"] = time.monotonic()  # a frame handed over (still queued)
    worker._end_silent(time.monotonic() + 30.0)
    assert silent == [] and repository.list()[0].ended_at is None
    worker._end_silent(time.monotonic() + 61.0)
    assert repository.list()[0].ended_at == T0 + 0.2 * 29
    assert silent == ["cam"]  # serve finishes the clips of its closed incidents
    worker._end_silent(time.monotonic() + 90.0)
    assert silent == ["cam"]


def test_a_failing_camera_does_not_stop_the_others_or_the_thread(
    built: tuple[RuleStep, IncidentManager, IncidentRepository],
) -> None:
    step, _, repository = built
    run(step, [T0 + 0.2 * i for i in range(30)])
    worker = RulesWorker(MagicMock(), MagicMock(), MagicMock(), MagicMock())
    broken = MagicMock()
    broken.step.rules.end_if_silent.side_effect = KeyError("a bug")
    good = MagicMock()
    good.step.rules = step
    worker._cameras.update({"broken": broken, "cam": good})
    now = time.monotonic()
    worker._arrived.update({"broken": now, "cam": now})
    worker._end_silent(now + 61.0)  # logged and counted, not raised
    assert repository.list()[0].ended_at == T0 + 0.2 * 29


def test_a_stalled_rules_stage_is_no_silence_of_its_cameras(
    built: tuple[RuleStep, IncidentManager, IncidentRepository],
) -> None:
    """While the rules thread hangs (a database write), producers block on its full queue and no
    camera's arrival moves; swept right after, every camera looked silent and its incidents
    closed, to reopen with a second alert from the queued frames. The clock starts again."""
    step, _, repository = built
    run(step, [T0 + 0.2 * i for i in range(30)])
    worker = RulesWorker(MagicMock(), MagicMock(), MagicMock(), MagicMock())
    camera = MagicMock()
    camera.step.rules = step
    worker._cameras["cam"] = camera
    stalled_at = time.monotonic()
    worker._arrived["cam"] = stalled_at
    resumed = stalled_at + 90.0  # the thread comes back after 90 s
    worker._stalled(resumed)
    worker._end_silent(resumed + 1.0)
    assert repository.list()[0].ended_at is None
    worker._end_silent(resumed + 61.0)  # really dark a minute after: an outage
    assert repository.list()[0].ended_at == T0 + 0.2 * 29


def test_the_rules_loop_notices_its_own_stall() -> None:
    worker = RulesWorker(MagicMock(), MagicMock(), MagicMock(), MagicMock())
    long_ago = time.monotonic() - 100.0
    worker.heartbeat = long_ago  # its last turn, as after a hung write
    worker._arrived["cam"] = long_ago
    before = time.monotonic()
    worker.start()
    worker._queue.put(None)  # one turn, then stop
    assert worker._thread is not None
    worker._thread.join(10)
    assert worker._arrived["cam"] >= before


def test_a_close_the_database_refused_is_written_while_every_camera_is_dark(
    tmp_path: Path,
) -> None:
    """A site-wide network outage: the only camera goes dark and the database refuses the close
    of its incident. Refused writes were tried again only with a camera's next frame, so the
    incident stayed open until the network came back; the silence sweep now tries them."""
    (tmp_path / "rules.yaml").write_text(RULES)
    engine = create_engine_for("sqlite:///db.sqlite", tmp_path)
    repository = IncidentRepository(engine)
    clock = [0.0]
    manager = IncidentManager(
        repository, EvidenceStore(tmp_path / "evidence"), clock=lambda: clock[0]
    )
    step = RuleStep("cam", RuleEngine(load_rules(tmp_path / "rules.yaml")), manager)
    run(step, [T0 + 0.2 * i for i in range(30)])
    worker = RulesWorker(MagicMock(), MagicMock(), manager, MagicMock())
    camera = MagicMock()
    camera.step.rules = step
    camera.step.last = step.last
    worker._cameras["cam"] = camera
    now = time.monotonic()
    worker._arrived["cam"] = now
    real_upsert = repository.upsert
    repository.upsert = MagicMock(side_effect=StorageError("server closed the connection"))
    try:
        worker._end_silent(now + 61.0)  # the close is refused and kept
        assert repository.list()[0].ended_at is None
        repository.upsert = real_upsert  # the database is back; no camera is
        worker._end_silent(now + 62.0)  # within the manager's wait after a refusal: not tried
        assert repository.list()[0].ended_at is None
        clock[0] += 1.0
        worker._end_silent(now + 63.0)
        assert repository.list()[0].ended_at == T0 + 0.2 * 29
    finally:
        engine.dispose()
