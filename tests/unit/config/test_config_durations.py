"""Duration parsing: the forms rule files accept, and the ones they refuse."""

from __future__ import annotations

import pytest

from safewatch.config.durations import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3s", 3.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 2 s ", 2.0),
        ("0", 0.0),
        (".5s", 0.5),
        ("4", 4.0),
        (3, 3.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_accepted(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3x", "invalid duration"),
        ("s", "invalid duration"),
        ("-1s", "invalid duration"),
        ("1 d", "invalid duration"),
        (True, "invalid duration"),
        (None, "invalid duration"),
        ([1], "invalid duration"),
        (-1, "zero or more"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
    ],
)
def test_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)
