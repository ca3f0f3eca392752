"""Download the catalogue files a site names (models, demo footage) before a command runs.

``serve`` and ``audit`` call :func:`fetch_site_files` first, so ``path: yolox_nano`` or
``source: construction_cctv`` in a site file works on a machine that has never seen them: what is
missing is pulled from its pinned upstream URL (or ``$SAFEWATCH_MIRROR``), checksummed, prepared
and cached, with a progress bar; what is cached is re-hashed and used. Nothing downloads at
import time, and nothing downloads for a site that names files by path.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from safewatch.cli.app import err
from safewatch.config.loader import LoadedSite

if TYPE_CHECKING:
    from safewatch.detect.catalogue import PullResult

__all__ = ["fetch_named", "fetch_site_files", "names_in_site"]


def names_in_site(site: LoadedSite, camera: str | None = None) -> list[str]:
    """Catalogue names the site's enabled cameras use (models, sources, the privacy and the
    face-subject face detectors), in file order; with ``camera``, what footage judged under that
    camera's settings needs (its models and face detectors, not its live source)."""
    from safewatch.detect.catalogue import catalogue

    entries = catalogue()
    wanted: list[str] = []
    for camera_id, settings in site.config.cameras.items():
        if camera is not None and camera_id != camera:
            continue
        if camera is None and not settings.enabled:
            continue
        wanted += [site.config.models[key].path for key in settings.models]
        if camera is None:
            wanted.append(settings.source.strip())
        faces = site.config.privacy_for(camera_id).face_model
        if faces:
            wanted.append(faces)
    if site.config.tracker.face_subjects:
        wanted.append(site.config.tracker.face_subjects)
    return [
        name
        for name in dict.fromkeys(wanted)
        if name in entries and not (site.base_dir / name).exists()
    ]


def fetch_site_files(
    site: LoadedSite, extra: Iterable[str] = (), *, camera: str | None = None
) -> None:
    """Pull every catalogue file the site (and ``extra`` names, e.g. audit videos) needs; with
    ``camera``, only what footage judged under that camera's settings needs (``audit``,
    ``backtest``: an offline machine need not hold the other cameras' models).

    Raises:
        ModelError: A download failed; the message names the URL and the way to fetch it by hand.
    """
    from safewatch.detect.catalogue import catalogue

    entries = catalogue()
    wanted = names_in_site(site, camera)
    names = wanted + [n for n in extra if n in entries and not Path(n).exists()]
    for name in dict.fromkeys(names):
        fetch_named(name)


def fetch_named(name: str, *, force: bool = False) -> PullResult:
    """Pull one entry, showing a progress bar only when bytes actually move.

    Raises:
        ModelError: Unknown name, or the download failed.
    """
    from safewatch.detect.catalogue import catalogue, pull

    entry = catalogue().get(name)
    licence = entry.licence if entry is not None else "?"

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    )
    task: list[TaskID] = []  # started on the first bytes: a cached file shows nothing
    bar = err.is_terminal  # a log file gets the lines, not a bar's redraws

    def advance(done: int, total: int | None) -> None:
        if not task:
            err.print(f"downloading {name} ({licence}) ...", highlight=False, soft_wrap=True)
            if bar:
                progress.start()
            task.append(progress.add_task(f"  {name}", total=total))
        progress.update(task[0], completed=done, total=total)

    def step(what: str) -> None:
        if task and bar:
            progress.stop()
        err.print(f"  preparing {what}", highlight=False, soft_wrap=True)

    try:
        result = pull(name, progress=advance, on_step=step, force=force)
    finally:
        if task and bar:
            progress.stop()
    if result.downloaded:
        err.print(
            f"  {name}: {result.model.size / 1e6:.1f} MB from {result.model.origin}, "
            f"sha256 {result.checksum}",
            highlight=False,
            soft_wrap=True,
        )
    return result
