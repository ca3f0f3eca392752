"""The server's recordings: which cameras record, and retention that spares the footage of
incidents nobody has closed."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_support import incident, write_site
from safewatch.config.loader import LoadedSite, load_site
from safewatch.domain import IncidentStatus
from safewatch.incidents.site_storage import SiteStorage, open_site_storage
from safewatch.recording import service as service_module
from safewatch.recording.segments import cameras as camera_folders
from safewatch.recording.segments import list_segments, part_path, segment_path
from safewatch.recording.service import (
    LIMITS_FILE,
    LIVE_SECONDS,
    RecordingChanges,
    RecordingService,
    RecordingState,
    retry_after,
)

T0 = 1_750_000_000.0


def _yard_site(tmp_path: Path) -> LoadedSite:
    """yard recorded (``max_hours: 1``), gate a file, into ``rec``."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    site = yaml.safe_load(path.read_text())
    site["cameras"]["yard"]["recording"] = {"segment_seconds": 60, "max_hours": 1}
    site["cameras"]["gate"] = {"source": "gate.mp4", "models": ["coco"], "recording": {}}
    site["storage"]["recordings_dir"] = "rec"
    path.write_text(yaml.safe_dump(site))
    return load_site(path)


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[RecordingService, SiteStorage]]:
    loaded = _yard_site(tmp_path)
    storage = open_site_storage(loaded)
    service = RecordingService(
        loaded, storage.repository, clock=lambda: T0 + 3 * 3600, protect_margin=120
    )
    yield service, storage
    storage.close()


def test_only_enabled_live_cameras_with_a_recording_block_record(
    recorded: tuple[RecordingService, SiteStorage], tmp_path: Path
) -> None:
    service, _ = recorded
    # dock has no block (and is disabled); gate is a file: a file is its own recording.
    assert list(service.cameras()) == ["yard"]
    assert service.root == tmp_path / "rec"


def test_retention_keeps_what_unreviewed_incidents_need(
    recorded: tuple[RecordingService, SiteStorage],
) -> None:
    service, storage = recorded
    _minutes(service.root, "yard", T0, 6)  # all older than max_hours at T0 + 3 h
    unreviewed = incident(1, camera="yard")  # T0 + 60 to T0 + 64: keeps T0 .. T0 + 184
    storage.repository.upsert(unreviewed)
    closed = incident(5, camera="yard", status=IncidentStatus.RESOLVED)  # its footage may go
    storage.repository.upsert(closed)
    assert service.retain() == 2
    kept = [round(s.start - T0) for s in list_segments(service.root, "yard")]
    assert kept == [0, 60, 120, 180]
    # Once reviewed and closed, its footage follows the age limit like the rest.
    storage.repository.set_status(unreviewed.id, IncidentStatus.ACKNOWLEDGED, actor="op")
    assert service.retain() == 0
    storage.repository.set_status(unreviewed.id, IncidentStatus.RESOLVED, actor="op")
    assert service.retain() == 4
    assert list_segments(service.root, "yard") == []


@pytest.mark.parametrize(("days_later", "kept"), [(29, [0, 60, 120, 180]), (31, [])])
def test_an_incident_nobody_closes_keeps_its_footage_for_protect_days_only(
    tmp_path: Path, days_later: int, kept: list[int]
) -> None:
    """At a site where operators never close incidents, their footage was never deleted."""
    site = _yard_site(tmp_path)
    storage = open_site_storage(site)
    try:
        service = RecordingService(
            site, storage.repository, clock=lambda: T0 + days_later * 86_400, protect_margin=120
        )
        _minutes(service.root, "yard", T0, 6)
        storage.repository.upsert(incident(1, camera="yard"))  # keeps T0 .. T0 + 184
        service.retain()
    finally:
        storage.close()
    assert [round(s.start - T0) for s in list_segments(service.root, "yard")] == kept


def test_under_the_free_space_guard_the_oldest_unprotected_segments_of_all_cameras_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """max_hours 72 and no max_gb let the recordings fill the disk the database shares."""
    site = _yard_site(tmp_path)
    now = T0 + 3 * 3600
    short = [3, 1]  # bytes short of storage.recordings_min_free_gb: 2 (the default), per round

    def free_bytes(folder: Path) -> int:
        assert folder == tmp_path / "rec"
        return int(2e9) - short.pop(0)

    storage = open_site_storage(site)
    try:
        service = RecordingService(
            site, storage.repository, clock=lambda: now, protect_margin=120, free_bytes=free_bytes
        )
        _minutes(service.root, "dock", now - 3600, 2)  # recorded nowhere now: 72 h; the oldest
        _minutes(service.root, "yard", now - 1800, 4)  # within its max_hours (1); 1 byte each
        storage.repository.upsert(incident(118, camera="dock"))  # keeps dock's first only
        with caplog.at_level("WARNING", logger="safewatch.recording.service"):
            assert service.retain() == 3
            assert [round(s.start - now) for s in list_segments(service.root, "yard")] == [
                -1680,
                -1620,
            ]
            assert service.retain() == 1  # still short: the next oldest, not logged again
    finally:
        storage.close()
    assert [round(s.start - now) for s in list_segments(service.root, "dock")] == [-3600]
    assert [round(s.start - now) for s in list_segments(service.root, "yard")] == [-1620]
    (warning,) = [r.getMessage() for r in caplog.records if "free" in r.getMessage()]
    assert "recordings_min_free_gb" in warning


def test_the_free_space_guard_leaves_alone_a_folder_another_node_records(tmp_path: Path) -> None:
    """A folder this node's site file records nowhere but written to within LIVE_SECONDS is
    another node's live recording: the guard deleted its footage."""
    site = _yard_site(tmp_path)
    now = T0 + 3 * 3600
    storage = open_site_storage(site)
    try:
        service = RecordingService(
            site, storage.repository, clock=lambda: now, free_bytes=lambda _: int(2e9) - 1
        )
        _minutes(service.root, "dock", now - 600, 9)  # its last segment closed a minute ago
        assert service.retain() == 0
    finally:
        storage.close()
    assert len(list_segments(service.root, "dock")) == 9


def test_every_unreviewed_incident_keeps_its_footage_however_many(
    recorded: tuple[RecordingService, SiteStorage],
) -> None:
    """The oldest of more than 10,000 unreviewed incidents keeps its footage: retention read a
    page of the newest 10,000 and deleted what the older ones needed."""
    from sqlalchemy import insert

    from safewatch.storage import IncidentRow

    service, storage = recorded
    _minutes(service.root, "yard", T0, 6)
    oldest = incident(1, camera="yard")  # T0 + 60 to T0 + 64: keeps T0 .. T0 + 184
    storage.repository.upsert(oldest)
    common = {"camera_id": "yard", "rule_id": "r", "rule_kind": "ppe", "severity": "high"}
    common |= {"duration": 1.0, "peak_confidence": 0.5, "message": "m", "status": "open"}
    newer = [  # 10,000 later ones, written straight into the table (the chain is not read here)
        {
            **common,
            "id": f"bulk-{k}",
            "track_ids": [k],
            "started_at": T0 + 1000 + k / 4,
            "ended_at": T0 + 1001 + k / 4,
            "created_at": T0,
            "updated_at": T0,
        }
        for k in range(10_000)
    ]
    with storage.repository.engine.begin() as connection:
        connection.execute(insert(IncidentRow), newer)
    assert service.retain() == 2
    kept = [round(s.start - T0) for s in list_segments(service.root, "yard")]
    assert kept == [0, 60, 120, 180]


def test_on_one_host_each_retention_round_names_a_quiet_part_file(
    recorded: tuple[RecordingService, SiteStorage],
) -> None:
    """A segment its recorder could not rename (a read-only remount) stays a ``.part``: named
    only at the next start, it was neither listed for playback nor pruned until then."""
    from assets import asset

    service, _ = recorded
    now = T0 + 3 * 3600  # the service's clock
    clip = asset("video/construction_cctv_640x352_24s.mp4").read_bytes()
    left, live = part_path(service.root, "yard", now - 600), part_path(service.root, "yard", now)
    left.parent.mkdir(parents=True)
    for part, written in ((left, now - 120), (live, now - 5)):
        part.write_bytes(clip)
        os.utime(part, (written, written))
    assert service.retain() == 0
    assert [s.start for s in list_segments(service.root, "yard")] == [now - 600]
    assert live.exists(), "written to 5 s ago: not an orphan"


def test_a_part_file_that_cannot_be_named_does_not_stop_retention(
    recorded: tuple[RecordingService, SiteStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, _ = recorded

    def read_only(*args: Any, **kwargs: Any) -> Any:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(service_module, "close_orphans", read_only)
    _minutes(service.root, "yard", T0, 2)  # older than max_hours
    assert service.retain() == 2


def test_under_a_cluster_only_the_cameras_owner_records_and_prunes_it(tmp_path: Path) -> None:
    """Retention runs once across a cluster: each camera's recording is pruned by its owner
    only, so two nodes never apply different views of it (and a node without cameras, an API
    node, prunes nothing)."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    site = yaml.safe_load(path.read_text())
    site["cameras"]["yard"]["recording"] = {"segment_seconds": 60, "max_hours": 1}
    site["storage"]["recordings_dir"] = "rec"
    path.write_text(yaml.safe_dump(site))
    loaded = load_site(path)
    storage = open_site_storage(loaded)
    owned: set[str] = set()
    try:
        service = RecordingService(
            loaded,
            storage.repository,
            clock=lambda: T0 + 3 * 3600,
            owned=lambda: frozenset(owned),
            orphan_quiet_seconds=30,
        )
        _minutes(service.root, "yard", T0, 3)
        assert list(service.cameras()) == []
        assert service.retain() == 0
        assert len(list_segments(service.root, "yard")) == 3
        owned.add("yard")
        assert list(service.cameras()) == ["yard"]
        assert service.retain() == 3
    finally:
        storage.close()


def _minutes(root: Path, camera: str, since: float, count: int) -> None:
    for n in range(count):
        end = since + 60 * (n + 1)
        path = segment_path(root, camera, since + 60 * n, end)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (end, end))  # closed at its end, as a recorder does


def test_footage_of_cameras_recorded_nowhere_still_ages_out(tmp_path: Path) -> None:
    """A camera disabled, removed or with its block deleted has no recorder, yet its footage
    follows its last known limits (else a block's defaults, 72 h), unreviewed incidents spared;
    a camera another node records is left to that node (retention deleted nothing of them)."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    now = T0 + 3 * 3600
    site = _reloaded(
        path,
        lambda s: (
            s["cameras"]["yard"].update(recording={"max_hours": 1}, enabled=False),
            s["storage"].update(recordings_dir="rec"),
        ),
    )
    storage = open_site_storage(site)
    service = RecordingService(site, storage.repository, clock=lambda: now)
    root = service.root
    try:
        _minutes(root, "yard", T0, 6)  # disabled, its block says 1 h
        _minutes(root, "gone", now - 4 * 86400, 2)  # removed from the site: 72 h
        _minutes(root, "gone", now - 86400, 2)
        part = part_path(root, "gone", now - 4 * 86400)
        part.write_bytes(b"")  # a crash's leftover, quiet for days
        os.utime(part, (now - 4 * 86400, now - 4 * 86400))
        unreviewed = incident(1, camera="yard")  # T0 .. T0 + 184 kept
        storage.repository.upsert(unreviewed)
        assert service.retain() == 2 + 2
        assert [round(s.start - T0) for s in list_segments(root, "yard")] == [0, 60, 120, 180]
        assert [round(s.start - now) for s in list_segments(root, "gone")] == [-86400, -86340]
        assert not part.exists()

        storage.repository.set_status(unreviewed.id, IncidentStatus.RESOLVED, actor="op")
        # Under a cluster, a camera the site records is its owner's, even if not owned here.
        recorded = _reloaded(path, lambda s: s["cameras"]["yard"].update(enabled=True))
        other = RecordingService(
            recorded, storage.repository, clock=lambda: now + 3 * 86400, owned=frozenset
        )
        assert other.retain() == 2  # the rest of gone's, none of yard's
        assert len(list_segments(root, "yard")) == 4

        # The limits of a block a reload removed still hold (not the 72 h default).
        _minutes(root, "yard", now - 2 * 3600, 3)
        service.apply(_reloaded(path, lambda s: s["cameras"]["yard"].pop("recording")))
        assert any(t.name == "record-retention" for t in threading.enumerate()), "no recorder"
        assert service.retain() == 4 + 3
    finally:
        service.stop()
        storage.close()


def test_one_cameras_failing_retention_does_not_stop_the_others(tmp_path: Path) -> None:
    """A camera whose orphaned ``.part`` cannot be removed (here a folder under its name) raised
    out of retain(): the round ended and every later camera's footage was never pruned again;
    a segment that cannot be deleted did the same. Each failure now costs only itself."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    now = T0 + 3 * 3600
    site = _reloaded(
        path,
        lambda s: (
            s["cameras"]["yard"].update(recording={"max_hours": 1}),
            s["storage"].update(recordings_dir="rec"),
        ),
    )
    storage = open_site_storage(site)
    service = RecordingService(site, storage.repository, clock=lambda: now)
    root = service.root
    try:
        _minutes(root, "yard", T0, 3)  # recorded here: its oldest segment cannot be deleted
        stuck = list_segments(root, "yard")[0].path
        stuck.unlink()
        stuck.mkdir()
        _minutes(root, "a-gone", now - 4 * 86400, 2)  # recorded nowhere: 72 h
        _minutes(root, "b-gone", now - 4 * 86400, 2)
        part = part_path(root, "a-gone", now - 4 * 86400)
        part.mkdir()  # an orphan whose removal fails
        os.utime(part, (now - 4 * 86400, now - 4 * 86400))
        assert service.retain() == 2 + 2 + 2  # yard's younger two, a-gone's and b-gone's
        assert [s.path for s in list_segments(root, "yard")] == [stuck]
        assert list_segments(root, "a-gone") == [] and part.is_dir()
        assert list_segments(root, "b-gone") == []
    finally:
        storage.close()


def test_the_limits_of_cameras_no_longer_recorded_survive_a_restart(tmp_path: Path) -> None:
    """The limits were kept in the memory of the process that saw the block: after a restart a
    camera removed with `max_hours: 24` kept its footage 72 h (a privacy limit defeated) and one
    with 720 h lost it at 72 h. A recorder's start writes them to the camera's folder."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    now = T0 + 30 * 86400
    site = _reloaded(
        path,
        lambda s: (
            s["cameras"]["yard"].update(recording={"max_hours": 24}),
            s["cameras"]["dock"].update(recording={"max_hours": 720}, enabled=True),
            s["storage"].update(recordings_dir="rec"),
        ),
    )
    storage = open_site_storage(site)
    try:
        first = RecordingService(site, storage.repository, clock=lambda: now)
        first.start()
        first.stop()
        root = first.root
        for camera, hours in (("yard", 24), ("dock", 720)):
            written = json.loads((root / camera / LIMITS_FILE).read_text())
            assert written == {"max_gb": None, "max_hours": hours}
        _minutes(root, "yard", now - 30 * 3600, 1)
        _minutes(root, "yard", now - 2 * 3600, 1)
        _minutes(root, "dock", now - 100 * 3600, 1)
        _minutes(root, "dock", now - 2 * 3600, 1)
        # restarted with yard's block and the dock camera removed
        gone = _reloaded(
            path, lambda s: (s["cameras"]["yard"].pop("recording"), s["cameras"].pop("dock"))
        )
        restarted = RecordingService(gone, storage.repository, clock=lambda: now)
        assert restarted.retain() == 1
        assert [round(s.start - now) for s in list_segments(root, "yard")] == [-7200]
        assert [round(s.start - now) for s in list_segments(root, "dock")] == [-360000, -7200]
        assert list(camera_folders(root)) == ["dock", "yard"]  # the file is neither
    finally:
        storage.close()


def test_a_folder_written_to_lately_is_recorded_somewhere_and_not_pruned(tmp_path: Path) -> None:
    """A node that missed a reload records the camera nowhere, but the up-to-date nodes record
    it (a new camera, one renamed back): it pruned the folder with the defaults. A segment or
    `.part` written in the last minutes says a recorder is live; an unreadable limits file is
    not the defaults either."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    now = T0 + 30 * 86400
    site = _reloaded(path, lambda s: s["storage"].update(recordings_dir="rec"))
    storage = open_site_storage(site)
    try:
        service = RecordingService(site, storage.repository, clock=lambda: now)
        root = service.root
        _minutes(root, "new", now - 5 * 86400, 2)  # older than the 72 h default
        part = part_path(root, "new", now - 30)
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"")
        os.utime(part, (now - 10, now - 10))  # its recorder wrote 10 s ago
        assert service.retain() == 0
        assert len(list_segments(root, "new")) == 2

        quiet = now - LIVE_SECONDS - 60
        os.utime(part, (quiet, quiet))  # nobody for 6 min: a crash's leftover
        (root / "new" / LIMITS_FILE).write_text("{")
        assert service.retain() == 0, "unreadable limits: not pruned"
        (root / "new" / LIMITS_FILE).unlink()
        assert service.retain() == 2
        assert not part.exists()
    finally:
        storage.close()


def _reloaded(path: Path, edit: Callable[[dict[str, Any]], None]) -> LoadedSite:
    site = yaml.safe_load(path.read_text())
    edit(site)
    path.write_text(yaml.safe_dump(site))
    return load_site(path)


def test_recorders_follow_the_site_file(tmp_path: Path) -> None:
    """A reload starts, stops and restarts exactly the recorders whose blocks changed (the
    camera is unreachable: each recorder retries in its own thread, as after an outage)."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    site = _reloaded(path, lambda s: s["cameras"]["yard"].update(recording={}))
    storage = open_site_storage(site)
    service = RecordingService(site, storage.repository, stop_timeout=10)
    try:
        service.start()
        threads = {t.name: t for t in threading.enumerate() if t.name.startswith("record-")}
        assert set(service.recording()) == {"yard"}
        yard = threads["record-yard"]

        def add_dock(s: dict[str, Any]) -> None:
            s["cameras"]["dock"] = {
                "source": "rtsp://127.0.0.1:9/dock", "models": ["coco"], "recording": {},
            }  # fmt: skip

        changes = service.apply(_reloaded(path, add_dock))
        assert (changes.started, changes.stopped, changes.restarted) == (("dock",), (), ())
        assert yard.is_alive(), "an unchanged camera's recorder is not touched"

        def retain_less(s: dict[str, Any]) -> None:  # retention only: read each round
            s["cameras"]["yard"]["recording"] = {"max_hours": 2}

        assert not service.apply(_reloaded(path, retain_less))
        assert yard.is_alive()

        def longer(s: dict[str, Any]) -> None:
            s["cameras"]["yard"]["recording"]["segment_seconds"] = 30

        changes = service.apply(_reloaded(path, longer))
        assert changes.restarted == ("yard",) and not changes.started and not changes.stopped
        assert not yard.is_alive(), "the old recorder ended before its successor started"
        assert service.recording()["yard"].segment_seconds == 30

        def drop_yard(s: dict[str, Any]) -> None:
            del s["cameras"]["yard"]["recording"]

        changes = service.apply(_reloaded(path, drop_yard))
        assert changes.stopped == ("yard",)
        assert set(service.recording()) == {"dock"}
        assert not any(t.name == "record-yard" for t in threading.enumerate())
    finally:
        service.stop()
        storage.close()
    assert not any(t.name.startswith("record-") for t in threading.enumerate())
    assert service.apply(site) == RecordingChanges(), "a stopped service starts nothing"


def test_the_back_off_doubles_from_5_s_to_5_min() -> None:
    assert [retry_after(n) for n in (1, 2, 3, 4, 7, 20)] == [5, 10, 20, 40, 300, 300]


def _recorded_site(tmp_path: Path) -> LoadedSite:
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    return _reloaded(
        path,
        lambda s: (
            s["cameras"]["yard"].update(recording={}),
            s["storage"].update(recordings_dir="rec"),
        ),
    )


def test_a_recorder_that_cannot_start_is_reported_and_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recording folder could not be created (or a stale NFS handle failed the naming of
    orphans): ``apply`` raised, into the reload or the handover that called it, and the camera
    never recorded. Now the camera is reported and its recorder tried again."""
    site = _recorded_site(tmp_path)
    (tmp_path / "rec").write_text("not a folder")  # mkdir: FileExistsError
    storage = open_site_storage(site)
    service = RecordingService(site, storage.repository, check_seconds=3600)
    try:
        changes = service.apply(site)
        assert (changes.started, changes.failed) == (("yard",), ("yard",))
        (state,) = service.states().values()
        assert not state.up and state.segments == 0
        assert state.message.startswith("cannot start: [Errno 17] File exists")
        assert state.message.endswith("trying again in 5 s")
        assert service.check() == ()  # not before its back-off
        assert service.recording() == {}
        monkeypatch.setattr(service_module, "_RETRY_FIRST", 0.0)
        longer = _reloaded(site.path, lambda s: s["cameras"]["yard"]["recording"].update(
            segment_seconds=30
        ))  # fmt: skip
        changes = service.apply(longer)  # a changed camera is tried at once
        assert (changes.restarted, changes.failed) == (("yard",), ("yard",))
        assert service.check() == ()  # due, tried, and the folder is still not creatable
        (tmp_path / "rec").unlink()
        assert service.check() == ("yard",)
        assert set(service.recording()) == {"yard"}
        assert not service.states()["yard"].up  # the camera is unreachable: connecting
    finally:
        service.stop()
        storage.close()


def test_a_recorder_that_dies_is_started_again_and_its_segments_still_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error ``record`` does not survive ended its thread and nothing started it again: the
    camera stopped recording until the server restarted."""
    runs: list[str] = []
    writing = threading.Event()

    def record(
        open_input: Any, root: Path, key: str, *, stop: threading.Event, **options: Any
    ) -> Any:
        runs.append(key)
        stats = options["stats"]
        for _ in range(2):
            stats.segments += 1
            options["on_segment"](None)
        if len(runs) == 1:
            raise RuntimeError("a bug")
        stats.writing = True
        writing.set()
        stop.wait()
        return stats

    monkeypatch.setattr(service_module, "record", record)
    monkeypatch.setattr(service_module, "_RETRY_FIRST", 0.0)
    site = _recorded_site(tmp_path)
    storage = open_site_storage(site)
    service = RecordingService(site, storage.repository, check_seconds=3600)
    try:
        service.start()
        for thread in threading.enumerate():
            if thread.name == "record-yard":
                thread.join(10)
        dead = service.states()["yard"]
        assert not dead.up and dead.segments == 2
        assert "RuntimeError('a bug')" in dead.message
        assert service.check() == ("yard",)
        assert writing.wait(10)
        assert service.states() == {"yard": RecordingState(True, 4, "writing")}
        assert runs == ["yard", "yard"]
    finally:
        service.stop()
        storage.close()
    assert not any(t.name.startswith("record-") for t in threading.enumerate())


def test_folders_no_camera_can_be_named_are_not_cameras(tmp_path: Path) -> None:
    """A recordings folder that is a volume's mount point holds ``lost+found`` (root-only):
    retention took it for a camera no longer recorded, could not read its limits file and
    warned about it every minute, for ever."""
    for name in ("yard", "lost+found", ".snapshot", "dock-2"):
        (tmp_path / name).mkdir()
    assert list(camera_folders(tmp_path)) == ["dock-2", "yard"]


def test_when_something_else_fills_the_disk_the_guard_keeps_each_cameras_newest_hour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Free space under the guard whatever the recordings hold (evidence, the database, other
    programs, a tiny disk): the guard deleted every closed segment each round, a minute of
    footage left, and blamed unreviewed incidents' footage."""
    writing = threading.Event()

    def record(
        open_input: Any, root: Path, key: str, *, stop: threading.Event, **options: Any
    ) -> Any:
        options["stats"].writing = True
        writing.set()
        stop.wait()
        return options["stats"]

    monkeypatch.setattr(service_module, "record", record)
    site = _recorded_site(tmp_path)  # yard: max_hours 72
    clock = [T0]
    storage = open_site_storage(site)
    service = RecordingService(
        site,
        storage.repository,
        clock=lambda: clock[0],
        retention_seconds=3600,
        free_bytes=lambda _: int(1.5e9),  # the guard wants 2 GB
    )
    try:
        service.start()
        assert writing.wait(10)
        _minutes(service.root, "yard", T0 - 3 * 3600, 180)  # three hours, 1 byte a minute
        with caplog.at_level("WARNING", logger="safewatch.recording.service"):
            assert service.retain() == 120
            kept = list_segments(service.root, "yard")
            assert [round(kept[0].start - T0), len(kept)] == [-3600, 60]
            assert service.retain() == 0  # the floor stays, round after round
            clock[0] += 1800
            service.retain()
            assert len(caplog.records) == 1  # once an hour, not every round
            clock[0] += 1800
            service.retain()
        state = service.states()["yard"]
        assert state.up and state.warning is not None
        assert "something else fills the disk" in state.warning
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2
        assert "1.50 GB free" in warnings[0] and "recordings hold 0.00 GB" in warnings[0]
        assert "something else fills the disk" in warnings[0]
        assert "incidents" not in warnings[0]  # none protects anything here
        storage.repository.upsert(incident(1, started=T0 - 1800))  # in the hour kept
        service.retain()
        assert "unreviewed incidents' footage holds" in (service.states()["yard"].warning or "")
    finally:
        service.stop()
        storage.close()
    assert len(list_segments(service.root, "yard")) == 60


def test_the_newest_hour_is_kept_only_while_it_leaves_the_reserve_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest-hour floor had no space bound: while the guard could not be met, nothing of
    that hour was deleted however little space was left, so recordings could fill the disk to
    its last byte. 150 bytes under the 1 GB reserve with 1-byte minutes: 30 minutes stay."""

    def record(
        open_input: Any, root: Path, key: str, *, stop: threading.Event, **options: Any
    ) -> Any:
        stop.wait()
        return options["stats"]

    monkeypatch.setattr(service_module, "record", record)
    site = _recorded_site(tmp_path)
    storage = open_site_storage(site)
    service = RecordingService(
        site,
        storage.repository,
        clock=lambda: T0,
        retention_seconds=3600,
        free_bytes=lambda _: int(1e9) - 150,  # the guard wants 2 GB; the reserve is 1 GB
    )
    try:
        service.start()
        _minutes(service.root, "yard", T0 - 3 * 3600, 180)
        assert service.retain() == 150
        kept = list_segments(service.root, "yard")
        assert [round(kept[0].start - T0), len(kept)] == [-1800, 30]
        assert "something else fills the disk" in (service.states()["yard"].warning or "")
    finally:
        service.stop()
        storage.close()


def test_the_guard_and_protect_days_change_only_at_a_restart(tmp_path: Path) -> None:
    """A reload logs that the storage block applies after a restart, and the guard's metric
    keeps the start's value, but retention read both from the reloaded site at its next round."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    site = _reloaded(path, lambda s: s["storage"].update(recordings_dir="rec"))
    now = T0 + 20 * 86_400
    storage = open_site_storage(site)
    try:
        service = RecordingService(
            site, storage.repository, clock=lambda: now, free_bytes=lambda _: int(2e9) - 1
        )
        since = now - 2 * 86_400
        _minutes(service.root, "gone", since, 3)  # recorded nowhere: 72 h keeps it
        # Two days ago: protected for 30 days, not for 1; its margin covers the first minute.
        storage.repository.upsert(incident(1, camera="gone", started=since - 120))
        service.apply(
            _reloaded(
                path,
                lambda s: s["storage"].update(
                    recordings_dir="rec", recordings_min_free_gb=None, recordings_protect_days=1
                ),
            )
        )
        # The start's guard (2 GB, a byte short) and protect days (30): the oldest unprotected
        # minute goes. The reloaded ones kept all three (no guard), or took the first (1 day).
        assert service.retain() == 1
    finally:
        storage.close()
    assert [round(s.start - since) for s in list_segments(service.root, "gone")] == [0, 120]
