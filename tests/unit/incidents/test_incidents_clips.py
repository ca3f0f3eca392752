"""Clip files: fragmented MP4 that survives a cut, salvage, and start-up recovery of partials."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import pytest

from evidence_frames import CAM, RULE, T0, coded_frame, read_index
from incident_factories import make_incident
from safewatch.domain import Incident
from safewatch.errors import StorageError
from safewatch.incidents import EvidenceStore
from safewatch.incidents.clips import (
    PART_SUFFIX,
    ClipEncoder,
    ClipInfo,
    PartLock,
    read_clip_info,
    recover_clips,
    salvage,
)
from safewatch.storage import IncidentRepository

FPS = 10.0


def write_clip(path: Path, frames: int = 60, incident_id: str = "inc1") -> ClipInfo:
    encoder = ClipEncoder(path, ClipInfo(incident_id, CAM, T0, 0.0), fps=FPS)
    for i in range(frames):
        frame, _ = coded_frame(i, FPS)
        encoder.add(frame.image, frame.timestamp)
    assert encoder.finish() == frames
    info = read_clip_info(path)
    assert info is not None
    return info


def indices(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [read_index(f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]


def cut(source: Path, target: Path, fraction: float) -> None:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])


def test_clip_carries_its_identity_and_first_frame_time(tmp_path: Path) -> None:
    info = write_clip(tmp_path / "a.mp4", frames=5)
    assert info == ClipInfo("inc1", CAM, T0, T0)
    assert indices(tmp_path / "a.mp4") == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("fraction", [0.4, 0.7, 0.97])
def test_salvage_keeps_every_frame_before_the_cut_in_order(tmp_path: Path, fraction: float) -> None:
    write_clip(tmp_path / "whole.mp4")
    cut(tmp_path / "whole.mp4", tmp_path / "x.mp4.part", fraction)
    kept = salvage(tmp_path / "x.mp4.part", tmp_path / "saved.mp4")
    assert kept > 0
    # A prefix of the clip, decodable to the end without error, with its identity kept.
    assert indices(tmp_path / "saved.mp4") == list(range(kept))
    assert kept < 60
    assert read_clip_info(tmp_path / "saved.mp4") == ClipInfo("inc1", CAM, T0, T0)


HEADER_ONLY = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100


@pytest.mark.parametrize("content", [b"", HEADER_ONLY, b"junk" * 50])
def test_nothing_to_salvage_leaves_no_file(tmp_path: Path, content: bytes) -> None:
    part = tmp_path / "x.mp4.part"
    part.write_bytes(content)
    assert salvage(part, tmp_path / "saved.mp4") == 0
    assert not (tmp_path / "saved.mp4").exists()


def incident(incident_id: str) -> Incident:
    return make_incident(
        4,
        camera=CAM,
        rule=RULE,
        started_at=T0 + 2.0,
        incident_id=incident_id,
        peak=0.8,
        snapshot="line-2/2023-11-14/x.jpg",
    )


def test_recovery_completes_salvageable_clips_and_points_the_incident_at_them(
    tmp_path: Path, repo: IncidentRepository
) -> None:
    spool, store = tmp_path / "spool", EvidenceStore(tmp_path / "evidence")
    spool.mkdir()
    repo.upsert(incident("inc1"))
    write_clip(tmp_path / "whole.mp4")
    cut(tmp_path / "whole.mp4", spool / f"inc1{PART_SUFFIX}", 0.7)
    report = recover_clips(spool, store, repo)
    assert report.completed == ["line-2/2023-11-14/inc1.mp4"]
    assert (report.removed, report.busy) == ([], [])
    stored = repo.get("inc1")
    assert stored.clip == "line-2/2023-11-14/inc1.mp4"
    assert stored.snapshot == "line-2/2023-11-14/x.jpg"
    kept = indices(store.path_of(stored.clip))
    assert kept == list(range(len(kept))) and len(kept) > 20
    assert list(spool.iterdir()) == []


def test_recovery_removes_what_does_not_decode_and_keeps_the_incident(
    tmp_path: Path, repo: IncidentRepository
) -> None:
    spool, store = tmp_path / "spool", EvidenceStore(tmp_path / "evidence")
    spool.mkdir()
    repo.upsert(incident("inc2"))
    (spool / f"inc2{PART_SUFFIX}").write_bytes(b"\x00\x00\x00\x18ftypiso5" + b"\x00" * 64)
    (spool / f"inc2{PART_SUFFIX}.salvage").write_bytes(b"left by a crash during recovery")
    report = recover_clips(spool, store, repo)
    assert report.removed == [f"inc2{PART_SUFFIX}"] and report.completed == []
    assert repo.get("inc2").clip is None
    assert list(spool.iterdir()) == []
    assert not (tmp_path / "evidence").exists() or not any((tmp_path / "evidence").rglob("*.mp4"))


def test_recovery_leaves_clips_a_live_writer_holds(
    tmp_path: Path, repo: IncidentRepository
) -> None:
    spool, store = tmp_path / "spool", EvidenceStore(tmp_path / "evidence")
    spool.mkdir()
    part = spool / f"inc3{PART_SUFFIX}"
    write_clip(part, frames=25)
    before = part.read_bytes()
    lock = PartLock(part)
    try:
        report = recover_clips(spool, store, repo)
    finally:
        lock.release()
    assert report.busy == [part.name] and report.completed == report.removed == []
    assert part.read_bytes() == before


def test_recovery_stores_an_orphan_clip_by_its_own_info(
    tmp_path: Path, repo: IncidentRepository
) -> None:
    spool, store = tmp_path / "spool", EvidenceStore(tmp_path / "evidence")
    spool.mkdir()
    write_clip(spool / f"orphan{PART_SUFFIX}", frames=25, incident_id="orphan")
    report = recover_clips(spool, store, repo)
    assert report.completed == ["line-2/2023-11-14/orphan.mp4"]
    assert indices(store.path_of(report.completed[0])) == list(range(25))


def test_a_stored_clip_is_never_erased_by_a_later_copy_without_one(
    repo: IncidentRepository,
) -> None:
    first = incident("inc4")
    repo.upsert(dataclasses.replace(first, clip="line-2/2023-11-14/inc4.mp4"))
    repo.upsert(dataclasses.replace(first, ended_at=T0 + 9))
    stored = repo.get("inc4")
    assert stored.clip == "line-2/2023-11-14/inc4.mp4" and stored.ended_at == T0 + 9


def test_a_full_disk_while_salvaging_keeps_the_part_and_stores_nothing(
    tmp_path: Path, repo: IncidentRepository
) -> None:
    """An error writing the salvaged copy (ENOSPC, from PyAV as an FFmpegError) is not the cut
    of the part: it was taken for one, a clip cut short at the full disk was stored and the
    complete part deleted. It raises, the copy goes, the part stays for another try."""
    spool, store = tmp_path / "spool", EvidenceStore(tmp_path / "evidence")
    spool.mkdir()
    repo.upsert(incident("inc5"))
    part = spool / f"inc5{PART_SUFFIX}"
    write_clip(part)
    before = part.read_bytes()
    full = tmp_path / "saved.mp4"
    full.symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(StorageError, match="salvaged copy"):
        salvage(part, full)
    assert not full.is_symlink()
    # The same through recovery (a retry names its parts): nothing stored, the part kept whole.
    (spool / f"{part.name}.salvage").symlink_to("/dev/full")
    report = recover_clips(spool, store, repo, only=[part.name])
    assert list(report.failed) == [part.name] and report.completed == report.removed == []
    assert repo.get("inc5").clip is None
    assert part.read_bytes() == before
    assert sorted(p.name for p in spool.iterdir()) == [part.name]
