"""The export worker's side of the chain and of its folder, without Redis: catching up with the
chain, where a restarted worker goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from incident_factories import make_incident
from safewatch.bus import export
from safewatch.bus.redis_streams import BusKeys
from safewatch.errors import StorageError
from safewatch.storage import IncidentRepository
from safewatch.storage.incident_repository import StoredChange


def exported(folder: Path) -> list[int]:
    return [json.loads(x)["seq"] for f in sorted(folder.glob("*.jsonl")) for x in f.open()]


def test_a_chain_catch_up_is_written_chunk_by_chunk(
    db_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long gap (an empty folder, a worker down for days) is written and fsynced a chunk at a
    time: a database lost midway keeps what was written, and the next look goes on from there.
    (Before, the whole gap was collected in memory and nothing written until it ended.)"""
    repository = IncidentRepository(db_engine)
    for track in range(5):
        repository.upsert(make_incident(track))
    monkeypatch.setattr(export, "CHAIN_CHUNK", 2)
    read = repository.changes_after
    database_up = [False]  # lost after the first chunk

    def changes_after(after_seq: int, *, limit: int = 1000) -> tuple[list[StoredChange], int]:
        if after_seq >= 2 and not database_up[0]:
            raise StorageError("the database went away")
        return read(after_seq, limit=limit)

    monkeypatch.setattr(repository, "changes_after", changes_after)
    worker = export.ExportWorker(
        None, tmp_path, keys=BusKeys.for_name("a"), consumer="a", repository=repository
    )
    with pytest.raises(StorageError):
        worker.sync_chain(force=True)
    assert exported(tmp_path) == [1, 2] and worker.last_seq == 2
    database_up[0] = True
    assert worker.sync_chain(force=True) == 3
    assert exported(tmp_path) == [1, 2, 3, 4, 5] and worker.last_seq == 5


def test_a_restarted_worker_goes_on_after_the_highest_seq_of_the_last_two_days(
    tmp_path: Path,
) -> None:
    """Around UTC midnight a host whose clock is behind writes a later change into the older
    day's file: the highest number is there, not in the newest file."""
    (tmp_path / "incidents-2026-01-01.jsonl").write_text('{"seq":8}\n{"seq":9}\n{"seq":12}\n')
    (tmp_path / "incidents-2026-01-02.jsonl").write_text('{"seq":10}\n{"seq":11}\n')
    assert export.last_exported_seq(tmp_path) == 12
    (tmp_path / "incidents-2026-01-03.jsonl").write_text("")  # nothing in it yet
    assert export.last_exported_seq(tmp_path) == 12


def test_a_folder_without_file_locks_is_appended_to_without_repairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An NFSv3 mount without its lock service answers ENOLCK: the lock taken before cutting a
    torn tail stopped every export write there. Without a lock nothing is cut (a torn tail may
    be another worker's line in progress), and the lines are appended as before."""
    import errno

    def no_locks(_fd: int, _op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(export.fcntl, "flock", no_locks)
    monkeypatch.setattr(export, "_WARNED_NO_LOCKS", export.threading.Event())
    path = tmp_path / "incidents.jsonl"
    path.write_bytes(b'{"seq": 1}\n{"se')  # a tail another worker may still be writing
    export._append(path, b'{"seq": 3}\n')
    export._append(path, b'{"seq": 4}\n')
    assert path.read_bytes() == b'{"seq": 1}\n{"se{"seq": 3}\n{"seq": 4}\n'
    assert caplog.text.count("cannot be locked") == 1

    def broken(_fd: int, _op: int) -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(export.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Bad file descriptor"):
        export._append(path, b'{"seq": 5}\n')
