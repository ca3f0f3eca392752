"""``safewatch rules``: validate rule files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safewatch.cli.app import app, out

__all__ = ["rules_app"]

rules_app = typer.Typer(help="Validate, explain and test rule files.")
app.add_typer(rules_app, name="rules")


@rules_app.command("validate")
def rules_validate(
    path: Annotated[Path, typer.Argument(help="Rules folder or file.")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Site file, to check camera names.")
    ] = None,
) -> None:
    """Validate rule files; errors name file, line and field."""
    from safewatch.config.loader import load_site
    from safewatch.rules import load_rules

    site = load_site(config).config if config is not None else None
    rule_set = load_rules(path, site)
    out.print(f"[green]ok[/green] {len(rule_set.rules)} rule(s), {len(rule_set.zones)} zone(s)")
