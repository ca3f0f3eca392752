"""Continuous recording beside the analysis
(:class:`~safewatch.recording.service.RecordingService`): started with the server, following site
reloads, stopped before the cameras."""

from __future__ import annotations

from safewatch.config.loader import LoadedSite
from safewatch.recording.service import RecordingService
from safewatch.storage import IncidentRepository

__all__ = ["RecordingLink"]


class RecordingLink:
    """The server's recorders, if it runs any.

    Args:
        cluster: ``serve --cluster``: recording does not run (it does not follow ownership yet).
    """

    def __init__(self, cluster: bool) -> None:
        self._cluster = cluster
        self._service: RecordingService | None = None

    def start(self, site: LoadedSite, repository: IncidentRepository) -> None:
        """Record the cameras of ``site`` that have a ``recording:`` block."""
        if not self._cluster:  # (cluster: recording follows ownership; not yet)
            # continuous recording of the cameras' own streams, beside the analysis
            self._service = RecordingService(site, repository)
            self._service.start()

    def apply(self, site: LoadedSite) -> str:
        """Recorders follow their cameras' recording blocks in a reloaded ``site``; what changed,
        as a suffix of the reload's message."""
        if self._service is None:
            return ""
        changes = self._service.apply(site)
        return (
            f"; recording started {list(changes.started)}, stopped "
            f"{list(changes.stopped)}, restarted {list(changes.restarted)}"
        )

    def stop(self) -> None:
        """Close the open segments and stop."""
        if self._service is not None:
            self._service.stop()
