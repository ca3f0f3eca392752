"""The ``safewatch`` command line.

User errors (a bad site file, a missing video, a wrong model) are ``SafewatchError``s: they print as
one ``error: ...`` line and exit with status 2. ``--debug`` shows the traceback instead. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from safewatch.errors import ConfigError, SafewatchError

__all__ = ["app", "main"]

app = typer.Typer(
    name="safewatch",
    help="Turn CCTV cameras into an active safety system.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List, download, import and inspect detection models.")
rules_app = typer.Typer(help="Validate rule files.")
app.add_typer(models_app, name="models")
app.add_typer(rules_app, name="rules")

out = Console()
err = Console(stderr=True)

_debug = False


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more detail.")] = False,
) -> None:
    global _debug  # noqa: PLW0603 - one process-wide CLI switch, set once per invocation
    _debug = debug or os.environ.get("SAFEWATCH_DEBUG") == "1"
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from safewatch.config.log_redaction import install_redaction

    install_redaction()


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Argument(help="Site file (safewatch.yaml).")],
    rules: Annotated[
        Path | None, typer.Option("--rules", help="Rules folder or file to check too.")
    ] = None,
) -> None:
    """Validate a site file (and rules) without running anything."""
    from safewatch.config.loader import load_site
    from safewatch.detect.catalogue import resolve
    from safewatch.rules import load_rules

    site = load_site(config)
    for key, model in site.config.models.items():
        path = resolve(model.path, site.base_dir)
        out.print(f"model {key}: {path}")
    for key, camera in site.config.cameras.items():
        state = "" if camera.enabled else " (disabled)"
        out.print(f"camera {key}: {len(camera.models)} model(s), {camera.fps:g} fps{state}")
    if rules is not None:
        rule_set = load_rules(rules, site.config)
        out.print(f"rules: {len(rule_set.rules)} rule(s), {len(rule_set.zones)} zone(s)")
    out.print(f"[green]ok[/green] {config}")


@app.command()
def audit(
    videos: Annotated[list[Path], typer.Argument(help="Video files to analyse.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file.")],
    rules: Annotated[Path, typer.Option("--rules", "-r", help="Rules folder or file.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "audit-out"
    ),
    camera: Annotated[
        str | None,
        typer.Option(help="Camera whose models, fps and zones apply (default: the only one)."),
    ] = None,
    annotate: Annotated[
        bool, typer.Option("--annotate", help="Also write an annotated MP4 per video.")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, max=64, help="Frames per detector call.")] = 4,
    start: Annotated[
        str | None,
        typer.Option(
            help="Wall-clock time of the video's first frame, ISO 8601 (e.g. "
            "2026-11-20T14:00:00); without a zone, the site's time zone. Default: the file's "
            "creation time."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run the pipeline over archived footage and write incidents.json and evidence stills."""
    from safewatch.config.loader import load_site
    from safewatch.rules import load_rules
    from safewatch.runtime.audit import AuditOptions, run_audit
    from safewatch.runtime.audit_report import print_summary

    site = load_site(config)
    rule_set = load_rules(rules, site.config)
    options = AuditOptions(
        videos=tuple(videos),
        out_dir=out_dir,
        camera=camera,
        annotate=annotate,
        batch_size=batch,
        start=None if start is None else _parse_start(start, site.config.site.timezone),
    )
    report = run_audit(site, rule_set, options, console=err if progress else None)
    print_summary(report, out)


def _parse_start(text: str, timezone: str) -> float:
    """ISO 8601 to Unix seconds; a time without a zone is read in the site's time zone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"--start: {text!r} is not an ISO 8601 time ({exc})") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.timestamp()


@models_app.command("list")
def models_list() -> None:
    """Show the built-in catalogue and the models in the cache."""
    from rich.table import Table

    from safewatch.detect import catalogue

    table = Table("name", "format", "input", "licence", "cached", "source")
    for entry in catalogue.list_models():
        table.add_row(
            entry.name,
            entry.format,
            str(entry.input_size or ""),
            entry.licence or "",
            "yes" if entry.cached else "no",
            entry.url or "imported",
        )
    out.print(table)
    out.print(f"cache: {catalogue.cache_dir()}")


@models_app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="Catalogue name, e.g. yolox_nano.")],
) -> None:
    """Download a catalogue model from its official URL and check its sha256."""
    from safewatch.detect import catalogue

    result = catalogue.pull(name)
    model = result.model
    if result.checksum == "recorded":
        out.print(f"{name}: no published checksum; trusted on first use, sha256 {model.sha256}")
    elif result.checksum == "verified":
        out.print(f"{name}: sha256 verified")
    out.print(f"{name}: {model.path}")


@models_app.command("import")
def models_import(
    path: Annotated[Path, typer.Argument(help="A local .onnx file.")],
    name: Annotated[str | None, typer.Option(help="Catalogue name (default: file stem).")] = None,
) -> None:
    """Register a local model file (e.g. your own PPE model) in the cache."""
    from safewatch.detect import catalogue

    entry = catalogue.import_model(path, name=name)
    out.print(f"{entry.name}: {entry.path}")


@models_app.command("info")
def models_info(
    path: Annotated[str, typer.Argument(help="An .onnx file or a catalogue name.")],
) -> None:
    """Print a model's inputs, outputs, class names, size and sha256 as JSON."""
    from safewatch.detect import catalogue

    out.print_json(json.dumps(catalogue.info(path).to_dict()))


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


def main() -> None:
    """Console entry point: run the app, turning user errors into one clear line."""
    try:
        app(prog_name="safewatch")
    except SafewatchError as exc:
        if _debug:
            raise
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
