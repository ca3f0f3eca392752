"""Alembic migrations on SQLite and PostgreSQL: they build exactly the models' schema, go down
and up again, adopt databases from before migrations, run atomically, and start-up policy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from safewatch.errors import StorageError
from safewatch.storage import Base, IncidentRepository, create_engine_for
from safewatch.storage.migrate import (
    _config,
    current_revision,
    ensure_schema,
    head_revision,
    history,
    upgrade,
)
from safewatch.storage.migrations import versions

LEGACY_INCIDENTS = """
CREATE TABLE incidents (
    id VARCHAR(64) PRIMARY KEY, camera_id VARCHAR(128) NOT NULL, rule_id VARCHAR(128) NOT NULL,
    rule_kind VARCHAR(64) NOT NULL, severity VARCHAR(16) NOT NULL, track_ids JSON NOT NULL,
    started_at FLOAT NOT NULL, ended_at FLOAT, duration FLOAT, peak_confidence FLOAT NOT NULL,
    message TEXT NOT NULL, snapshot VARCHAR(512), zone_id VARCHAR(128), status VARCHAR(32) NOT NULL,
    created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL
)
"""
"""The incidents table exactly as ``create_all`` made it before migrations (no ``clip``)."""


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database (not migrated)."""
    engine = create_engine_for(db_url, tmp_path)
    yield engine
    engine.dispose()


def test_history_is_linear_and_ends_at_head() -> None:
    revisions = history()
    # one revision per file, numbered 0001.. without a gap (helpers add theirs concurrently)
    files = (Path(versions.__file__).parent).glob("v[0-9][0-9][0-9][0-9]_*.py")
    ids = sorted((f.name[1:5] for f in files), reverse=True)
    assert ids == [f"{n:04d}" for n in range(len(ids), 0, -1)]
    assert [r.id for r in revisions] == ids
    assert revisions[0].id == head_revision()
    assert [r.down for r in revisions] == [*ids[1:], None]
    assert all(r.message for r in revisions)


def test_upgrade_builds_exactly_the_models_schema(engine: Engine) -> None:
    assert current_revision(engine) is None
    result = upgrade(engine)
    assert (result.before, result.after, result.stamped) == (None, head_revision(), None)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    upgrade(engine)
    again = upgrade(engine)
    assert again.before == again.after == head_revision()


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as connection:
        config = _config(connection)
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def _legacy(engine: Engine, *, with_clip: bool) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(LEGACY_INCIDENTS)
        if with_clip:
            connection.exec_driver_sql("ALTER TABLE incidents ADD COLUMN clip VARCHAR(512)")
        connection.exec_driver_sql(
            "INSERT INTO incidents (id, camera_id, rule_id, rule_kind, severity, track_ids, "
            "started_at, ended_at, duration, peak_confidence, message, snapshot, zone_id, status, "
            "created_at, updated_at) VALUES ('inc-1', 'yard', 'hardhat', 'ppe', 'high', '[4]', "
            "1700000000.5, 1700000009.5, 9.0, 0.75, 'person #4 without hardhat', NULL, NULL, "
            "'acknowledged', 1700000001.0, 1700000010.0)"
        )


@pytest.mark.parametrize(("with_clip", "stamped"), [(False, "0001"), (True, "0002")])
def test_database_from_before_migrations_is_adopted(
    engine: Engine, with_clip: bool, stamped: str
) -> None:
    from safewatch.incidents.chain import verify_chain

    _legacy(engine, with_clip=with_clip)
    result = upgrade(engine)
    assert (result.before, result.stamped, result.after) == (None, stamped, head_revision())
    repo = IncidentRepository(engine, auto_upgrade=False)
    kept = repo.get("inc-1")
    assert (kept.peak_confidence, kept.status, kept.clip) == (0.75, "acknowledged", None)
    assert [e.kind for e in repo.timeline("inc-1")] == ["incident.imported"]
    report = verify_chain(engine, None)
    assert report.ok, report.problems
    assert report.incidents == 1


def test_failed_migration_leaves_the_previous_schema(engine: Engine) -> None:
    """0003 cannot create chain_entries (a table of that name is in the way): nothing changes,
    not even the stamp, and the incidents are untouched."""
    _legacy(engine, with_clip=True)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE chain_entries (x INTEGER)")
    with pytest.raises(StorageError, match="cannot migrate"):
        upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert tables == {"incidents", "chain_entries"}
    assert current_revision(engine) is None
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM incidents")).scalar() == 1


def test_unknown_revision_is_a_storage_error(engine: Engine) -> None:
    with pytest.raises(StorageError, match="cannot migrate"):
        upgrade(engine, "9999")


def test_only_sqlite_upgrades_on_its_own(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        IncidentRepository(engine)
        assert current_revision(engine) == head_revision()
    else:
        with pytest.raises(
            StorageError, match=rf"needs {head_revision()}: run `safewatch db upgrade"
        ):
            IncidentRepository(engine)
        assert current_revision(engine) is None
        IncidentRepository(engine, auto_upgrade=True)
        assert current_revision(engine) == head_revision()


def test_schema_newer_than_this_safewatch_is_refused(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(StorageError, match="newer than this safewatch knows"):
        ensure_schema(engine)


def test_two_processes_starting_together_migrate_once(tmp_path: Path) -> None:
    engines = [create_engine_for("sqlite:///shared.db", tmp_path) for _ in range(3)]
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            IncidentRepository(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert current_revision(engines[0]) == head_revision()
    for engine in engines:
        engine.dispose()
