"""Every example file in ``examples/`` loads: CI keeps the documentation honest."""

from __future__ import annotations

from pathlib import Path

import pytest

from safewatch.config.loader import load_site
from safewatch.config.ruleset import load_rules

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SITES = sorted(p for p in EXAMPLES.glob("*.y*ml"))
RULE_FILES = sorted((EXAMPLES / "rules").glob("*.y*ml"))


def test_there_are_examples() -> None:
    assert SITES
    assert RULE_FILES


@pytest.mark.parametrize("site_file", SITES, ids=lambda p: p.name)
def test_site_examples_load(site_file: Path) -> None:
    site = load_site(site_file, environ={})
    assert site.base_dir == EXAMPLES
    assert site.config.cameras


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_each_rule_file_loads_against_the_example_site(rule_file: Path) -> None:
    site = load_site(EXAMPLES / "site.yaml", environ={})
    assert load_rules(rule_file, site.config, environ={}).rules


def test_rules_folder_loads_as_one_set() -> None:
    site = load_site(EXAMPLES / "site.yaml", environ={})
    rules = load_rules(EXAMPLES / "rules", site.config, environ={})
    camera = next(iter(site.config.cameras))
    assert rules.for_camera(camera)


def test_the_example_site_names_only_catalogue_files() -> None:
    """A clone with nothing beside it can run the example: every file it needs is downloadable."""
    from safewatch.detect.catalogue import catalogue

    entries = catalogue()
    site = load_site(EXAMPLES / "site.yaml", environ={})
    for camera in site.config.cameras.values():
        assert entries[camera.source].kind == "video", camera.source
    for model in site.config.models.values():
        assert entries[model.path].kind == "model", model.path
        assert entries[model.path].sha256 is not None  # pinned, not trusted on first use
