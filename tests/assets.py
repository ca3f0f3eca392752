"""Where the team's shared assets are, and a skip with a reason when they are absent.

A module of its own (not ``conftest``) so every test folder imports the same object: pytest gives
each folder's ``conftest.py`` the same module name, and whichever was imported last would win.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["ASSETS", "asset"]

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
