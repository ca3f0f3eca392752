"""bench/head_size scores head-classifier calls per simulated head side and picks the smallest
reliable side; synthetic calls, so every precision and every choice is known."""

from __future__ import annotations

import pytest
from bench.head_size import rates, smallest_reliable, wilson_upper


def test_rates_count_precision_recall_false_assurance_and_no_verdict() -> None:
    truths = ["hat", "hat", "hat", "bare", "bare"]
    calls = ["hat", "hat", None, "hat", "bare"]
    r = rates(truths, calls)
    assert r["hat_precision"] == pytest.approx(0.667, abs=1e-3)  # 2 of 3 hat calls right
    assert r["hat_recall"] == pytest.approx(0.667, abs=1e-3)  # 2 of 3 hats
    assert r["bare_precision"] == 1.0 and r["bare_recall"] == 0.5
    assert r["bare_called_hat"] == 0.5 and r["hat_called_bare"] == 0.0
    assert r["no_verdict"] == 0.2
    assert rates(["hat"], [None])["hat_precision"] is None  # no call, no precision


def _table(wrong: dict[int, tuple[int, int]]) -> dict[str, object]:
    """Sizes with (wrong hat calls, wrong bare calls) of 100 calls each."""
    return {
        "sizes": {
            str(s): {"hat_calls": 100, "hat_wrong": h, "bare_calls": 100, "bare_wrong": b}
            for s, (h, b) in wrong.items()
        }
    }


def test_smallest_reliable_needs_every_larger_side_to_pass() -> None:
    table = _table({6: (2, 20), 8: (1, 3), 10: (9, 2), 12: (2, 2), 16: (0, 0)})
    assert smallest_reliable(table) == 12  # 10 fails on hats, so 8 does not count
    assert smallest_reliable(_table({6: (1, 1), 8: (0, 0)})) == 6
    assert smallest_reliable(_table({6: (0, 0), 8: (30, 0)})) is None


def test_clearly_below_needs_the_interval_below_the_floor() -> None:
    assert wilson_upper(94, 100) > 0.95  # 6 wrong of 100 (0.94) is not clearly below 0.95
    assert wilson_upper(85, 100) < 0.95
    table = _table({6: (15, 0), 8: (6, 0), 10: (0, 0)})
    assert smallest_reliable(table) == 10
    assert smallest_reliable(table, clearly=True) == 8
