"""Every complete rule file shown in docs/rules.md loads, so the reference cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safewatch.config.ruleset import load_rules

DOC = Path(__file__).resolve().parents[3] / "docs" / "rules.md"
BLOCKS = [
    block
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    if block.startswith("version: 1\n") and "..." not in block
]


def test_the_reference_has_an_example_per_kind() -> None:
    kinds = set(re.findall(r"kind: (\w+)", "".join(BLOCKS)))
    assert kinds >= {
        "ppe",
        "zone_intrusion",
        "dwell",
        "line_crossing",
        "proximity",
        "occupancy",
        "zone_clear",
        "speed",
    }


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: re.findall(r"id: ([\w.-]+)", b)[0])
def test_documented_rule_file_loads(tmp_path: Path, block: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(block, encoding="utf-8")
    assert len(load_rules(path).rules) == block.count("  - id: ")
