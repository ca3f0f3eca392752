"""Atomic writes: whole or nothing, the target's permissions kept, no temporary file left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safewatch.storage.atomic import atomic_file, atomic_write, commit, write_temp


def test_replaces_the_content_and_keeps_the_permissions(tmp_path: Path) -> None:
    target = tmp_path / "rules.yaml"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic_write(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["rules.yaml"]


def test_atomic_file_takes_the_target_permissions_too(tmp_path: Path) -> None:
    """atomic_file (evidence blobs, the detection cache) kept mkstemp's 0600: a replaced file
    lost its mode and a new one was unreadable to anyone but the writer."""
    kept = tmp_path / "still.jpg"
    kept.write_bytes(b"old")
    os.chmod(kept, 0o640)
    with atomic_file(kept) as handle:
        handle.write(b"new")
    assert kept.read_bytes() == b"new" and kept.stat().st_mode & 0o777 == 0o640
    fresh = tmp_path / "clip.mp4"
    with atomic_file(fresh, suffix=".part") as handle:
        handle.write(b"clip")
    plain = tmp_path / "plain"
    plain.touch()
    assert fresh.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # as open() makes one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "plain", "still.jpg"]


def test_a_new_file_follows_the_umask_a_rewrite_keeps_its_mode(tmp_path: Path) -> None:
    """A new file got 0644 whatever the umask: an operator's ``UMask=0077`` (systemd) no longer
    kept evidence private. The umask is read at import, so a process started with it."""
    kept = tmp_path / "kept.yaml"
    kept.write_text("old")
    os.chmod(kept, 0o644)
    script = """
import os, sys
from pathlib import Path

os.umask(0o077)  # as systemd's UMask= sets it before the service starts
from safewatch.storage.atomic import atomic_file, atomic_write

folder = Path(sys.argv[1])
atomic_write(folder / "rules.yaml", "new")
atomic_write(folder / "kept.yaml", "new")
with atomic_file(folder / "still.jpg") as handle:
    handle.write(b"jpeg")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=True)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"rules.yaml": 0o600, "still.jpg": 0o600, "kept.yaml": 0o644}


def test_a_failed_rename_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()  # a folder cannot be replaced by a file
    (target / "inside").write_text("kept")
    with pytest.raises(OSError):
        atomic_write(target, b"data")
    assert (target / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_an_error_inside_the_block_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    target.write_bytes(b"before")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write(b"half of it")
        raise RuntimeError("the stream broke")
    assert target.read_bytes() == b"before"
    assert [p.name for p in tmp_path.iterdir()] == ["blob.bin"]


def test_two_phases_let_the_caller_act_in_between(tmp_path: Path) -> None:
    target = tmp_path / "a.yaml"
    temp = write_temp(target, "v1")
    assert not target.exists() and temp.parent == tmp_path and temp.name.startswith(".a.yaml.")
    commit(temp, target)
    assert target.read_text() == "v1" and not temp.exists()
