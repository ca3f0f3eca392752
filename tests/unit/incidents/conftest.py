"""Fixtures of the incident tests: the SQLite database most of them keep their incidents in.

One copy here rather than one per file; a test that needs PostgreSQL as well asks for
``db_engine`` (both engines) or ``pg_engine`` from ``tests/db_fixtures.py`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from safewatch.storage import IncidentRepository, create_engine_for


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite file under ``tmp_path`` (the relative URL is resolved against it), with
    its schema created on first use."""
    engine = create_engine_for("sqlite:///db/safewatch.db", tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture
def repo(engine: Engine) -> IncidentRepository:
    """The incident repository on :func:`engine`."""
    return IncidentRepository(engine)
