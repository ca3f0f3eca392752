"""``safewatch check-config``: validate a site file (and rules) without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safewatch.cli.app import app, out

__all__ = ["check_config"]


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Argument(help="Site file (safewatch.yaml).")],
    rules: Annotated[
        Path | None, typer.Option("--rules", help="Rules folder or file to check too.")
    ] = None,
) -> None:
    """Validate a site file (and rules): every model loads and runs once on a blank frame,
    cameras and rules are consistent.

    Catalogue names the site uses (models, demo footage) are downloaded first when missing.
    """
    from safewatch.cli.fetch import fetch_site_files
    from safewatch.config.loader import load_site
    from safewatch.detect.catalogue import resolve
    from safewatch.detect.model_check import check_model
    from safewatch.rules import load_rules

    site = load_site(config)
    fetch_site_files(site)
    labels: dict[str, frozenset[str]] = {}
    for key, model in site.config.models.items():
        path = resolve(model.path, site.base_dir)
        checked = check_model(key, model, path)
        labels[key] = checked.labels
        out.print(f"model {key}: {path}: {checked.summary}", soft_wrap=True)
    for key, camera in site.config.cameras.items():
        state = "" if camera.enabled else " (disabled)"
        out.print(f"camera {key}: {len(camera.models)} model(s), {camera.fps:g} fps{state}")
    if rules is not None:
        rule_set = load_rules(rules, site.config, model_labels=labels)
        out.print(f"rules: {len(rule_set.rules)} rule(s), {len(rule_set.zones)} zone(s)")
    out.print(f"[green]ok[/green] {config}")
