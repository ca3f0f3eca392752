"""Shared fixtures for every test folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from assets import ASSETS, asset
from db_fixtures import (  # noqa: F401
    db_engine,
    db_url,
    pg_engine,
    pg_server,
    pg_url,
    s3_bucket,
    s3_server,
)


@pytest.fixture(scope="module", autouse=True)
def forget_secrets() -> Iterator[None]:
    """Forget the process's registered secrets after each test module.

    The registry is process-wide, as in the product (every edge masks what any loaded site
    registered), so a secret one module registered ("then") masked another module's expected
    text ("unau***ticated") when the two ran in one process, in that order.
    """
    yield
    from safewatch.config.secrets import SECRETS

    SECRETS.clear()


@pytest.fixture
def assets_dir() -> Path:
    """The shared assets folder; skips when it is absent."""
    return asset(".")


@pytest.fixture(scope="session", autouse=True)
def catalogue_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Catalogue files (the example site's models and clip) go to a per-session cache, never the
    user's, and come from the shared assets as the mirror (``$SAFEWATCH_MIRROR``, as CI sets it),
    so tests that run the example site pull them locally; without ../shared they skip."""
    from safewatch.detect.catalogue import CACHE_ENV, MIRROR_ENV

    saved = {name: os.environ.get(name) for name in (CACHE_ENV, MIRROR_ENV)}
    cache = tmp_path_factory.mktemp("catalogue")
    os.environ[CACHE_ENV] = str(cache)
    if ASSETS.is_dir() and not saved[MIRROR_ENV]:
        os.environ[MIRROR_ENV] = str(ASSETS)
    yield cache
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
