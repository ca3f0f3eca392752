"""The package layout's import directions, checked on the source: the live runtime starts the API
and runs the shared frame path, so neither the API nor the frame path (nor archived-footage runs,
which the API's jobs call) may import the runtime back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "safewatch"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("api", "safewatch.runtime"),
        ("pipeline", "safewatch.runtime"),
        ("pipeline", "safewatch.api"),
        ("footage", "safewatch.runtime"),
        ("footage", "safewatch.api"),
        ("domain", "safewatch."),
        ("bus", "safewatch.api"),
        ("bus", "safewatch.runtime"),
    ],
)
def test_a_package_never_imports_a_layer_above_it(package: str, forbidden: str) -> None:
    offenders = sorted(
        f"{path.relative_to(SRC)} imports {name}"
        for path in (SRC / package).rglob("*.py")
        for name in _imports(path)
        if name.startswith(forbidden) and not name.startswith(f"safewatch.{package}")
    )
    assert offenders == []
