"""Database and object-store fixtures, registered for every test folder by ``conftest.py``.

``db_url`` is parametrised over SQLite and PostgreSQL, so a test that asks for it (or for
``db_engine``) runs on both engines; the PostgreSQL case skips, with the reason, where no server
can be started. Each test gets a fresh database: a new SQLite file, or a new PostgreSQL schema.
``pg_url`` and ``pg_engine`` are the PostgreSQL case alone, for tests of what SQLite lacks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db_servers import MotoS3, PostgresServer, postgres_unavailable


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test session."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty database: an SQLite file, or a new schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'safewatch.db'}"
        return
    yield request.getfixturevalue("pg_url")  # (its schema is dropped with that fixture)


@pytest.fixture
def db_engine(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on ``db_url`` with the schema migrated to head (as ``safewatch db upgrade``)."""
    with _migrated(db_url, tmp_path) as engine:
        yield engine


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh, empty schema on the PostgreSQL server, for what only PostgreSQL has
    (advisory locks, leases, several processes on one database): no SQLite case."""
    with pg_server.fresh_schema() as url:
        yield url


@pytest.fixture
def pg_engine(pg_url: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on :func:`pg_url`, migrated to head."""
    with _migrated(pg_url, tmp_path) as engine:
        yield engine


@contextmanager
def _migrated(url: str, tmp_path: Path) -> Iterator[Engine]:
    from safewatch.storage import create_engine_for
    from safewatch.storage.migrate import upgrade

    engine = create_engine_for(url, tmp_path)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    """One moto S3 server for the whole test session."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("boto3", reason="boto3 is not installed")
    server = MotoS3.start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: MotoS3) -> str:
    """A new, empty bucket on the S3 server."""
    return s3_server.create_bucket()
