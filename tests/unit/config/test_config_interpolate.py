"""``${VAR}`` interpolation: values, defaults, escapes, and errors that never show secrets."""

from __future__ import annotations

import pytest

from safewatch.config.interpolate import expand
from safewatch.errors import ConfigError

ENV = {"USER": "viewer", "PASS": "hunter2", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://${USER}:${PASS}@cam/1", "rtsp://viewer:hunter2@cam/1"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${PASS:-fallback}", "hunter2"),
        ("${MISSING:-}", ""),
        ("price $5", "price $5"),
        ("$${PASS}", "${PASS}"),
        ("no variables", "no variables"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${NOPE}", "f.yaml:3: a.b: environment variable NOPE is not set (referenced as ${NOPE})"),
        # Empty like an unset variable passed on by compose (VAR: ${VAR:-}): it came through as
        # "" and failed later, far from its cause ("source '': no file at ...").
        (
            "rtsp://${EMPTY}@cam/1",
            "f.yaml:3: a.b: environment variable EMPTY is empty (referenced as ${EMPTY}; "
            "write ${EMPTY:-} where an empty value is meant)",
        ),
        (
            "${1BAD}",
            "f.yaml:3: a.b: invalid variable reference ${1BAD}: expected ${NAME} or "
            "${NAME:-default}",
        ),
        (
            "x${PASS",
            "f.yaml:3: a.b: unterminated variable reference: expected ${NAME} or ${NAME:-default}",
        ),
    ],
)
def test_errors_name_the_variable(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        expand(text, ENV, file="f.yaml", line=3, path=("a", "b"))
    assert str(info.value) == expected
    assert "hunter2" not in str(info.value)
