"""Shared fixtures for every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from assets import asset


@pytest.fixture
def assets_dir() -> Path:
    """The shared assets folder; skips when it is absent."""
    return asset(".")
