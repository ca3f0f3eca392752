"""The PPE-verifiable share: counted per camera and item, judged in /readyz, shown on the tile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from runtime_fakes import person_at
from test_runtime_evaluation import RULES, analysed, wait_for

from safewatch.api import ApiSettings, create_app
from safewatch.api.camera_state import tile_state
from safewatch.config.runtime import WatchdogConfig
from safewatch.config.site import TrackerConfig
from safewatch.domain import Detections, TrackedFrame
from safewatch.incidents import EvidenceStore, IncidentManager
from safewatch.rules import RuleEngine, load_rules
from safewatch.runtime.evaluation import RulesWorker
from safewatch.runtime.health import (
    ComponentHealth,
    Liveness,
    PPECheck,
    Readiness,
    camera_readiness,
    overall,
)
from safewatch.runtime.metrics import CameraStatus, RuntimeMetrics
from safewatch.runtime.ppe_coverage import ItemCoverage, PPECoverage
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.track import CameraTracker

NOW = 1_800_000_000.0
OK = ComponentHealth(ok=True, message="ok")

STREAMING = CameraStatus(
    camera_id="yard", name="Yard", worker_state="running", source_state="streaming", message="",
    pid=None, incarnation=1, restarts=0, fps_target=5.0, decoded=100, sampled=100, reconnects=0,
    bad_packets=0, source_dropped=0, mailbox_dropped=0, torn_dropped=0, stale_dropped=0,
    inferred=100, motion_skipped=0, analysed=100, decode_fps=5.0, analysed_fps=5.0,
    last_decoded_at=NOW, last_inferred_at=NOW, last_evaluated_at=NOW, memory_bytes=None,
)  # fmt: skip


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[IncidentRepository]:
    engine = create_engine_for("sqlite:///db.sqlite", tmp_path)
    yield IncidentRepository(engine)
    engine.dispose()


def coverage(item: str, verified: float, total: float) -> ItemCoverage:
    return ItemCoverage(item, 600.0, verified, total, verified, total)


def test_the_share_is_taken_over_the_window_and_old_time_drops_out() -> None:
    counted = PPECoverage(window=60.0, bucket=10.0)
    for second in range(60):  # one person, checked for the first 30 s only
        counted.add("hardhat", second < 30, 1.0, NOW + second)
    (first,) = counted.items(NOW + 59)
    assert first.person_seconds == pytest.approx(60.0)
    assert first.share == pytest.approx(0.5)
    # 40 s later the checked half has left the window; the totals keep everything.
    (later,) = counted.items(NOW + 99)
    assert later.person_seconds == pytest.approx(20.0)
    assert later.share == pytest.approx(0.0)
    assert later.total_person_seconds == pytest.approx(60.0)
    assert later.total_verified_seconds == pytest.approx(30.0)
    # Nobody in view for a whole window: no share (not 0 %: there was nothing to check).
    (empty,) = counted.items(NOW + 500)
    assert empty.share is None and empty.total_person_seconds == pytest.approx(60.0)
    with pytest.raises(ValueError, match="bucket"):
        PPECoverage(window=5.0, bucket=10.0)


def _hardhat_worker(
    tmp_path: Path, repository: IncidentRepository, config: TrackerConfig
) -> RulesWorker:
    """A rules stage whose cameras' models can see hard hats, tracked with ``config``."""
    (tmp_path / "rules.yaml").write_text(RULES)
    return RulesWorker(
        lambda camera: CameraTracker(config, camera, frame_rate=5.0, ppe_items={"hardhat"}),
        RuleEngine(load_rules(tmp_path / "rules.yaml")),
        IncidentManager(repository, EvidenceStore(tmp_path / "evidence")),
        RuntimeMetrics(),
    )


def test_the_rules_stage_reports_each_cameras_share(
    tmp_path: Path,
    repository: IncidentRepository,
) -> None:
    # The models can see hard hats but never do: every person-second is unknown (share 0).
    worker = _hardhat_worker(tmp_path, repository, TrackerConfig())
    tracks: list[int] = []
    worker.add_listener(lambda _i, tracked, _e, _c: tracks.append(len(tracked.tracks)))
    worker.start()
    try:
        for seq in range(6):
            worker.submit(analysed(seq, person_at(20 + seq, 10)))
        wait_for(lambda: len(tracks) == 6)
        (item,) = worker.counters()["cam"].ppe
    finally:
        worker.stop(timeout=5.0)
    assert item.item == "hardhat"
    assert item.person_seconds == pytest.approx(0.2 * sum(tracks[1:]))
    assert item.person_seconds > 0 and item.share == 0.0


PPE_RULES = """
version: 1
rules:
  - {id: hats, kind: ppe, require: [hardhat]}
  - {id: forklift-tags, kind: ppe, objects: [forklift], require: [vest]}
"""


def test_required_items_nobody_reported_are_unknown_person_seconds(
    tmp_path: Path,
    repository: IncidentRepository,
) -> None:
    """A camera whose PPE model has no ``labels:`` map and never fires: the tracker reports no
    item, yet the rules require hard hats there, so its persons are unknown person-seconds
    (share 0, the /readyz warning's input) rather than nothing at all."""
    (tmp_path / "rules.yaml").write_text(PPE_RULES)
    engine = RuleEngine(load_rules(tmp_path / "rules.yaml"))
    metrics = RuntimeMetrics()
    worker = RulesWorker(
        lambda camera: CameraTracker(TrackerConfig(), camera, frame_rate=5.0),  # no items known
        engine,
        IncidentManager(repository, EvidenceStore(tmp_path / "evidence")),
        metrics,
        ppe_required=engine.ppe_required,
    )
    tracks: list[int] = []
    attributes: list[dict[str, object]] = []

    def listen(_frame: object, tracked: TrackedFrame, _events: object, _changes: object) -> None:
        tracks.append(len(tracked.tracks))
        attributes.extend(dict(t.attributes) for t in tracked.tracks)

    worker.add_listener(listen)
    worker.start()
    try:
        for seq in range(6):
            worker.submit(analysed(seq, person_at(20 + seq, 10)))
        wait_for(lambda: len(tracks) == 6)
        items = worker.counters()["cam"].ppe
    finally:
        worker.stop(timeout=5.0)
    assert sum(tracks) > 0 and all(a == {} for a in attributes), "the tracker reports no item"
    (item,) = items  # the vest is required of forklifts only: persons are not booked for it
    seconds = 0.2 * sum(tracks[1:])
    assert item.item == "hardhat" and item.share == 0.0
    assert item.person_seconds == pytest.approx(seconds) and seconds > 0
    counted = metrics.ppe_person_seconds.labels(camera="cam", item="hardhat", state="unknown")
    assert counted._value.get() == pytest.approx(seconds)


def test_ppe_only_subjects_add_no_person_seconds(
    tmp_path: Path,
    repository: IncidentRepository,
) -> None:
    """A weakly detected box tracked for PPE (``low_score_tracks``) is no person to the share."""
    worker = _hardhat_worker(tmp_path, repository, TrackerConfig(low_score_tracks=0.3))
    tracks: list[tuple[int, int]] = []  # (person tracks, PPE-only subjects) per frame
    worker.add_listener(
        lambda _i, tracked, _e, _c: tracks.append(
            (
                sum(not t.ppe_only for t in tracked.tracks),
                sum(t.ppe_only for t in tracked.tracks),
            )
        )
    )
    worker.start()
    try:
        for seq in range(8):
            strong, weak = person_at(20 + seq, 10), person_at(50, 10, score=0.4)
            worker.submit(analysed(seq, Detections.merge([strong, weak])))
        wait_for(lambda: len(tracks) == 8)
        (item,) = worker.counters()["cam"].ppe
    finally:
        worker.stop(timeout=5.0)
    assert sum(n for _, n in tracks) > 0, "the weak box became a PPE-only subject"
    assert item.person_seconds == pytest.approx(0.2 * sum(n for n, _ in tracks[1:]))


def test_a_camera_checking_too_little_stays_ready_but_degrades_readyz() -> None:
    check = PPECheck(**{"min_share": 0.5, "min_person_seconds": 120.0})
    low = replace(STREAMING, ppe=(coverage("hardhat", 60.0, 400.0), coverage("vest", 0.0, 0.0)))
    ready = camera_readiness(low, NOW, ppe_check=check)
    assert ready.ready is True and ready.problems == []
    (warning,) = ready.warnings
    assert warning.startswith("PPE not verifiable: hardhat could be checked for 15% of 400")
    assert {c.item: c.share for c in ready.ppe} == {"hardhat": 0.15, "vest": None}
    assert overall({"yard": ready}, (OK,)) == "degraded"
    # Too few person-seconds to judge, a share at the threshold, or the check off: no warning.
    for status, judge in (
        (replace(STREAMING, ppe=(coverage("hardhat", 10.0, 100.0),)), check),
        (replace(STREAMING, ppe=(coverage("hardhat", 200.0, 400.0),)), check),
        (low, PPECheck(0.0, 120.0)),
    ):
        fine = camera_readiness(status, NOW, ppe_check=judge)
        assert fine.warnings == [] and overall({"yard": fine}, (OK,)) == "ready"
    # The live tile carries the shares and the warning.
    tile = tile_state(ready)
    assert tile.warnings == ready.warnings and tile.ppe[0].share == pytest.approx(0.15)
    defaults = WatchdogConfig()
    assert (defaults.ppe_min_share, defaults.ppe_min_person_seconds) == (0.5, 120.0)


class _Services:
    def __init__(self, status: CameraStatus) -> None:
        self.status = status
        self.check = PPECheck(0.5, 120.0)

    def liveness(self) -> Liveness:
        return Liveness(status="alive", uptime_seconds=1.0)

    def readiness(self) -> Readiness:
        cameras = {"yard": camera_readiness(self.status, time.time(), ppe_check=self.check)}
        return Readiness(
            status=overall(cameras, (OK, OK, OK)),
            database=OK,
            inference=OK,
            rules=OK,
            site=OK,
            cameras=cameras,
        )

    def metrics(self) -> bytes:
        return b""


def test_readyz_shows_the_share_and_the_reason() -> None:
    status = replace(STREAMING, last_evaluated_at=time.time(), last_decoded_at=time.time())
    services = _Services(replace(status, ppe=(coverage("hardhat", 30.0, 300.0),)))
    client = TestClient(create_app(ApiSettings(site_name="North yard"), services))
    body = client.get("/readyz").json()
    assert client.get("/readyz").status_code == 200
    assert body["status"] == "degraded"
    yard = body["cameras"]["yard"]
    assert yard["ready"] is True
    assert yard["ppe"][0]["item"] == "hardhat" and yard["ppe"][0]["share"] == 0.1
    assert "PPE not verifiable: hardhat could be checked for 10%" in yard["warnings"][0]
    # The per-camera probe stays 200: the camera works, its angle or zoom is the question.
    assert client.get("/readyz", params={"camera": "yard"}).status_code == 200
    services.status = replace(status, ppe=(coverage("hardhat", 290.0, 300.0),))
    assert client.get("/readyz").json()["status"] == "ready"
