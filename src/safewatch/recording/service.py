"""The recorders of a running server: one thread per camera with a ``recording:`` block, and
retention once a minute.

Each recorder opens its own connection to the camera (RTSP servers in cameras serve several
clients; a media server such as MediaMTX does too) and copies packets
(:func:`~safewatch.recording.recorder.record`), so recording costs no decoding and never waits
for, or slows, the analysis. Retention keeps every segment that overlaps the footage of an
incident nobody has closed yet (review status open or acknowledged, ``protect_margin`` seconds
either side of it, up to now while its episode runs): evidence an operator has not looked at is
never deleted for space.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from safewatch.config.loader import LoadedSite
from safewatch.ingest.av_options import build_open_spec, source_kind
from safewatch.recording.recorder import close_orphans, record
from safewatch.recording.retention import Protected, prune
from safewatch.recording.segments import list_segments
from safewatch.storage import IncidentFilter, IncidentRepository

__all__ = ["RecordingService", "recordings_root"]

log = logging.getLogger(__name__)

_UNREVIEWED = ["open", "acknowledged"]
_MAX_PROTECTED = 10_000


def recordings_root(site: LoadedSite) -> Path:
    """The site's recording folder (``storage.recordings_dir``, relative to the site file)."""
    folder = site.config.storage.recordings_dir.expanduser()
    return folder if folder.is_absolute() else site.base_dir / folder


class RecordingService:
    """Start, retain and stop the recordings of ``site``'s cameras.

    Args:
        site: The site in force (cameras with ``recording.enabled`` and a live source record).
        repository: Incidents, to protect the footage of unreviewed ones.
        clock: Wall clock.
        retention_seconds: How often retention runs.
        protect_margin: Seconds of footage kept before and after an unreviewed incident.
    """

    def __init__(
        self,
        site: LoadedSite,
        repository: IncidentRepository,
        *,
        clock: Callable[[], float] = time.time,
        retention_seconds: float = 60.0,
        protect_margin: float = 120.0,
    ) -> None:
        self._site = site
        self._repository = repository
        self._clock = clock
        self._retention_seconds = retention_seconds
        self._margin = protect_margin
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.root = recordings_root(site)

    def cameras(self) -> dict[str, Any]:
        """Camera id -> its config, for the cameras that record."""
        chosen = {}
        for key, camera in self._site.config.cameras.items():
            if not (camera.enabled and camera.recording and camera.recording.enabled):
                continue
            if source_kind(camera.source) == "file":
                log.warning("camera %s: recording skipped: a file is its own recording", key)
                continue
            chosen[key] = camera
        return chosen

    def start(self) -> None:
        """Name segments a crash left open, then start a recorder per camera and retention."""
        cameras = self.cameras()
        if not cameras:
            return
        for key, camera in cameras.items():
            self.root.mkdir(parents=True, exist_ok=True)
            for orphan in close_orphans(self.root, key):
                log.info("recording %s: closed %s left by a stop", key, orphan.path.name)
            spec = build_open_spec(camera.source, rtsp_transport=camera.rtsp_transport)

            def open_input(spec: Any = spec) -> Any:
                return av.open(spec.target, format=spec.format, options=spec.options, timeout=10.0)

            thread = threading.Thread(
                target=record,
                args=(open_input, self.root, key),
                kwargs={
                    "stop": self._stop,
                    "segment_seconds": camera.recording.segment_seconds,
                    "clock": self._clock,
                },
                name=f"record-{key}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        retention = threading.Thread(target=self._retain_loop, name="record-retention", daemon=True)
        retention.start()
        self._threads.append(retention)
        log.info("recording %d camera(s) into %s", len(cameras), self.root)

    def stop(self, timeout: float = 15.0) -> None:
        """Close the open segments (they keep their footage) and stop."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self._threads.clear()

    def protected(self, camera_id: str) -> list[Protected]:
        """Spans of ``camera_id``'s footage that unreviewed incidents need."""
        page = self._repository.page(
            IncidentFilter(camera=camera_id, status=_UNREVIEWED), limit=_MAX_PROTECTED, count=False
        )
        now = self._clock()
        return [
            Protected(
                i.started_at - self._margin,
                (i.ended_at if i.ended_at is not None else now) + self._margin,
            )
            for i in page.items
        ]

    def retain(self) -> int:
        """Apply every recording camera's retention now; the number of segments deleted."""
        removed = 0
        for key, camera in self.cameras().items():
            policy = camera.recording
            removed += len(
                prune(
                    list_segments(self.root, key),
                    now=self._clock(),
                    max_age=None if policy.max_hours is None else policy.max_hours * 3600,
                    max_bytes=None if policy.max_gb is None else int(policy.max_gb * 1e9),
                    protected=self.protected(key),
                )
            )
        return removed

    def _retain_loop(self) -> None:
        while not self._stop.wait(self._retention_seconds):
            try:
                removed = self.retain()
            except Exception:  # retention must not die; the next round tries again
                log.exception("recording retention failed")
                continue
            if removed:
                log.info("recording retention deleted %d segment(s)", removed)
