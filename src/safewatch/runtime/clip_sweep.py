"""``serve --cluster``: store the clips of cameras nobody runs, once across the cluster.

A camera's next owner finishes the clips its lost owner left in the shared spool
(:meth:`~safewatch.incidents.EvidenceRecorder.adopt_clips`). A camera disabled or removed from
the site while its owner was dead has no next owner, so its ``.part`` files would stay forever.
Every analyzer runs a :class:`ClipSweeper`; each round (every quiet-orphan wait,
:func:`~safewatch.runtime.recording_link.orphan_quiet_seconds`) the one that gets a cluster-wide
PostgreSQL advisory lock sweeps them (:func:`~safewatch.incidents.clips.sweep_clips`), the
others skip the round. Its writes pass :class:`~safewatch.cluster.fencing.UnleasedFence`, so a
camera enabled and owned again meanwhile is left to its owner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from safewatch.cluster.fencing import UnleasedFence
from safewatch.config.loader import LoadedSite
from safewatch.errors import SafewatchError
from safewatch.incidents.clips import Adoption, sweep_clips
from safewatch.incidents.evidence import EvidenceStore
from safewatch.incidents.site_storage import SiteStorage
from safewatch.runtime.recording_link import orphan_quiet_seconds
from safewatch.storage import IncidentRepository

__all__ = ["SWEEP_LOCK", "ClipSweeper", "start_clip_sweeper"]

log = logging.getLogger(__name__)

SWEEP_LOCK = 0x5AFE_C11F
"""The advisory lock key (``pg_try_advisory_lock``) whose holder sweeps this round."""


class ClipSweeper:
    """Sweeps the shared spool's clips of cameras no analyzer runs (see the module).

    Args:
        spool: The shared clip spool.
        store: The site's evidence store (its backend is reused; the chain entries go through
            this sweeper's own fenced repository).
        engine: The site's PostgreSQL engine.
        enabled: The site's enabled cameras now (follows reloads).
        quiet_seconds: How long a ``.part`` must have gone unwritten, and the round's period.
    """

    def __init__(
        self,
        spool: Path,
        store: EvidenceStore,
        engine: Engine,
        enabled: Callable[[], Collection[str]],
        *,
        quiet_seconds: float,
    ) -> None:
        self._spool = spool
        self._engine = engine
        self._repository = IncidentRepository(engine, auto_upgrade=False, fence=UnleasedFence())
        self._store = EvidenceStore(store.backend, log=self._repository)
        self._enabled = enabled
        self._quiet = quiet_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clip-sweep", daemon=True)

    def start(self) -> ClipSweeper:
        """Sweep every ``quiet_seconds`` on a thread of its own (the first round after one)."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop; a round in progress ends after the clip it is on."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def sweep_once(self) -> dict[str, Adoption] | None:
        """One round: ``None`` when another analyzer holds the lock (it sweeps), else what was
        done per camera.

        Raises:
            SafewatchError: The database cannot be reached.
        """
        try:
            with self._engine.connect() as plain:
                # autocommit: the lock is the session's, with no transaction left idle meanwhile
                connection = plain.execution_options(isolation_level="AUTOCOMMIT")
                if not connection.scalar(select(func.pg_try_advisory_lock(SWEEP_LOCK))):
                    return None
                try:
                    reports = sweep_clips(
                        self._spool,
                        self._store,
                        self._repository,
                        frozenset(self._enabled()),
                        quiet_seconds=self._quiet,
                        stopping=self._stop.is_set,
                    )
                finally:
                    connection.scalar(select(func.pg_advisory_unlock(SWEEP_LOCK)))
        except SQLAlchemyError as exc:
            raise SafewatchError(f"clip sweep: cannot take its lock: {exc}") from exc
        for camera_id, report in reports.items():
            if report.completed or report.unusable:
                log.warning(
                    "clip sweep: camera %s (not run): %d clip(s) stored, %d unusable",
                    camera_id,
                    len(report.completed),
                    len(report.unusable),
                )
        return reports

    def _run(self) -> None:
        while not self._stop.wait(self._quiet):
            try:
                self.sweep_once()
            except Exception:  # a failed round is tried again next period
                log.exception("clip sweep failed")


def start_clip_sweeper(
    site: Callable[[], LoadedSite], storage: SiteStorage, spool: Path
) -> ClipSweeper | None:
    """The sweeper of a ``serve --cluster`` process's shared spool, started; ``None`` where the
    database is not PostgreSQL (no cluster: every start recovers its spool instead)."""
    if storage.engine.dialect.name != "postgresql":
        return None
    config = site().config
    return ClipSweeper(
        spool,
        storage.evidence,
        storage.engine,
        lambda: [key for key, camera in site().config.cameras.items() if camera.enabled],
        quiet_seconds=orphan_quiet_seconds(config.cluster.lease_seconds),
    ).start()
