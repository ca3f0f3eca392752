"""Free space of the folders ``safewatch serve`` writes: ``safewatch_storage_free_bytes`` and
the guard it is compared with, ``safewatch_storage_min_free_bytes`` (alert
``SafewatchStorageLow`` in deploy/prometheus/rules.yml).

Why: the database, the evidence and the recordings share ``safewatch-data/`` by default, and a
full disk stopped incident writes with nothing exported that said the disk was filling up.
Recording retention keeps ``storage.recordings_min_free_gb`` free on the recordings' file
system (:mod:`safewatch.recording.service`); below it on any root, what is left there is
unreviewed incidents' footage, each camera's newest hour (the guard's floor), evidence, the
database or other programs' files, which nothing deletes for space.
Read at scrape time (one ``statvfs`` per root), so it cannot go stale.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from safewatch.config.loader import LoadedSite
from safewatch.recording.service import recordings_root

__all__ = ["StorageSpaceCollector", "storage_roots"]


def storage_roots(site: LoadedSite, engine: Engine) -> dict[str, Path]:
    """Root name -> folder: ``recordings``; ``evidence`` unless it is in S3; ``database`` when
    it is an SQLite file (a database server's disk is not this host's to watch)."""
    storage = site.config.storage
    roots = {"recordings": recordings_root(site)}
    if storage.evidence_s3 is None:
        folder = storage.evidence_dir.expanduser()
        roots["evidence"] = folder if folder.is_absolute() else site.base_dir / folder
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and database != ":memory:":
        roots["database"] = Path(database).parent
    return roots


class StorageSpaceCollector(Collector):
    """Exports the free bytes of each root's file system at every scrape; a root that does not
    exist (yet) or cannot be read is left out.

    Args:
        roots: Root name -> folder (:func:`storage_roots`).
        min_free_gb: ``storage.recordings_min_free_gb`` (``None``: no guard series).
        free_bytes: Free bytes of the file system holding a folder.
    """

    def __init__(
        self,
        roots: Mapping[str, Path],
        min_free_gb: float | None,
        free_bytes: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
    ) -> None:
        self._roots = dict(roots)
        self._min_free = min_free_gb
        self._free_bytes = free_bytes

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time

    def collect(self) -> Iterable[Metric]:
        free = GaugeMetricFamily(
            "safewatch_storage_free_bytes",
            "Free bytes of the file system of each storage folder (recordings; evidence when "
            "local; database when SQLite).",
            labels=["root"],
        )
        guard = GaugeMetricFamily(
            "safewatch_storage_min_free_bytes",
            "storage.recordings_min_free_gb in bytes: recording retention keeps this much free "
            "on the recordings' file system; less on any root needs an operator.",
            labels=["root"],
        )
        for name, folder in sorted(self._roots.items()):
            try:
                free.add_metric([name], float(self._free_bytes(folder)))
            except OSError:
                continue
            if self._min_free is not None:
                guard.add_metric([name], self._min_free * 1e9)
        yield free
        yield guard
