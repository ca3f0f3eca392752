"""``safewatch models``: list, download, import and inspect detection models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from safewatch.cli.app import app, out

__all__ = ["models_app"]

models_app = typer.Typer(help="List, download, import and inspect detection models.")
app.add_typer(models_app, name="models")


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
    force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False,
) -> None:
    """Download a catalogue model (or demo video) from its pinned URL and check its sha256.

    $SAFEWATCH_MIRROR (a folder or URL) replaces the internet; see docs/models.md.
    """
    from safewatch.cli.fetch import fetch_named

    result = fetch_named(name, force=force)
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
