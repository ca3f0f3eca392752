"""A small plant for the rule-drafting tests: two cameras, hand-written rules, PPE models.

The press-line camera has no calibration and the dock camera has one, so metric rules are valid
only on the dock; the models' label maps give the vocabulary (person, vehicle, forklift; hardhat
and vest as PPE items).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safewatch.api.auth.store import AuthStore
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage

__all__ = ["BASE_RULES", "SITE_YAML", "drafts_saved", "make_site", "site_audit"]

SITE_YAML = """\
version: 1
site: {name: Test plant, timezone: Europe/Berlin}
models:
  coco: {path: coco.onnx, labels: {person: person, truck: vehicle}}
  ppe:
    path: ppe.onnx
    labels: {Hardhat: hardhat, NO-Hardhat: no_hardhat, Safety Vest: vest, Forklift: forklift}
cameras:
  press-line: {name: Press line 2, source: a.mp4, models: [coco, ppe]}
  dock:
    source: b.mp4
    models: [coco, ppe]
    calibration:
      image: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]
      floor: [[0, 0], [8, 0], [8, 8], [0, 8]]
"""

BASE_RULES = """\
# Plant rules, written by hand: keep these comments.
version: 1

zones:
  # Where the press tool moves.
  press_area:
    camera: press-line
    polygon: [[0.10, 0.50], [0.60, 0.50], [0.60, 0.95], [0.10, 0.95]]
    description: Press 2 working area
  loading_dock:
    camera: dock
    polygon: [[0.20, 0.20], [0.80, 0.20], [0.80, 0.90], [0.20, 0.90]]

rules:
  - id: hardhat-required
    kind: ppe
    require: [hardhat]
    severity: high

  - id: no-entry-dock-nights
    kind: zone_intrusion
    zone: loading_dock
    schedule: {between: ["22:00", "06:00"]}
"""


def make_site(
    folder: Path,
    *,
    rules: str = BASE_RULES,
    llm: str | None = None,
    site_yaml: str = SITE_YAML,
) -> tuple[Path, Path]:
    """Write ``site.yaml`` and ``rules/base.yaml`` under ``folder``; returns (site, rules dir).

    Args:
        llm: The ``llm:`` block's body (indented YAML), appended to the site file when given.
    """
    folder.mkdir(parents=True, exist_ok=True)
    site = folder / "site.yaml"
    text = site_yaml
    if llm is not None:
        text += "llm:\n" + "".join(f"  {line}\n" for line in llm.strip().splitlines())
    site.write_text(text, encoding="utf-8")
    rules_dir = folder / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "base.yaml").write_text(rules, encoding="utf-8")
    return site, rules_dir


@contextmanager
def site_audit(site: Path) -> Iterator[AuthStore]:
    """The site's audit log (the dashboard's table in its SQLite database)."""
    storage = open_site_storage(load_site(site))
    try:
        yield AuthStore(storage.engine)
    finally:
        storage.close()


def drafts_saved(site: Path, action: str = "rules.draft_saved") -> list[Any]:
    """The audit records of saved drafts, oldest first."""
    with site_audit(site) as store:
        records, _ = store.audit_records(action=action)
    return list(reversed(records))
