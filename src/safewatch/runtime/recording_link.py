"""Continuous recording beside the analysis
(:class:`~safewatch.recording.service.RecordingService`): started with the server, following site
reloads and, under ``serve --cluster``, the cameras this process owns; stopped before the
cameras.

Nothing here raises into its caller: recording errors are logged and reported (:meth:`states`:
``safewatch_recording_up`` and a ``/readyz`` warning), never allowed to keep the server from
starting, a camera handed over from being analysed, or a site reload from being reported."""

from __future__ import annotations

import logging

from safewatch.config.loader import LoadedSite
from safewatch.recording.service import RecordingService, RecordingState
from safewatch.runtime.ownership import CameraOwnership
from safewatch.storage import IncidentRepository

__all__ = ["RecordingLink", "orphan_quiet_seconds"]

log = logging.getLogger(__name__)


def orphan_quiet_seconds(lease_seconds: float) -> float:
    """How long a cluster's ``.part`` segment must have gone unwritten to be a dead owner's.

    A live recorder writes a fragment at every keyframe (a few seconds); its owner's lease runs
    out ``lease_seconds`` after its last renewal, and only then can another node own the camera.
    Three leases, and never under 30 s, keep a slow keyframe interval from looking dead.
    """
    return max(30.0, 3 * lease_seconds)


class RecordingLink:
    """The server's recorders, if it runs any.

    Args:
        ownership: The cameras this process owns; under ``serve --cluster`` only those record
            (and are pruned) here, into the shared ``storage.recordings_dir``.
        cluster: ``serve --cluster``.
    """

    def __init__(self, ownership: CameraOwnership, cluster: bool) -> None:
        self._ownership = ownership
        self._cluster = cluster
        self._service: RecordingService | None = None

    def start(self, site: LoadedSite, repository: IncidentRepository) -> None:
        """Record the cameras of ``site`` that have a ``recording:`` block (and are owned)."""
        quiet = orphan_quiet_seconds(site.config.cluster.lease_seconds) if self._cluster else None
        self._service = RecordingService(
            site,
            repository,
            owned=lambda: self._ownership.owned,
            orphan_quiet_seconds=quiet,
        )
        try:
            self._service.start()
        except Exception:  # the analysis starts anyway
            log.exception("recording: starting the recorders failed")

    def apply(self, site: LoadedSite) -> str:
        """Recorders follow their cameras' recording blocks in ``site`` (a reload) and the
        cameras owned now; what changed, as a suffix of a reload's message."""
        if self._service is None:
            return ""
        try:
            changes = self._service.apply(site)
        except Exception as error:  # the analysis's changes stand; recording reports itself
            log.exception("recording: following the site failed")
            return f"; recording not updated: {error}"
        failed = f", could not start {list(changes.failed)}" if changes.failed else ""
        return (
            f"; recording started {list(changes.started)}, stopped "
            f"{list(changes.stopped)}, restarted {list(changes.restarted)}{failed}"
        )

    def states(self) -> dict[str, RecordingState]:
        """Camera id -> its recording now, for the cameras that record here."""
        return {} if self._service is None else self._service.states()

    def stop(self) -> None:
        """Close the open segments and stop."""
        if self._service is not None:
            self._service.stop()
