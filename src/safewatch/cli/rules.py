"""``safewatch rules``: validate, explain and test rule files.

``test`` is ``safewatch audit`` with the rules given first: a safety officer trying a rule edit
on a recorded clip should get exactly what an audit would report, so it calls the audit command
rather than repeating it.
"""

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


@rules_app.command("explain")
def rules_explain(
    path: Annotated[Path, typer.Argument(help="Rules folder or file.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Site file, for camera names and the schedules' time zone."
        ),
    ] = None,
) -> None:
    """Say in plain words what each rule enforces, where, when, and how its incidents end."""
    from safewatch.config.loader import load_site
    from safewatch.rules import load_rules
    from safewatch.rules.explain import explain_rule

    site = load_site(config).config if config is not None else None
    rule_set = load_rules(path, site)
    for rule in rule_set.rules:
        out.print(explain_rule(rule, rule_set, site), highlight=False, soft_wrap=True)
        if rule.description:
            out.print(f"  {rule.description}", highlight=False, soft_wrap=True)
    if not rule_set.rules:
        out.print("no rules")


@rules_app.command("test")
def rules_test(
    path: Annotated[Path, typer.Argument(help="Rules folder or file.")],
    videos: Annotated[list[Path], typer.Argument(help="Video files to run the rules on.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "rules-test-out"
    ),
    camera: Annotated[
        str | None,
        typer.Option(help="Camera whose models, fps and zones apply (default: the only one)."),
    ] = None,
    annotate: Annotated[
        bool, typer.Option("--annotate", help="Also write an annotated MP4 per video.")
    ] = False,
    start: Annotated[
        str | None,
        typer.Option(help="Wall-clock time of the video's first frame, ISO 8601 (for schedules)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run the rules over recorded video, as `safewatch audit` does, and list the incidents."""
    from safewatch.cli.audit import audit

    audit(
        videos,
        config=config,
        rules=path,
        out_dir=out_dir,
        camera=camera,
        annotate=annotate,
        start=start,
        progress=progress,
    )
