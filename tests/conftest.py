"""Shared fixtures: where the real assets are, and a skip with a reason when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"


def asset(relative: str) -> Path:
    """Path of a shared asset, or skip the test saying which file is missing and why."""
    path = ASSETS / relative
    if not path.exists():
        pytest.skip(
            f"needs {path}: the team's shared assets (../shared/assets beside the repository) "
            "are not present on this machine"
        )
    return path


@pytest.fixture
def assets_dir() -> Path:
    """The shared assets folder; skips when it is absent."""
    return asset(".")
