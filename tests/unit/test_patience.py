"""The load-scaled liveness waits of the serve tests (tests/patience.py)."""

from __future__ import annotations

import os

import pytest

from patience import MAX_STRETCH, stretch


def test_a_quiet_machine_waits_what_was_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert stretch(60) == 60


def test_a_busy_machine_stretches_by_its_load_per_core_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 1.0, 1.0))
    assert stretch(60) == pytest.approx(150)
    monkeypatch.setattr(os, "getloadavg", lambda: (40.0, 1.0, 1.0))
    assert stretch(60) == 60 * MAX_STRETCH
