"""Evidence recorder through the incident manager: clip window and timing, privacy, clean still,
sealed originals, and an analysis path that never waits for evidence. Real SQLite, real folder,
real H.264 files decoded back with PyAV."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from evidence_frames import (
    CAM,
    HEAD,
    PERSON,
    T0,
    H,
    W,
    coded_frame,
    episode_events,
    read_index,
)
from incident_factories import make_incident
from safewatch.config.site import EvidenceConfig, PrivacyConfig
from safewatch.domain import Incident
from safewatch.incidents import (
    CLEAN_STILL_SUFFIX,
    ORIGINAL_CLIP_SUFFIX,
    ORIGINAL_STILL_SUFFIX,
    EvidenceKey,
    EvidenceRecorder,
    EvidenceStore,
    IncidentManager,
)
from safewatch.incidents.clips import PART_SUFFIX, ClipEncoder, ClipInfo, read_clip_info
from safewatch.incidents.sealed import reveal
from safewatch.storage import IncidentRepository

FPS = 10.0
KEY = EvidenceKey(b"k" * 32, "$TEST_KEY")


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence")


def config(**changes: object) -> EvidenceConfig:
    base = {"pre_seconds": 2.0, "post_seconds": 3.0, "buffer_seconds": 6.0, "annotate_clips": False}
    return EvidenceConfig.model_validate(base | changes)


def record(
    repo: IncidentRepository,
    store: EvidenceStore,
    evidence: EvidenceConfig,
    *,
    frames: int,
    started: int,
    fired: int,
    ended: int,
    privacy: PrivacyConfig | None = None,
    key: EvidenceKey | None = None,
) -> tuple[Incident, EvidenceRecorder]:
    """Run one episode through a manager with a recorder; return the stored incident."""
    recorder = EvidenceRecorder(
        store,
        repo,
        evidence,
        privacy_for=lambda _c: privacy or PrivacyConfig(),
        key=key,
        on_full="wait",  # a file run: complete, repeatable clips
    )
    manager = IncidentManager(
        repo, store, privacy_for=lambda _c: privacy or PrivacyConfig(), recorder=recorder
    )
    opened: list[str] = []
    for i in range(frames):
        frame, tracked = coded_frame(i, FPS)
        events = episode_events(i, FPS, started=started, fired=fired, ended=ended)
        opened += [c.incident.id for c in manager.handle(events, tracked, frame)]
    recorder.close(timeout=60)
    return repo.get(opened[0]), recorder


def decode(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(f.time, f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]


def wall_times(path: Path) -> list[float]:
    info = read_clip_info(path)
    assert info is not None
    return [info.start + t for t, _ in decode(path)]


def test_clip_spans_pre_and_post_seconds_within_one_frame(
    repo: IncidentRepository, store: EvidenceStore
) -> None:
    # Episode starts at frame 50 (5.0 s), the rule fires at 8.0 s, ends at 12.0 s.
    incident, recorder = record(repo, store, config(), frames=200, started=50, fired=80, ended=120)
    assert incident.clip is not None and incident.clip.endswith(".mp4")
    path = store.path_of(incident.clip)
    assert not list((store.root / ".clips-in-progress").iterdir()), "no partial file may remain"
    decoded = decode(path)
    times = wall_times(path)
    interval = 1 / FPS
    want_start = incident.started_at - 2.0
    assert incident.ended_at is not None
    want_end = incident.ended_at + 3.0
    assert want_start <= times[0] < want_start + interval
    assert want_end - interval < times[-1] <= want_end + 1e-6
    # Every decoded frame is the frame its timestamp says (content and clock agree) and none is
    # missing: 30 (pre) .. 150 (post) at 10 fps.
    indices = [read_index(image) for _, image in decoded]
    assert indices == list(range(30, 151))
    for wall, index in zip(times, indices, strict=True):
        assert wall == pytest.approx(T0 + index / FPS, abs=2e-3)
    stats = recorder.stats
    assert (stats.clips_written, stats.clips_failed, stats.frames_dropped) == (1, 0, 0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.format.name) == ("h264", "yuv420p")
        assert (stream.width, stream.height) == (W, H)


def test_clip_start_is_clamped_to_what_the_buffer_holds(
    repo: IncidentRepository, store: EvidenceStore
) -> None:
    # The rule fires 3 s after the start and pre is 2 s, but the buffer holds only 4 s: the
    # clip starts 4 s before the firing frame, not 5 s.
    evidence = config(buffer_seconds=4.0, post_seconds=0.0)
    incident, _ = record(repo, store, evidence, frames=140, started=50, fired=80, ended=100)
    assert incident.clip is not None
    indices = [read_index(image) for _, image in decode(store.path_of(incident.clip))]
    assert indices[0] == 40 and indices[-1] == 100


def test_clip_fps_thins_frames_and_max_seconds_caps_the_clip(
    repo: IncidentRepository, store: EvidenceStore
) -> None:
    evidence = config(clip_fps=5.0, max_clip_seconds=4.0)
    incident, _ = record(repo, store, evidence, frames=200, started=50, fired=60, ended=150)
    assert incident.clip is not None
    indices = [read_index(image) for _, image in decode(store.path_of(incident.clip))]
    assert indices == list(range(30, 71, 2))  # 5 fps, from 3.0 s to 3.0 + 4.0 s


def test_max_clip_seconds_counts_from_the_first_buffered_frame(
    repo: IncidentRepository, store: EvidenceStore
) -> None:
    # The rule fires 10 s after the episode began (min_duration 10 s) and the buffer holds 6 s:
    # its oldest frame (9.0 s) is past started_at - pre + max_clip (3.0 + 4.0 s). Measured from
    # there the clip had no frame and was dropped without a word; measured from its first frame
    # it runs 4 s.
    evidence = config(max_clip_seconds=4.0)
    incident, recorder = record(repo, store, evidence, frames=200, started=50, fired=150, ended=180)
    assert incident.clip is not None
    indices = [read_index(image) for _, image in decode(store.path_of(incident.clip))]
    assert indices == list(range(90, 131))
    assert (recorder.stats.clips_written, recorder.stats.clips_failed) == (1, 0)


def test_a_clip_with_no_frame_is_logged_and_counted(
    repo: IncidentRepository, store: EvidenceStore, caplog: pytest.LogCaptureFixture
) -> None:
    # The camera stops before any frame of the incident reaches the recorder: no clip, and
    # that is said and counted, not silent.
    recorder = EvidenceRecorder(store, repo, config(), on_full="wait")
    incident = make_incident(camera=CAM, started_at=T0, ended_at=T0 + 1.0)
    recorder.open_clip(incident)
    recorder.close_clip(incident)
    recorder.end_camera(CAM)
    assert recorder.flush(timeout=30)
    recorder.close(timeout=30)
    assert (recorder.stats.clips_written, recorder.stats.clips_failed) == (0, 1)
    assert f"incident {incident.id}: no clip" in caplog.text
    assert not list((store.root / ".clips-in-progress").glob("*.part*"))


def head_detail(image: np.ndarray) -> float:
    x1, y1, x2, y2 = HEAD
    return float(image[y1 + 6 : y2 - 6, x1 + 6 : x2 - 6].std())


def body_detail(image: np.ndarray) -> float:
    x1, _, x2, y2 = (int(v) for v in PERSON)
    return float(image[120 : y2 - 10, x1 + 6 : x2 - 6].std())


def test_heads_are_hidden_in_clip_and_stills_and_originals_are_sealed(
    repo: IncidentRepository, store: EvidenceStore, tmp_path: Path
) -> None:
    incident, recorder = record(
        repo,
        store,
        config(keep_originals=True),
        frames=150,
        started=40,
        fired=60,
        ended=100,
        key=KEY,
    )
    sharp = head_detail(coded_frame(0, FPS)[0].image)
    assert incident.clip is not None and incident.snapshot is not None
    for _, image in decode(store.path_of(incident.clip))[::10]:
        assert head_detail(image) < 0.2 * sharp, "a head is visible in the clip"
        assert body_detail(image) > 0.8 * sharp, "the blur spilled outside the head"
    base = dict(camera_id=CAM, at=incident.started_at)
    clean = store.key_for(incident.id, suffix=CLEAN_STILL_SUFFIX, **base)  # type: ignore[arg-type]
    for still in (incident.snapshot, clean):
        image = cv2.imread(str(store.path_of(still)))
        assert image is not None
        assert head_detail(image) < 0.2 * sharp, f"a head is visible in {still}"
    # The originals are not readable as they are, and reveal gives back the sharp frames.
    for suffix in (ORIGINAL_STILL_SUFFIX, ORIGINAL_CLIP_SUFFIX):
        sealed = store.key_for(incident.id, suffix=suffix, **base)  # type: ignore[arg-type]
        assert not store.read_bytes(sealed).startswith((b"\xff\xd8", b"\x00\x00\x00"))
    still = reveal(
        store,
        store.key_for(incident.id, suffix=ORIGINAL_STILL_SUFFIX, **base),  # type: ignore[arg-type]
        key=KEY,
        actor="test",
        reason="unit test",
        out_dir=tmp_path / "revealed",
    )
    original = cv2.imread(str(still))
    assert original is not None and head_detail(original) > 0.8 * sharp
    clip = reveal(
        store,
        store.key_for(incident.id, suffix=ORIGINAL_CLIP_SUFFIX, **base),  # type: ignore[arg-type]
        key=KEY,
        actor="test",
        reason="unit test",
        out_dir=tmp_path / "revealed",
    )
    frames = decode(clip)
    assert len(frames) == len(decode(store.path_of(incident.clip)))
    assert head_detail(frames[5][1]) > 0.8 * sharp
    assert recorder.stats.originals_sealed == 2


def test_privacy_off_keeps_heads(repo: IncidentRepository, store: EvidenceStore) -> None:
    incident, _ = record(
        repo,
        store,
        config(),
        frames=100,
        started=40,
        fired=50,
        ended=60,
        privacy=PrivacyConfig(mode="off"),
    )
    assert incident.clip is not None
    sharp = head_detail(coded_frame(0, FPS)[0].image)
    _, image = decode(store.path_of(incident.clip))[3]
    assert head_detail(image) > 0.8 * sharp


def test_annotated_clip_draws_the_violator(repo: IncidentRepository, store: EvidenceStore) -> None:
    plain, _ = record(repo, store, config(), frames=90, started=40, fired=50, ended=60)
    assert plain.clip is not None
    first_plain = decode(store.path_of(plain.clip))[0][1]
    other = EvidenceStore(store.root.parent / "annotated")
    marked, _ = record(
        repo, other, config(annotate_clips=True), frames=90, started=40, fired=50, ended=60
    )
    assert marked.clip is not None
    first_marked = decode(other.path_of(marked.clip))[0][1]
    x1, y1, _, y2 = (int(v) for v in PERSON)
    edge = (slice(y1 + 40, y2 - 40), slice(x1 - 1, x1 + 2))  # the box's left edge
    red = first_marked[edge][..., 2].astype(int) - first_marked[edge][..., 1]
    assert red.mean() > 80, "the violator's box is not drawn red"
    assert abs(int(first_plain[edge][..., 2].mean()) - int(first_plain[edge][..., 1].mean())) < 20


def test_incident_points_at_its_clip_only_once_it_is_complete(
    repo: IncidentRepository, store: EvidenceStore
) -> None:
    recorder = EvidenceRecorder(store, repo, config(), on_full="wait")
    manager = IncidentManager(repo, store, recorder=recorder)
    incident_id = None
    for i in range(100):
        frame, tracked = coded_frame(i, FPS)
        for change in manager.handle(
            episode_events(i, FPS, started=20, fired=30, ended=500), tracked, frame
        ):
            incident_id = change.incident.id
    assert recorder.flush(timeout=30)
    assert incident_id is not None
    assert repo.get(incident_id).clip is None  # still being written
    assert len(list((store.root / ".clips-in-progress").glob("*.mp4.part"))) == 1
    manager.close_all(T0 + 10)
    recorder.close(timeout=30)
    clip = repo.get(incident_id).clip
    assert clip is not None and len(decode(store.path_of(clip))) > 0


def test_a_stopped_camera_finishes_its_closed_clips_at_once(
    repo: IncidentRepository, store: EvidenceStore
) -> None:
    """A camera handed over (serve --cluster) gets no more frames: its closed incidents' clips
    are stored on end_camera + flush, not at the recorder's close (after the lease is gone)."""
    recorder = EvidenceRecorder(store, repo, config(), on_full="wait")
    manager = IncidentManager(repo, store, recorder=recorder)
    incident_id = None
    for i in range(100):
        frame, tracked = coded_frame(i, FPS)
        for change in manager.handle(
            episode_events(i, FPS, started=20, fired=30, ended=500), tracked, frame
        ):
            incident_id = change.incident.id
    assert incident_id is not None
    manager.close_all(T0 + 10)  # the camera stops: its episode ends at its last frame
    assert recorder.flush(timeout=30)
    assert repo.get(incident_id).clip is None, "waits for post_seconds of frames"
    assert recorder.stats.buffered_bytes[tracked.camera_id] > 0
    recorder.end_camera(tracked.camera_id)
    assert recorder.flush(timeout=30)
    clip = repo.get(incident_id).clip
    assert clip is not None and len(decode(store.path_of(clip))) > 0
    # A camera removed from the site sends no frame that would evict its pre-roll.
    assert tracked.camera_id not in recorder.stats.buffered_bytes, "its buffer is let go"
    recorder.close(timeout=30)


class GatedStore(EvidenceStore):
    """A real store whose writes from the evidence thread wait for a gate: a disk that stalls."""

    def __init__(self, root: Path, log: IncidentRepository | None = None) -> None:
        super().__init__(root, log=log)
        self.gate = threading.Event()

    def write_bytes(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "evidence":
            assert self.gate.wait(30)
        return super().write_bytes(*args, **kwargs)


def test_a_stalled_evidence_thread_drops_frames_and_never_blocks_analysis(
    repo: IncidentRepository, tmp_path: Path
) -> None:
    store = GatedStore(tmp_path / "evidence")
    recorder = EvidenceRecorder(store, repo, config(), max_queued_frames=5)
    manager = IncidentManager(repo, store, recorder=recorder)
    slowest = 0.0
    for i in range(60):
        frame, tracked = coded_frame(i, FPS)
        events = episode_events(i, FPS, started=5, fired=10, ended=40)
        t0 = time.perf_counter()
        manager.handle(events, tracked, frame)
        slowest = max(slowest, time.perf_counter() - t0)
    # The stalled disk holds each write for up to 30 s; a handle() call that waited on it would
    # take that long, while a loaded machine may stretch a normal call to a fraction of a second.
    assert slowest < 5.0, f"analysis waited {slowest:.3f} s for evidence"
    stats = recorder.stats
    assert stats.frames_observed == 60
    assert stats.frames_dropped >= 60 - 11 - 5  # frames after the stall, less the queue
    store.gate.set()
    recorder.close(timeout=30)
    assert recorder.stats.stills_written == 1


def test_the_incident_row_and_its_alert_come_first_and_the_still_follows(
    repo: IncidentRepository, tmp_path: Path
) -> None:
    """The opening frame stores the row (which queues the alert) without waiting for the still:
    with the evidence thread's writes stalled, the row exists and names no still; once the still
    is stored, the row points at it and the chain records the file before the reference."""
    store = GatedStore(tmp_path / "evidence", log=repo)
    recorder = EvidenceRecorder(store, repo, config(clips=False))
    manager = IncidentManager(repo, store, recorder=recorder)
    opened = []
    for i in range(30):
        frame, tracked = coded_frame(i, FPS)
        events = episode_events(i, FPS, started=5, fired=10, ended=500)
        opened += [c.incident for c in manager.handle(events, tracked, frame)]
    (incident,) = opened
    assert incident.snapshot is None and repo.get(incident.id).snapshot is None
    assert not list(store.root.rglob("*.jpg")), "a still was written on the analysis thread"
    store.gate.set()
    assert recorder.flush(timeout=30)
    stored = repo.get(incident.id)
    assert stored.snapshot == store.still_path(incident.id, camera_id=CAM, at=incident.started_at)
    image = cv2.imread(str(store.path_of(stored.snapshot)))
    assert image is not None and head_detail(image) < 0.2 * head_detail(frame.image)
    assert recorder.stats.buffered_bytes == {}  # clips off: no frame was buffered (encoded)
    kinds = [(e.kind, e.subject) for e in repo.timeline(incident.id)]
    written = kinds.index(("evidence.written", stored.snapshot))
    updated = [i for i, (kind, _) in enumerate(kinds) if kind == "incident.updated"]
    assert updated and written < updated[0]
    # A later copy held by the manager (no still) does not erase the still.
    manager.close_all(T0 + 10)
    recorder.close(timeout=30)
    assert repo.get(incident.id).snapshot == stored.snapshot


def test_a_failing_store_costs_the_clip_not_the_incident(
    repo: IncidentRepository, tmp_path: Path
) -> None:
    class FullDisk(EvidenceStore):
        def write_file(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            from safewatch.errors import StorageError

            raise StorageError("No space left on device")

    store = FullDisk(tmp_path / "evidence")
    incident, recorder = record(repo, store, config(), frames=80, started=20, fired=30, ended=40)
    assert incident.ended_at is not None and incident.clip is None
    assert recorder.stats.clips_failed == 1
    # The finished clip waits in the spool for the next start's recovery.
    assert len(list((store.root / ".clips-in-progress").glob("*.mp4.part"))) == 1


def test_one_clip_failing_at_shutdown_does_not_lose_the_others(
    repo: IncidentRepository, tmp_path: Path
) -> None:
    """close() finishes every open clip; a store failing with an error _finish does not handle
    (a backend's raw exception) costs that clip only, not the clips finished after it."""
    first, second = (make_incident(t, camera=CAM, started_at=T0 + 1.0) for t in (4, 5))

    class BrokenForFirst(EvidenceStore):
        def write_file(self, incident_id, *args, **kwargs):  # type: ignore[no-untyped-def]
            if incident_id == first.id:
                raise RuntimeError("raw backend failure")
            return super().write_file(incident_id, *args, **kwargs)

    store = BrokenForFirst(tmp_path / "evidence")
    recorder = EvidenceRecorder(store, repo, config(), on_full="wait")
    for incident in (first, second):
        repo.upsert(incident)
    for i in range(20):
        frame, tracked = coded_frame(i, FPS)
        recorder.observe(frame, tracked)
    for incident in (first, second):
        recorder.open_clip(incident)
    for i in range(20, 40):
        frame, tracked = coded_frame(i, FPS)
        recorder.observe(frame, tracked)
    recorder.close(timeout=60)
    assert repo.get(first.id).clip is None
    clip = repo.get(second.id).clip
    assert clip is not None and len(decode(store.path_of(clip))) > 0
    assert recorder.stats.errors == 1
    assert recorder.stats.clips_written == 1


def test_keep_originals_without_a_key_fails_at_start(
    repo: IncidentRepository, store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safewatch.incidents import EvidenceKeyError

    monkeypatch.delenv("SAFEWATCH_EVIDENCE_KEY", raising=False)
    with pytest.raises(EvidenceKeyError, match="SAFEWATCH_EVIDENCE_KEY is not set"):
        EvidenceRecorder(store, repo, config(keep_originals=True))


def write_part(spool: Path, incident: Incident, frames: int = 25) -> Path:
    """A clip its writer never finished (a process that died), left in the spool."""
    spool.mkdir(parents=True, exist_ok=True)
    part = spool / f"{incident.id}{PART_SUFFIX}"
    encoder = ClipEncoder(part, ClipInfo(incident.id, CAM, incident.started_at, 0.0), fps=FPS)
    for i in range(frames):
        frame, _ = coded_frame(i, FPS)
        encoder.add(frame.image, frame.timestamp)
    encoder.finish()
    return part


def wait_for_clip(repo: IncidentRepository, incident_id: str, seconds: float = 60.0) -> str:
    deadline = time.monotonic() + seconds
    while (clip := repo.get(incident_id).clip) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert clip is not None, "the clip was never stored"
    return clip


def test_a_full_disk_at_start_keeps_the_interrupted_clip_and_stores_it_later(
    repo: IncidentRepository, tmp_path: Path
) -> None:
    """Start-up recovery that cannot store a clip (a full disk) must not fail the start (a
    restart loop with no analysis): the part stays in the spool and is stored once space is
    back, by the recorder's own retry."""
    from safewatch.errors import StorageError

    class FullForAWhile(EvidenceStore):
        full = True

        def write_file(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if self.full:
                raise StorageError("No space left on device")
            return super().write_file(*args, **kwargs)

    store = FullForAWhile(tmp_path / "evidence")
    incident = make_incident(4, camera=CAM, started_at=T0 + 1.0)
    repo.upsert(incident)
    part = write_part(store.root / ".clips-in-progress", incident)
    recorder = EvidenceRecorder(store, repo, config())
    try:
        assert list(recorder.stats.recovery.failed) == [part.name]
        assert part.exists() and repo.get(incident.id).clip is None
        assert not list(part.parent.glob("*.salvage"))
        store.full = False  # space freed
        clip = wait_for_clip(repo, incident.id)
        assert [t for t, _ in decode(store.path_of(clip))][-1] == pytest.approx(2.4)
        assert not part.exists()
    finally:
        recorder.close(timeout=60)


def test_a_disk_filling_up_during_a_clip_keeps_what_was_written(
    repo: IncidentRepository, store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while a clip is written (PyAV raises it as av.error.OSError) cost the whole clip:
    the part was deleted although its flushed fragments were readable. It is kept, salvaged and
    stored, and the incident, still open, gets it."""
    import errno

    import safewatch.incidents.recorder as recorder_module

    class FillingDisk(ClipEncoder):
        def add(self, image: np.ndarray, timestamp: float) -> None:
            if self.frames == 45:  # frames 0-44 were encoded and their fragments flushed
                raise av.error.OSError(errno.ENOSPC, "No space left on device")
            super().add(image, timestamp)

    monkeypatch.setattr(recorder_module, "ClipEncoder", FillingDisk)
    incident = make_incident(4, camera=CAM, started_at=T0 + 1.0)
    repo.upsert(incident)
    recorder = EvidenceRecorder(store, repo, config(), on_full="wait")
    try:
        for i in range(20):
            recorder.observe(*coded_frame(i, FPS))
        recorder.open_clip(incident)
        for i in range(20, 60):
            recorder.observe(*coded_frame(i, FPS))
        assert recorder.flush(timeout=60)
        part = store.root / ".clips-in-progress" / f"{incident.id}{PART_SUFFIX}"
        assert part.exists() or repo.get(incident.id).clip is not None, "the clip was deleted"
        clip = wait_for_clip(repo, incident.id)
        frames = decode(store.path_of(clip))
        assert 20 <= len(frames) <= 45
        assert [read_index(image) for _, image in frames] == list(range(len(frames)))
        assert repo.get(incident.id).ended_at is None
        assert recorder.stats.clips_failed == 1
    finally:
        recorder.close(timeout=60)
