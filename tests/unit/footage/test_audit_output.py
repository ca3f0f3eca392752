"""An audit's output folder holds one whole audit: the earlier one until the new one succeeds;
and its summary says when a video's times are not its own.

Before, a second audit into the same folder added its incidents to the earlier ``audit.db`` and
its stills to the earlier evidence, while ``incidents.json`` described only the second run; and
a failed second audit left the earlier database with half a run in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from safewatch.errors import StorageError
from safewatch.footage.audit import AuditReport, VideoResult
from safewatch.footage.audit_integrity import MARKER, RESULT, staged_output
from safewatch.footage.audit_report import print_summary
from safewatch.pipeline.run import PipelineStats


def write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def contents(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


EARLIER = {
    RESULT: b'{"safewatch": "0.1.0", "videos": [], "incidents": []}',  # before the marker
    "audit.db": b"earlier database",
    "audit.db-wal": b"earlier log",
    "evidence/cam/a.jpg": b"earlier still",
    "yard.annotated.mp4": b"earlier video",
    "notes.txt": b"the user's own file",
}


def test_a_successful_audit_replaces_the_earlier_one_and_keeps_other_files(
    tmp_path: Path,
) -> None:
    write(tmp_path, EARLIER)
    with staged_output(tmp_path) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".")
        write(staging, {RESULT: b"new summary", "audit.db": b"new db", "evidence/cam/b.jpg": b"b"})
        assert contents(tmp_path)[RESULT] == EARLIER[RESULT]  # nothing moves before the end
    published = contents(tmp_path)
    assert published.pop(MARKER)  # the next audit may replace this one
    assert published == {
        RESULT: b"new summary",
        "audit.db": b"new db",
        "evidence/cam/b.jpg": b"b",
        "notes.txt": b"the user's own file",
    }


def test_a_failed_audit_leaves_the_earlier_one_as_it_was(tmp_path: Path) -> None:
    write(tmp_path, EARLIER)
    with pytest.raises(KeyboardInterrupt), staged_output(tmp_path) as staging:
        write(staging, {"audit.db": b"half a run", "evidence/cam/b.jpg": b"b"})
        raise KeyboardInterrupt
    assert contents(tmp_path) == EARLIER
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_folder_whose_evidence_no_audit_wrote_is_refused_untouched(tmp_path: Path) -> None:
    # A site's data folder given as --out: its evidence must never be replaced by an audit's.
    site = {"evidence/yard/2024-01-01/abc.jpg": b"live evidence", "safewatch.db": b"db"}
    write(tmp_path, site)
    with (
        pytest.raises(StorageError, match="holds evidence, which no audit wrote"),
        staged_output(tmp_path),
    ):
        raise AssertionError("must not run")
    assert contents(tmp_path) == site


def test_a_half_published_audit_is_replaced_by_the_next(tmp_path: Path) -> None:
    # A crash while publishing leaves the marker and no incidents.json: still an audit's folder.
    write(tmp_path, {MARKER: b"", "evidence/cam/a.jpg": b"old"})
    with staged_output(tmp_path) as staging:
        write(staging, {RESULT: b"{}", "evidence/cam/b.jpg": b"new"})
    assert sorted(contents(tmp_path)) == [MARKER, "evidence/cam/b.jpg", RESULT]


def test_a_failed_first_audit_removes_the_folder_it_created(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), staged_output(out):
        raise RuntimeError("model failed")
    assert not out.exists()


def test_an_output_folder_below_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with (
        pytest.raises(StorageError, match="cannot create the output folder"),
        staged_output(tmp_path / "file" / "out"),
    ):
        pass


def summary(untimed: int, decoded: int) -> str:
    result = VideoResult(
        Path("flat.mkv"),
        "yard",
        PipelineStats(frames=41),
        (),
        None,
        untimed=untimed,
        decoded=decoded,
    )
    console = Console(width=200, record=True)
    print_summary(AuditReport(Path("out"), [result]), console)
    return console.export_text()


def test_the_summary_warns_when_a_videos_times_are_the_frame_rates() -> None:
    assert "199 picture(s) of flat.mkv carry no usable timestamp" in summary(199, 200)
    assert "timestamp" not in summary(3, 795)  # a few flushed at the end of an AVI: no warning
