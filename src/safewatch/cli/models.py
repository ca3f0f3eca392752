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

    header = ("name", "format", "input", "licence", "cached", "source")
    rows: list[tuple[str, ...]] = []
    broken: list[str] = []
    for entry in catalogue.list_models():
        rows.append(
            (
                entry.name,
                entry.format or "",
                str(entry.input_size or ""),
                entry.licence or "",
                entry.state,
                entry.url or "imported",
            )
        )
        if entry.state in ("missing", "damaged"):
            broken.append(entry.name)
    if out.is_terminal:
        table = Table()
        for i, column in enumerate(header):
            # The name is what every other command takes: never cut short ("ppe14_yolov8…").
            widest = max(len(row[i]) for row in (header, *rows)) if i == 0 else None
            table.add_column(column, no_wrap=i == 0, min_width=widest)
        for row in rows:
            table.add_row(*row)
        out.print(table)
    else:
        # Piped or redirected (`| cat`, grep, a script), Rich laid the table out 80 wide and cut
        # names and URLs short. Plain aligned columns, nothing cut.
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
        for row in (header, *rows):
            cells = [value.ljust(width) for value, width in zip(row, widths, strict=False)]
            out.print("  ".join([*cells, row[-1]]), highlight=False, markup=False, soft_wrap=True)
    out.print(f"cache: {catalogue.cache_dir()}")
    for name in broken:
        out.print(
            f"{name}: the cached file is missing or truncated; "
            f"`safewatch models info {name}` says how to get it again"
        )


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
    elif result.checksum == "packaged":
        out.print(f"{name}: ships with safewatch (sha256 verified); nothing to download")
    out.print(f"{name}: {model.path}", soft_wrap=True)


@models_app.command("import")
def models_import(
    path: Annotated[Path, typer.Argument(help="A local .onnx file.")],
    name: Annotated[
        str | None, typer.Option(help="Name to cache it under (default: file stem).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace a different model already cached under that name.")
    ] = False,
) -> None:
    """Register a local model file (e.g. your own PPE model) in the cache.

    A catalogue name (yolox_nano, ...) takes only the file the catalogue pins for it, checked and
    prepared as a download would be (docs/models.md); give your own models names of their own.
    """
    from safewatch.detect import catalogue

    entry = catalogue.import_model(path, name=name, force=force)
    out.print(f"{entry.name}: {entry.path}", soft_wrap=True)


@models_app.command("info")
def models_info(
    path: Annotated[str, typer.Argument(help="An .onnx file or a catalogue name.")],
) -> None:
    """Print a model's inputs, outputs, class names, size and sha256 as JSON."""
    from safewatch.detect import catalogue

    out.print_json(json.dumps(catalogue.info(path).to_dict()))


@models_app.command("quantize")
def models_quantize(
    model: Annotated[str, typer.Argument(help="An fp32 .onnx file or a catalogue name.")],
    videos: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, help="Videos to take calibration frames from."),
    ],
    output: Annotated[Path, typer.Option("--out", "-o", help="Where the INT8 model goes.")],
    frames: Annotated[
        int, typer.Option(min=1, help="Calibration frames, spread over the videos.")
    ] = 32,
    input_size: Annotated[
        int | None, typer.Option(help="Square input size, as the model's input_size.")
    ] = None,
    all_operators: Annotated[
        bool,
        typer.Option(help="Quantise every operator, not only convolutions (faster, less exact)."),
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Replace a file already at --out (never the model itself).")
    ] = False,
) -> None:
    """Write an INT8 (QDQ) copy of a model calibrated on your own footage; see docs/performance.md.

    Use frames of the cameras it will watch. Point the model's `path` at the result.
    """
    from safewatch.config.site import ModelConfig
    from safewatch.detect.catalogue import resolve
    from safewatch.detect.quantize import calibration_images, check_destination, quantize_model

    source = resolve(model, Path("."))
    check_destination(source, output, force=force)
    images = calibration_images(videos, frames)
    config = ModelConfig(path=str(source), input_size=input_size)
    quantize_model(source, output, images, config, all_operators=all_operators, force=force)
    out.print(
        f"{output}: INT8 model calibrated on {len(images)} frames of {len(videos)} video(s)",
        soft_wrap=True,  # a long path must not break the line (scripts and tests read it)
    )
