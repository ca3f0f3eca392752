"""``safewatch backtest``: try rule changes on archived footage before they go live."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safewatch.cli.app import app, err, out

if TYPE_CHECKING:
    from safewatch.config.loader import LoadedSite
    from safewatch.domain import Incident
    from safewatch.footage.backtest import BacktestRun

__all__ = ["backtest", "default_cache_dir"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/safewatch/detections`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "safewatch" / "detections"


@app.command()
def backtest(
    footage: Annotated[
        list[Path],
        typer.Argument(help="Video files of one camera, or a catalogue video's name."),
    ],
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file.")],
    rules: Annotated[
        list[Path],
        typer.Option(
            "--rules",
            "-r",
            help="Proposed rules folder or file; repeat to test several proposals in one pass.",
        ),
    ],
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="Rules in force (folder or file) to compare the proposals with; without it "
            "the first -r is the reference."
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "backtest-out"
    ),
    camera: Annotated[
        str | None,
        typer.Option(help="Camera whose models, fps and zones apply (default: the only one)."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="Wall-clock time of the footage's first frame, ISO 8601 (site time zone when "
            "none is given). Default: the file's creation time."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Detection cache folder (default: $XDG_CACHE_HOME/safewatch/detections, "
            "~/.cache/safewatch/detections without it)."
        ),
    ] = None,
    use_cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Reuse and store detections.")
    ] = True,
    reviewed: Annotated[
        bool,
        typer.Option(
            "--reviewed/--no-reviewed",
            help="Score each rule set against incidents reviewed in the site's database.",
        ),
    ] = True,
    batch: Annotated[int, typer.Option(min=1, max=64, help="Frames per detector call.")] = 4,
) -> None:
    """Detect and track once, judge the footage with the baseline and each proposal, compare."""
    from safewatch.cli.audit import resolve_footage
    from safewatch.config.loader import load_site
    from safewatch.footage.backtest import BacktestOptions, NamedRules, published, run_backtest
    from safewatch.footage.backtest_report import build_document, print_table, write_outputs
    from safewatch.footage.start_time import parse_start
    from safewatch.rules import load_rules

    site = load_site(config)
    sets: list[NamedRules] = []
    if baseline is not None:
        sets.append(NamedRules("baseline", load_rules(baseline, site.config), baseline))
    for index, path in enumerate(rules, start=1):
        name = "proposal" if len(rules) == 1 else f"proposal-{index}"
        sets.append(NamedRules(name, load_rules(path, site.config), path))
    if baseline is None and len(rules) > 1:
        # Said, not silent: without --baseline the first proposal is the reference the others
        # are compared with (docs/backtest.md), which a reader of the table could not tell.
        err.print(
            f"no --baseline: {', '.join(s.name for s in sets[1:])} compared with proposal-1 "
            f"({rules[0]})",
            highlight=False,
        )
    options = BacktestOptions(
        videos=tuple(resolve_footage(site, footage, camera)),
        out_dir=out_dir,
        camera=camera,
        cache_dir=(cache_dir or default_cache_dir()) if use_cache else None,
        batch_size=batch,
        start=None
        if start is None
        else parse_start(start, site.config.site.timezone, name="--start"),
    )
    run = run_backtest(site, sets, options)
    with published(run, out_dir) as staging:
        past = _reviewed_incidents(site, run) if reviewed else None
        document = build_document(run, {s.name: s.source for s in sets}, past)
        write_outputs(document, staging)
    print_table(document, out)
    for video, cached in run.cached.items():
        where = "cached detections" if cached else "the detector (detections now cached)"
        if options.cache_dir is None or video in run.uncached:
            where = "the detector"
        err.print(f"{video.name}: {run.frames[video]} frames from {where}")
    out.print(f"written: {out_dir / 'backtest.json'}, {out_dir / 'backtest.html'}")


def _reviewed_incidents(site: LoadedSite, run: BacktestRun) -> list[Incident] | None:
    """Reviewed incidents of the camera over the footage's span from the site's database.

    ``None`` (and one line saying why) when there is none to read, it is empty or at another
    schema: a backtest never creates or migrates the site's database.
    """
    from safewatch.errors import SafewatchError
    from safewatch.footage.backtest import site_reviewed_incidents

    try:
        return site_reviewed_incidents(site, run)
    except SafewatchError as exc:
        err.print(f"no reviewed incidents: {exc}", highlight=False)
        return None
