"""Paths and result writing shared by the benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["ASSETS", "RESULTS", "ROOT", "require_asset", "write_results"]

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
RESULTS = ROOT / "bench" / "results"


def require_asset(relative: str) -> Path:
    """Path of a shared asset, or exit with a message naming the missing file."""
    path = ASSETS / relative
    if not path.exists():
        raise SystemExit(f"needs {path}: the team's shared assets are not on this machine")
    return path


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (pretty-printed) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return out
