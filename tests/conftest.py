"""Shared fixtures for every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from assets import asset
from db_fixtures import db_engine, db_url, pg_server, s3_bucket, s3_server  # noqa: F401


@pytest.fixture
def assets_dir() -> Path:
    """The shared assets folder; skips when it is absent."""
    return asset(".")
