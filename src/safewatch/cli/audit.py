"""``safewatch audit``: run the pipeline over archived footage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safewatch.cli.app import app, err, out
from safewatch.errors import SourceError, StorageError

if TYPE_CHECKING:
    from safewatch.config.loader import LoadedSite

__all__ = ["audit", "resolve_footage"]


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
    clips: Annotated[
        bool,
        typer.Option(
            "--clips/--no-clips",
            help="Write an MP4 evidence clip per incident (the site's evidence block sets the "
            "window); --no-clips is faster.",
        ),
    ] = True,
    batch: Annotated[int, typer.Option(min=1, max=64, help="Frames per detector call.")] = 4,
    start: Annotated[
        str | None,
        typer.Option(
            help="Wall-clock time of the first video's first frame, ISO 8601 (e.g. "
            "2026-11-20T14:00:00); without a zone, the site's time zone; each later video "
            "follows the one before. Default: each file's creation time."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit with status 1 when part of a video could not be decoded (the summary "
            "and incidents.json give each video's coverage either way).",
        ),
    ] = False,
) -> None:
    """Run the pipeline over archived footage; write incidents.json, evidence stills and clips.

    A video may also be a catalogue video's name (``construction_cctv``): it is downloaded like
    the site's models. A successful audit replaces an earlier audit in the output folder; a
    failed one leaves the folder as it was.
    """
    from safewatch.config.loader import load_site
    from safewatch.footage.audit import AuditOptions, run_audit
    from safewatch.footage.audit_report import incomplete_videos, print_summary
    from safewatch.footage.start_time import parse_start
    from safewatch.heap import freeze_start_up_objects
    from safewatch.rules import load_rules

    site = load_site(config)
    rule_set = load_rules(rules, site.config)
    if out_dir.exists() and not out_dir.is_dir():
        raise StorageError(f"--out {out_dir} is a file, not a folder")
    videos = resolve_footage(site, videos, camera)
    options = AuditOptions(
        videos=tuple(videos),
        out_dir=out_dir,
        camera=camera,
        annotate=annotate,
        clips=clips,
        batch_size=batch,
        start=None
        if start is None
        else parse_start(start, site.config.site.timezone, name="--start"),
    )
    # A one-shot process: what the imports and the site built stays until exit.
    freeze_start_up_objects()
    report = run_audit(site, rule_set, options, console=err if progress else None)
    print_summary(report, out)
    if strict and incomplete_videos(report):
        partial = ", ".join(str(r.video) for r in incomplete_videos(report))
        err.print(
            f"[red]error:[/red] --strict: part of {partial} could not be read", highlight=False
        )
        raise typer.Exit(1)


def resolve_footage(
    site: LoadedSite, videos: Sequence[Path], camera: str | None = None
) -> list[Path]:
    """The video files to read: paths as given, or a catalogue video's name
    (``construction_cctv``), downloaded with the models of the camera whose settings apply
    (``camera``, or the site's only one), for ``audit`` and ``backtest``.

    Raises:
        ConfigError: No such camera, or several and none chosen.
        SourceError: Videos that are neither a file nor a catalogue video, all of them
            (checked before any download: a mistyped path is the likelier problem).
    """
    from safewatch.cli.fetch import fetch_site_files
    from safewatch.detect.catalogue import catalogue, resolve_video
    from safewatch.pipeline.stages import pick_camera

    camera_id, _ = pick_camera(site, camera)

    names = catalogue()
    missing = [
        f"video {video} does not exist or is not a file"
        for video in videos
        if not video.is_file()
        and ((entry := names.get(str(video))) is None or entry.kind != "video")
    ]
    if missing:
        # Every one at once, as the run's own check names every unreadable file.
        raise SourceError("; ".join(missing))
    fetch_site_files(site, [str(v) for v in videos], camera=camera_id)
    return [resolve_video(str(v), Path.cwd()) or v for v in videos]
