"""``safewatch db``, ``verify`` and ``retention`` as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_support import invoke
from safewatch.config.loader import load_site
from safewatch.domain import Incident, IncidentStatus, Severity, incident_id
from safewatch.errors import StorageError
from safewatch.incidents.site_storage import open_site_storage

T0 = 1_700_000_000.0


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    site = {
        "version": 1,
        "models": {"coco": {"path": "yolox_nano"}},
        "cameras": {"yard": {"source": "/dev/null", "models": ["coco"]}},
        "storage": {"database": db_url, "evidence_dir": "evidence"},
        "retention": {"days": 30},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def run_as_make_run(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run as `make run` does: ``.venv/bin/safewatch``, not on ``PATH``; that script."""
    script = folder / ".venv" / "bin" / "safewatch"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "db"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    return script


def populate(config: Path) -> str:
    """One closed, resolved incident with a still, 40 days old; returns the still's key."""
    storage = open_site_storage(load_site(config))
    try:
        key = incident_id("yard", "hardhat", 1, T0)
        still = storage.evidence.write_still(
            key, np.full((48, 64, 3), 90, np.uint8), camera_id="yard", at=T0
        )
        storage.repository.upsert(
            Incident(
                key, "yard", "hardhat", "ppe", Severity.HIGH, (1,), T0, T0 + 5, 0.8, "m", still
            )
        )
        storage.repository.set_status(key, IncidentStatus.ACKNOWLEDGED, actor="ana")
        storage.repository.set_status(key, IncidentStatus.RESOLVED, actor="ana")
        return still
    finally:
        storage.close()


def test_db_upgrade_current_history(config: Path) -> None:
    from safewatch.storage.migrate import head_revision

    head = head_revision()
    code, output = invoke("db", "current", "--config", str(config))
    assert code == 0 and f"revision none; head is {head}" in output
    code, output = invoke("db", "upgrade", "--config", str(config))
    assert code == 0 and f"upgraded empty -> {head}" in output
    code, output = invoke("db", "upgrade", "--config", str(config))
    assert code == 0 and f"already at revision {head}" in output
    code, output = invoke("db", "current", "--config", str(config))
    assert code == 0 and f"revision {head} (head)" in output
    code, output = invoke("db", "history")
    assert code == 0 and output.splitlines()[0].startswith(head)


def test_db_downgrade_and_the_ways_back_that_failed(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`db upgrade --revision OLD` said "already at" and did nothing, there was no command to go
    back, and `db current` on a database newer than this safewatch said to run `db upgrade`
    (which then failed)."""
    from sqlalchemy import text

    from safewatch.storage import create_engine_for
    from safewatch.storage.migrate import current_revision, head_revision, history

    head, previous = (r.id for r in history()[:2])
    script = run_as_make_run(tmp_path, monkeypatch)
    site = load_site(config)
    engine = create_engine_for(site.config.storage.database, site.base_dir)
    try:
        invoke("db", "upgrade", "--config", str(config))
        with pytest.raises(StorageError, match=f"newer than {previous}: an upgrade never goes"):
            invoke("db", "upgrade", "--config", str(config), "--revision", previous)
        # The advice names the site file (without -c it failed when pasted) and the safewatch
        # that was run (a bare `safewatch` is not on PATH after `make run`).
        advice = re.escape(f"`{script} db downgrade -c {config} --revision")
        with pytest.raises(StorageError, match=advice):
            invoke("db", "upgrade", "--config", str(config), "--revision", previous)
        assert current_revision(engine) == head
        # It drops tables and columns with their rows: listed, and not done unasked.
        code, output = invoke("db", "downgrade", "--config", str(config), "--revision", previous)
        assert code == 2 and "no terminal to confirm the downgrade" in output
        assert f"going back to {previous} undoes" in output and f"  {head}  " in output
        assert current_revision(engine) == head
        code, output = invoke(
            "db", "downgrade", "--config", str(config), "--revision", previous, "--yes"
        )
        assert code == 0 and f"downgraded {head} -> {previous}" in output
        assert current_revision(engine) == previous
        forward = re.escape(f"older than {head}: `{script} db upgrade -c {config} --revision")
        with pytest.raises(StorageError, match=forward):
            invoke("db", "downgrade", "--config", str(config), "--revision", head)
        with pytest.raises(StorageError, match="not a schema revision"):
            invoke("db", "downgrade", "--config", str(config), "--revision", "base")
        assert current_revision(engine) == previous
        invoke("db", "upgrade", "--config", str(config))
        assert current_revision(engine) == head_revision()
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
        code, output = invoke("db", "current", "--config", str(config))
        assert code == 0 and "newer than this safewatch knows" in output
        assert "upgrade safewatch" in output and "run `safewatch db upgrade" not in output
        with pytest.raises(StorageError, match="with the safewatch that upgraded it"):
            invoke("db", "downgrade", "--config", str(config), "--revision", previous)
    finally:
        engine.dispose()


def test_schema_advice_names_the_safewatch_run_and_the_site_file(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema behind said to run `safewatch db upgrade --config SITE` (ensure_schema, as a
    server on PostgreSQL starts) or `safewatch db upgrade -c ...` (`db current`): neither the
    site file nor, after `make run`, a command the shell finds."""
    script = run_as_make_run(tmp_path, monkeypatch)
    invoke("db", "upgrade", "--config", str(config), "--revision", "0004")
    site = load_site(config)
    with pytest.raises(StorageError) as refused:
        open_site_storage(site, auto_upgrade=False)
    assert f"run `{script} db upgrade -c {site.path}` first" in str(refused.value)
    code, output = invoke("db", "current", "--config", str(config))
    assert code == 0 and f"run `{script} db upgrade -c {config}`" in output, output
    with pytest.raises(StorageError) as refused:
        invoke("verify", "--config", str(config))
    assert f"run `{script} db upgrade -c {config}` first" in str(refused.value)


def test_verify_passes_then_names_an_edited_still(config: Path) -> None:
    invoke("db", "upgrade", "--config", str(config))
    still = populate(config)
    code, output = invoke("verify", "--config", str(config))
    assert code == 0, output
    assert "ok: no tampering found" in output and "1 evidence files" in output
    path = config.parent / "evidence" / still
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    code, output = invoke("verify", "--config", str(config))
    assert code == 1
    assert "edited_evidence" in output and still in output
    code, output = invoke("verify", "--config", str(config), "--no-evidence")
    assert code == 0  # the chain and table alone are intact
    code, output = invoke("verify", "--config", str(config), "--json")
    report = json.loads(output)
    assert code == 1 and report["ok"] is False
    assert [p["kind"] for p in report["problems"]] == ["edited_evidence"]
    assert report["problems"][0]["key"] == still


def test_verify_notes_an_unrecorded_evidence_file_and_still_passes(config: Path) -> None:
    """A file no chain entry records (a crash between writing and chaining leaves one) is named
    as a note: exit 0, so a kill -9 does not fail every later check."""
    invoke("db", "upgrade", "--config", str(config))
    still = populate(config)
    stray = Path(still).with_name("stray.jpg").as_posix()
    (config.parent / "evidence" / stray).write_bytes(b"never chained")
    code, output = invoke("verify", "--config", str(config))
    assert code == 0, output
    assert f"note: unchained_evidence: evidence file {stray}" in output
    code, output = invoke("verify", "--config", str(config), "--json")
    report = json.loads(output)
    assert code == 0 and report["ok"] is True and report["problems"] == []
    assert [(n["kind"], n["key"]) for n in report["notices"]] == [("unchained_evidence", stray)]


def test_verify_never_creates_nor_reads_a_database_it_cannot_check(
    config: Path, tmp_path: Path
) -> None:
    """verify opened the database read-write: a missing SQLite file was created (then its
    missing tables were six lines of raw SQL errors), and an older schema failed with "no such
    column" instead of saying to upgrade it."""
    (tmp_path / "elsewhere").mkdir()
    missing = tmp_path / "elsewhere" / "site.db"
    other = site_with_database(tmp_path / "elsewhere", f"sqlite:///{missing}")
    with pytest.raises(StorageError, match=r"database sqlite:///.*/site\.db does not exist"):
        invoke("verify", "--config", str(other))
    assert not missing.exists()

    invoke("db", "upgrade", "--config", str(config), "--revision", "0004")
    with pytest.raises(StorageError) as refused:
        invoke("verify", "--config", str(config))
    message = str(refused.value)
    assert "is at schema revision 0004, this safewatch reads" in message
    assert f"db upgrade -c {config}` first" in message
    invoke("db", "upgrade", "--config", str(config))
    code, output = invoke("verify", "--config", str(config))
    assert code == 0, output


def test_verify_leaves_the_database_folder_as_it_found_it(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    """Read-only, verify made SQLite create the WAL database's -wal and -shm files and could not
    remove them: every verify of a stopped site left two files behind. A -wal that was there
    (a running server's, holding its newest commits) must stay, with the server's rows."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite files only")
    invoke("db", "upgrade", "--config", str(config))
    populate(config)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert "safewatch.db-wal" not in before and "safewatch.db-shm" not in before
    code, output = invoke("verify", "--config", str(config))
    assert code == 0, output
    assert sorted(p.name for p in tmp_path.iterdir()) == before

    server = open_site_storage(load_site(config))  # a running server: its -wal holds a commit
    try:
        key = incident_id("yard", "fall", 2, T0 + 60)
        server.repository.upsert(
            Incident(key, "yard", "fall", "ppe", Severity.HIGH, (2,), T0 + 60, None, 0.9, "m")
        )
        wal = tmp_path / "safewatch.db-wal"
        assert wal.stat().st_size > 0
        code, output = invoke("verify", "--config", str(config), "--no-evidence")
        assert code == 0 and "2 incidents" in output, output
        assert wal.exists() and (tmp_path / "safewatch.db-shm").exists()
        assert server.repository.get(key).camera_id == "yard"
    finally:
        server.close()


def test_verify_reports_evidence_next_to_an_empty_chain(config: Path) -> None:
    """The database wiped back to a fresh one's state (no entries, no incidents, the head at
    entry 0) next to the evidence it recorded verified as "ok: no tampering found"; the store's
    other objects are no evidence."""
    from sqlalchemy import delete, update

    from safewatch.storage import ChainEntryRow, ChainHeadRow, IncidentRow
    from safewatch.storage.hash_chain import GENESIS

    invoke("db", "upgrade", "--config", str(config))
    evidence = config.parent / "evidence"
    evidence.mkdir()
    (evidence / "reveal-log.jsonl").write_text("{}\n")
    (evidence / "_jobs" / "j1").mkdir(parents=True)
    (evidence / "_jobs" / "j1" / "input.mp4").write_bytes(b"video")
    code, output = invoke("verify", "--config", str(config))
    assert code == 0 and "ok: no tampering found" in output, output
    still = populate(config)
    storage = open_site_storage(load_site(config))
    try:
        with storage.engine.begin() as connection:
            connection.execute(delete(ChainEntryRow))
            connection.execute(delete(IncidentRow))
            connection.execute(update(ChainHeadRow).values(seq=0, hash=GENESIS))
    finally:
        storage.close()
    code, output = invoke("verify", "--config", str(config))
    assert code == 1, output
    assert "unchained_evidence: the chain is empty, but the evidence store holds 1" in output
    assert still in output
    code, output = invoke("verify", "--config", str(config), "--json")
    assert [p["kind"] for p in json.loads(output)["problems"]] == ["unchained_evidence"]


def test_verify_expect_hash_must_be_a_hash(config: Path) -> None:
    """A typo, a truncated copy or an upper-case paste of the head's hash was reported as
    anchor_not_found ("the chain was rewritten"), a tamper alarm, with exit 1."""
    invoke("db", "upgrade", "--config", str(config))
    populate(config)
    code, output = invoke("verify", "--config", str(config), "--json")
    head = json.loads(output)["head"]["hash"]
    for wrong in ("zzz", head[:40], head[:-1] + "g"):
        code, output = invoke("verify", "--config", str(config), "--expect-hash", wrong)
        assert code == 2 and "--expect-hash" in output and "64 hex digits" in output, wrong
    code, output = invoke("verify", "--config", str(config), "--expect-hash", head.upper())
    assert code == 0 and "ok: no tampering found" in output, output
    code, output = invoke("verify", "--config", str(config), "--expect-hash", "0" * 63 + "1")
    assert code == 1 and "anchor_not_found" in output


def test_retention_dry_run_then_run(config: Path) -> None:
    invoke("db", "upgrade", "--config", str(config))
    still = populate(config)  # 40+ days old by now (T0 is in 2023)
    code, output = invoke("retention", "--config", str(config), "--dry-run")
    assert code == 0 and f"would remove {still}" in output
    assert (config.parent / "evidence" / still).exists()
    code, output = invoke("retention", "--config", str(config))
    assert code == 0 and f"removed {still} (age" in output
    assert not (config.parent / "evidence" / still).exists()
    code, output = invoke("verify", "--config", str(config))
    assert code == 0 and "(1 removed by retention)" in output


def test_retention_dry_run_lists_the_files_a_failed_delete_left_behind(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose removal is chained but whose delete failed is deleted by the next run; the
    dry run said nothing of it ("would remove 0 file(s)") and neither counted its bytes."""
    from safewatch.storage import LocalBlobStore

    invoke("db", "upgrade", "--config", str(config))
    still = populate(config)
    path = config.parent / "evidence" / still
    size = path.stat().st_size
    real_delete = LocalBlobStore.delete

    def refuse(self: LocalBlobStore, key: str) -> None:
        raise StorageError(f"cannot delete evidence {key}: Operation not permitted")

    monkeypatch.setattr(LocalBlobStore, "delete", refuse)
    invoke("retention", "--config", str(config))
    monkeypatch.setattr(LocalBlobStore, "delete", real_delete)
    assert path.exists()
    code, output = invoke("retention", "--config", str(config), "--dry-run")
    assert code == 0, output
    assert f"would remove {still} (left over" in output
    assert f"would remove 1 file(s), {size} B; kept 0 B" in output
    assert path.exists()
    code, output = invoke("retention", "--config", str(config))
    assert code == 0, output
    assert f"removed {still} (left over" in output
    assert f"removed 1 file(s), {size} B; kept 0 B" in output
    assert not path.exists()


def test_retention_failed_deletes_are_not_counted_as_removed_and_exit_1(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that cannot be deleted (``chattr +i``, a read-only mount) was listed as removed,
    its bytes as freed, and the command exited 0, so a cron job never saw it; the same for a
    left-over file whose delete failed again."""
    from safewatch.storage import LocalBlobStore

    invoke("db", "upgrade", "--config", str(config))
    still = populate(config)
    path = config.parent / "evidence" / still
    size = path.stat().st_size

    def refuse(self: LocalBlobStore, key: str) -> None:
        raise StorageError(f"cannot delete evidence {key}: Operation not permitted")

    monkeypatch.setattr(LocalBlobStore, "delete", refuse)
    for _ in range(2):  # its removal recorded, then (left over) deleted again
        code, output = invoke("retention", "--config", str(config))
        assert code == 1, output
        assert f"delete failed, retried next run: {still}" in output
        assert f"removed 0 file(s), 0 B; kept {size} B" in output
        assert f"removed {still}" not in output and "1 delete(s) failed" in output
        assert path.exists()
    monkeypatch.undo()
    code, output = invoke("retention", "--config", str(config))
    assert code == 0 and f"removed 1 file(s), {size} B; kept 0 B" in output
    assert not path.exists()


def test_verify_names_the_witness_when_the_newest_entries_are_cut_off(config: Path) -> None:
    """Cut the newest incident out whole (its row, its chain entries) and set the head back: every
    remaining link checks, but the head witnessed in the evidence store is gone."""
    from sqlalchemy import delete, text

    from safewatch.incidents.witness import WitnessWriter
    from safewatch.storage import ChainEntryRow, IncidentRow
    from safewatch.storage.hash_chain import read_head

    invoke("db", "upgrade", "--config", str(config))
    populate(config)
    storage = open_site_storage(load_site(config))
    try:
        before = read_head(storage.engine)
        assert before is not None
        late = incident_id("yard", "hardhat", 2, T0 + 600)
        storage.repository.upsert(
            Incident(late, "yard", "hardhat", "ppe", Severity.HIGH, (2,), T0 + 600, None, 0.8, "m")
        )
        WitnessWriter(storage.evidence.backend, storage.engine).stop()  # a clean shutdown
        with storage.engine.begin() as connection:
            connection.execute(delete(IncidentRow).where(IncidentRow.id == late))
            connection.execute(delete(ChainEntryRow).where(ChainEntryRow.seq > before[0]))
            connection.execute(
                text("UPDATE chain_head SET seq = :s, hash = :h"), {"s": before[0], "h": before[1]}
            )
    finally:
        storage.close()
    code, output = invoke("verify", "--config", str(config), "--no-evidence")
    assert code == 1, output
    assert "witness_mismatch" in output
    assert f"saw entry {before[0] + 1}" in output and "cut off the end" in output
    assert str(config.parent / "evidence") in output  # where the witness is
    code, output = invoke("verify", "--config", str(config), "--json")
    report = json.loads(output)
    assert [p["kind"] for p in report["problems"]] == ["witness_mismatch"]
    assert report["witness"]["seq"] == before[0] + 1
    # latest.json deleted (or an older one put back): the history's highest witness remains.
    # Until December 2026 only latest.json was read, and this cut passed.
    (config.parent / "evidence" / "chain-witness" / "latest.json").unlink()
    code, output = invoke("verify", "--config", str(config), "--json")
    report = json.loads(output)
    assert code == 1 and [p["kind"] for p in report["problems"]] == ["witness_mismatch"]
    assert report["witness"] is None
    (history,) = report["witness_history"]
    assert history["seq"] == before[0] + 1 and history["object"].endswith(f"-{before[0] + 1}.json")
    # Without any witness the cut is invisible: that is the gap they close.
    shutil.rmtree(config.parent / "evidence" / "chain-witness")
    code, output = invoke("verify", "--config", str(config))
    assert code == 0, output


def site_with_database(folder: Path, url: str) -> Path:
    """A site file on database ``url`` (nothing connects to it until a command does)."""
    site = {
        "version": 1,
        "models": {"coco": {"path": "yolox_nano"}},
        "cameras": {"yard": {"source": "/dev/null", "models": ["coco"]}},
        "storage": {"database": url, "evidence_dir": "evidence"},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``safewatch *args`` through the console entry point (its error printer), as a user runs
    it; the exit code. Its output is left in ``capsys``."""
    from safewatch.cli import main

    monkeypatch.setattr("sys.argv", ["safewatch", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return int(exit_.value.code or 0)


def test_database_urls_are_shown_without_their_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password given as a query value (libpq takes one there) was printed whole, as
    ``render_as_string(hide_password=True)`` masks only the user info's; a URL that does not
    parse was quoted raw, and one whose port is not a number was a ``ValueError`` traceback."""
    config = site_with_database(
        tmp_path, "postgresql://sw@127.0.0.1:1/sw?password=QueryPw123&sslmode=disable"
    )
    with pytest.raises(StorageError) as refused:  # nothing listens on port 1
        invoke("db", "current", "--config", str(config))
    assert "cannot open database postgresql://***@127.0.0.1:1/sw?password=***" in str(refused.value)
    assert "QueryPw123" not in str(refused.value)
    # A unix socket's URL has no host after the "@": its password was printed whole.
    config = site_with_database(tmp_path, f"postgresql://sw:Secr3tPw@/sw?host={tmp_path}/none")
    with pytest.raises(StorageError) as refused:
        invoke("db", "current", "--config", str(config))
    assert "postgresql://***:***@/sw" in str(refused.value)
    assert "Secr3tPw" not in str(refused.value)
    for url, why in [
        ('"postgresql://sw:Hunter2Secret@db.local/sw"', "not of the form"),
        ("postgresql://sw:Hunter2Secret@db.local:54x2/sw", "the port is not a number"),
    ]:
        config = site_with_database(tmp_path, url)
        for command in (["db", "current", "-c", str(config)], ["check-config", str(config)]):
            assert run_main(monkeypatch, *command) == 2, command
            printed = capsys.readouterr()
            assert printed.err.startswith("error: invalid database URL ")
            assert why in printed.err and "Traceback" not in printed.err
            assert "Hunter2Secret" not in printed.err + printed.out


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (  # was "Can't load plugin: sqlalchemy.dialects:postgres"
            "postgres://sw:Hunter2Secret@db.local/sw",
            "error: invalid database URL postgres://***:***@db.local/sw: use postgresql://, not "
            "postgres://",
        ),
        (  # was "No module named 'MySQLdb'"
            "mysql://db.local/sw",
            "error: unsupported database mysql://db.local/sw: safewatch supports sqlite and "
            "postgresql",
        ),
        (  # the hint's own user:password@ was masked as a secret: "dialect+driver://***:***@"
            "notaurl",
            "error: invalid database URL notaurl: not of the form "
            "postgresql://<user>:<password>@<host>:<port>/<database> or sqlite:///<path>",
        ),
    ],
)
def test_database_urls_safewatch_cannot_use_are_said_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    expected: str,
) -> None:
    config = site_with_database(tmp_path, url)
    for command in (["db", "current", "-c", str(config)], ["check-config", str(config)]):
        assert run_main(monkeypatch, *command) == 2, command
        printed = capsys.readouterr()
        assert " ".join(printed.err.split()) == expected, command
        assert "Hunter2Secret" not in printed.err + printed.out


def test_error_lines_are_printed_as_text_not_markup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error naming a path (or a reason) with ``[/b]`` in it was a Rich ``MarkupError``
    traceback instead of the error line."""
    missing = tmp_path / "a[" / "b]" / "site.yaml"
    assert run_main(monkeypatch, "db", "current", "-c", str(missing)) == 2
    printed = capsys.readouterr().err
    assert printed.startswith("error: ") and "a[/b]/site.yaml" in printed


def test_listing_commands_do_not_create_a_mistyped_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`users list` and `alerts list` on a mistyped path created an empty database (and its
    folder) and said "no users yet" / "outbox: empty" with status 0; they open it read-only,
    as verify does. `users add` still creates it, and the lists then read it."""
    config = site_with_database(tmp_path, "sqlite:///safewatch-dta/site.db")
    folder = tmp_path / "safewatch-dta"
    for command in (["users", "list"], ["users", "tokens", "ana"], ["alerts", "list"]):
        assert run_main(monkeypatch, *command, "-c", str(config)) == 2, command
        printed = capsys.readouterr()
        assert printed.err.startswith(f"error: database sqlite:///{folder}/site.db does not exist")
        assert not folder.exists(), command
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert run_main(monkeypatch, "users", "add", "ana", "--role", "admin", "--password-stdin",
                    "-c", str(config)) == 0  # fmt: skip
    assert run_main(monkeypatch, "users", "list", "-c", str(config)) == 0
    assert run_main(monkeypatch, "alerts", "list", "-c", str(config)) == 0
    printed = capsys.readouterr().out
    assert "ana" in printed and "outbox: empty" in printed
    assert sorted(p.name for p in folder.iterdir()) == ["site.db"]  # no -wal/-shm left behind
    # A read-only engine's file URI is shown as the path (ensure_schema's messages show it).
    from safewatch.storage.engine import create_engine_for, resolve_url, shown_url

    engine = create_engine_for("sqlite:///safewatch-dta/site.db", tmp_path, read_only=True)
    try:
        assert shown_url(engine.url) == f"sqlite:///{folder}/site.db"
    finally:
        engine.dispose()
    assert shown_url(resolve_url("sqlite:///safewatch-dta/site.db", tmp_path)) == (
        f"sqlite:///{folder}/site.db"
    )
