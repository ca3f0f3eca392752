"""Engine creation: path resolution, pragmas, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from safewatch.errors import StorageError
from safewatch.storage import create_engine_for, resolve_url


def test_relative_sqlite_path_resolves_against_base_dir_and_creates_folders(
    tmp_path: Path,
) -> None:
    engine = create_engine_for("sqlite:///data/deep/safewatch.db", tmp_path)
    try:
        assert (tmp_path / "data" / "deep" / "safewatch.db").exists()
    finally:
        engine.dispose()


def test_absolute_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs.db"
    url = resolve_url(f"sqlite:///{target}", Path("/elsewhere"))
    assert url.database == str(target)


def test_sqlite_pragmas_are_set(tmp_path: Path) -> None:
    engine = create_engine_for("sqlite:///x.db", tmp_path)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 5000
    finally:
        engine.dispose()


def test_in_memory_database_works(tmp_path: Path) -> None:
    engine = create_engine_for("sqlite://", tmp_path)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_unwritable_folder_is_a_storage_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="cannot"):
            create_engine_for("sqlite:///locked/sub/safewatch.db", tmp_path)
    finally:
        locked.chmod(0o700)


def test_database_path_that_is_a_folder_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    with pytest.raises(StorageError, match=r"cannot open database sqlite:///.*db"):
        create_engine_for("sqlite:///db", tmp_path)


def test_invalid_url_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="invalid database URL"):
        create_engine_for("not a url", tmp_path)


def test_database_folder_blocked_by_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    with pytest.raises(StorageError, match="cannot create the database folder"):
        create_engine_for("sqlite:///blocker/sub/safewatch.db", tmp_path)
