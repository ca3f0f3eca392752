"""The recorders of a running server: one thread per camera with a ``recording:`` block, and
retention once a minute.

Each recorder opens its own connection to the camera (RTSP servers in cameras serve several
clients; a media server such as MediaMTX does too) and copies packets
(:func:`~safewatch.recording.recorder.record`), so recording costs no decoding and never waits
for, or slows, the analysis. Retention keeps every segment that overlaps the footage of an
incident nobody has closed yet (review status open or acknowledged, ``protect_margin`` seconds
either side of it, up to now while its episode runs) and ended within
``storage.recordings_protect_days`` (30 by default): evidence an operator has not looked at is
not deleted for space, but at a site where nobody closes incidents it no longer accumulates for
ever. After the cameras' own limits, a free-space guard deletes the oldest unprotected segments
of all cameras together while the recording folder's file system has less than
``storage.recordings_min_free_gb`` free (2 GB by default): the database and the evidence share
that disk by default, and recordings filling it stopped incident writes. When even that could
not meet the guard (something else fills the disk), each camera's newest hour stays
(:data:`GUARD_FLOOR_SECONDS`) and a ``/readyz`` warning says so.

Under ``serve --cluster`` a camera is recorded by the analyzer that owns it (``owned``): the
recorder starts when the camera is handed to this analyzer and stops (closing its segment) when
it leaves, so the next owner continues in the same shared folder. Retention runs for the owned
cameras only (of those the site records), so each camera's recording is pruned by one node at a
time and never by two that disagree; an owner also names the segments a dead previous owner
left open (``.part`` files nobody wrote to for ``orphan_quiet_seconds``), at launch and at each
retention round. On one host, each round names too the ``.part`` files of its cameras nobody
wrote to for a minute: a segment its recorder could not rename (a read-only remount, a stale NFS
handle) was hidden from playback and never pruned until the next start.

A folder of the recording root whose camera the site file records nowhere (disabled, removed,
renamed, its ``recording:`` block deleted or disabled) has no recorder and no owner, yet its
footage must still age out: ``max_hours`` can be a privacy limit. Retention prunes it too, with
the limits of the camera's ``recording:`` block: still in the site file (a disabled camera or
block), else as last written to the folder's ``.retention.json``, else a block's defaults
(72 h). The file is written (atomically, in the shared folder) when a recorder of the camera
starts and at each retention round when its block changed, by the node that uses the block: a
limit kept in each process's memory was lost at a restart (a camera with ``max_hours: 24``
kept its footage 72 h, one with 720 lost it at 72 h) and differed between nodes. Only cameras
the site file records nowhere, not those merely owned by another node, and never a folder with
a segment written in the last :data:`LIVE_SECONDS`: a node that missed a reload would prune the
folder of a camera the others record (a new camera, one renamed back).

Recording never stops the analysis: a recorder that cannot start (the recording folder cannot
be created, a stale NFS handle while naming orphans) or whose thread ends on an error
:func:`~safewatch.recording.recorder.record` does not survive is logged, reported
(:meth:`RecordingService.states`: ``safewatch_recording_up`` and a ``/readyz`` warning) and
started again by the service's own thread, after a back-off (:func:`retry_after`), while the
caller (a site reload, a camera handed over) goes on.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av

from safewatch.config.loader import LoadedSite
from safewatch.config.site import RecordingConfig
from safewatch.ingest.av_options import build_open_spec, source_kind
from safewatch.recording.recorder import RecordStats, close_orphans, record
from safewatch.recording.retention import Protected, prune
from safewatch.recording.segments import Segment, list_segments
from safewatch.recording.segments import cameras as camera_folders
from safewatch.storage import IncidentFilter, IncidentRepository
from safewatch.storage.atomic import atomic_write

__all__ = [
    "LIMITS_FILE",
    "LIVE_SECONDS",
    "RecorderPlan",
    "RecordingChanges",
    "RecordingService",
    "RecordingState",
    "recordings_root",
    "retry_after",
]

log = logging.getLogger(__name__)

_UNREVIEWED = ["open", "acknowledged"]

_UNRECORDED_QUIET = 60.0
"""Seconds a ``.part`` file must have gone unwritten before a retention round on one host names
it: of a camera recorded nowhere (a folder with no recorder: only a crash's leftovers, but a
reload may be starting one), or of one recorded here (a segment its recorder could not rename;
its open segment is never taken, whatever the clocks say)."""
LIMITS_FILE = ".retention.json"
"""In a camera's folder: the limits of its ``recording:`` block as last seen, for retention once
no recorder uses the block (module docstring). Not a segment: listing ignores it."""
LIVE_SECONDS = 300.0
"""A camera folder with a segment or ``.part`` file modified this recently is being recorded
somewhere: a node whose site file records the camera nowhere leaves it alone (it missed a
reload). Minutes, not seconds: a ``.part`` file is written at every keyframe, and the file
times come from the file server's clock."""
GUARD_FLOOR_SECONDS = 3600.0
"""When deleting every unprotected segment would still leave less free space than
``storage.recordings_min_free_gb`` (something else fills the disk: evidence, the database, other
programs, a disk smaller than the guard), the free-space guard keeps each camera's newest hour of
footage: it deleted every closed segment each round and kept about a minute of recording. Only
as much of that hour as leaves :data:`_FLOOR_RESERVE_BYTES` (or half the guard) free is kept,
newest first: kept whole, it could fill the disk to the last byte."""
_FLOOR_RESERVE_BYTES = 1_000_000_000
"""Free space the newest-hour floor never eats into: at most half the guard, at most 1 GB."""
_FULL_WARN_SECONDS = 3600.0
"""How often the "something else fills the disk" warning is repeated while it lasts."""
_RETRY_FIRST = 5.0
_RETRY_MAX = 300.0


def retry_after(failures: int) -> float:
    """Seconds before starting again a recorder that failed ``failures`` times in a row: 5 s,
    doubling up to 5 min, so a folder that stays unwritable is not hammered (nor the log)."""
    return min(_RETRY_MAX, _RETRY_FIRST * 2.0 ** max(0, failures - 1))


def recordings_root(site: LoadedSite) -> Path:
    """The site's recording folder (``storage.recordings_dir``, relative to the site file)."""
    folder = site.config.storage.recordings_dir.expanduser()
    return folder if folder.is_absolute() else site.base_dir / folder


@dataclass(frozen=True, slots=True)
class RecorderPlan:
    """What a camera's recorder was started with: a change of any of these restarts it.

    Retention limits (``max_hours``, ``max_gb``) are not here: retention reads them from the
    site in force each round, so changing them never interrupts a recording.
    """

    source: str
    rtsp_transport: Literal["tcp", "udp"]
    segment_seconds: float


@dataclass(frozen=True, slots=True)
class RecordingChanges:
    """What :meth:`RecordingService.apply` did, camera ids sorted."""

    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    """Of those started or restarted, the ones that could not start (retried later)."""

    def __bool__(self) -> bool:
        return bool(self.started or self.stopped or self.restarted)


@dataclass(frozen=True, slots=True)
class RecordingState:
    """One camera's recording now (``safewatch_recording_up``, a ``/readyz`` warning).

    Attributes:
        up: Its recorder is connected to the camera and writing.
        segments: Segments closed since the server started, across its recorder's restarts.
        message: ``"writing"``, or why it does not record now.
    """

    up: bool
    segments: int
    message: str
    warning: str | None = None
    """A problem while it records: the free-space guard cannot be met (something else fills the
    recording disk), so only the newest hour of footage is kept."""


@dataclass
class _Recorder:
    plan: RecorderPlan
    stop: threading.Event
    thread: threading.Thread | None
    """``None``: it could not start; started again at ``retry_at``."""
    stats: RecordStats
    failures: int = 0
    """Failed starts and deaths in a row, up to this one (the back-off's exponent)."""
    retry_at: float = 0.0


class RecordingService:
    """Start, retain, follow and stop the recordings of ``site``'s cameras.

    Each camera's recorder has its own stop event, so a site reload (:meth:`apply`) starts,
    stops or restarts one camera's recorder without cutting the others' segments.

    Args:
        site: The site in force (cameras with ``recording.enabled`` and a live source record).
        repository: Incidents, to protect the footage of unreviewed ones.
        clock: Wall clock.
        retention_seconds: How often retention runs.
        protect_margin: Seconds of footage kept before and after an unreviewed incident.
        stop_timeout: Longest wait for one recorder to close its segment when it is stopped
            or restarted by a reload (an input blocked in a reconnect may take its open
            timeout; the recorder then finishes on its own, its segment intact).
        check_seconds: How often recorders that died or could not start are looked at
            (each is started again after its :func:`retry_after` back-off).
        owned: The cameras this process may record now (``None``: all; ``serve --cluster``:
            those it owns). Read at each :meth:`apply` and retention round.
        orphan_quiet_seconds: ``None`` (one host): the ``.part`` files of a camera are named
            before its first recorder starts, and at each retention round those nobody wrote
            to for a minute (a segment its recorder could not rename). Otherwise (a shared
            folder): those nobody wrote to for this long, at every launch and retention round.
        free_bytes: Free bytes of the file system holding a folder (the free-space guard of
            ``storage.recordings_min_free_gb``).
    """

    def __init__(
        self,
        site: LoadedSite,
        repository: IncidentRepository,
        *,
        clock: Callable[[], float] = time.time,
        retention_seconds: float = 60.0,
        protect_margin: float = 120.0,
        stop_timeout: float = 5.0,
        check_seconds: float = 5.0,
        owned: Callable[[], frozenset[str] | None] = lambda: None,
        orphan_quiet_seconds: float | None = None,
        free_bytes: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
    ) -> None:
        self._site = site
        self._repository = repository
        self._clock = clock
        self._retention_seconds = retention_seconds
        self._margin = protect_margin
        self._stop_timeout = stop_timeout
        self._check_seconds = check_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._recorders: dict[str, _Recorder] = {}
        self._retention: threading.Thread | None = None
        self._orphans_closed: set[str] = set()
        self._owned = owned
        self._orphan_quiet = orphan_quiet_seconds
        self._free_bytes = free_bytes
        self._short_of_space = False  # the last round found less free than the guard
        self._disk_full: str | None = None  # the guard cannot be met: why (states(), /readyz)
        self._full_warned_at = -float("inf")  # clock time of the last such warning
        self._file_warned: set[str] = set()
        self._written: dict[str, int] = {}  # segments closed per camera, across restarts
        self._written_lock = threading.Lock()
        self.root = recordings_root(site)
        # Of the start, like the root: the whole ``storage`` block applies after a restart (a
        # reload logs so, the docs say so and safewatch_storage_min_free_bytes keeps the start's
        # value), while reading them from the site in force changed them at the next round.
        self._min_free_gb = site.config.storage.recordings_min_free_gb
        self._protect_days = site.config.storage.recordings_protect_days

    def cameras(self, site: LoadedSite | None = None) -> dict[str, Any]:
        """Camera id -> its config, for the cameras that record here (of ``site``, or the one
        in force; owned by this process)."""
        chosen = {}
        owned = self._owned()
        for key, camera in (site or self._site).config.cameras.items():
            if owned is not None and key not in owned:
                continue
            if _records(camera):
                chosen[key] = camera
            elif _asks(camera) and key not in self._file_warned:  # once: retention asks often
                self._file_warned.add(key)
                log.warning("camera %s: recording skipped: a file is its own recording", key)
        return chosen

    def recording(self) -> dict[str, RecorderPlan]:
        """Camera id -> the plan of its running recorder."""
        with self._lock:
            return {
                key: r.plan
                for key, r in self._recorders.items()
                if r.thread is not None and r.thread.is_alive()
            }

    def states(self) -> dict[str, RecordingState]:
        """Camera id -> its recording now, for every camera that records here."""
        # Without the lock: a reload holds it while recorders close their segments (seconds),
        # and a scrape or a /readyz must not wait for that. Copying a dict is one step.
        recorders = dict(self._recorders)
        now = time.monotonic()
        with self._written_lock:
            written = dict(self._written)
        states = {}
        for key, recorder in sorted(recorders.items()):
            thread, stats = recorder.thread, recorder.stats
            if thread is None:
                wait = max(0.0, recorder.retry_at - now)
                message = f"{stats.error}; trying again in {wait:.0f} s"
            elif not thread.is_alive():
                message = f"the recorder ended: {stats.error}; started again shortly"
            elif stats.writing:
                message = "writing"
            elif stats.error:
                message = f"{stats.error}; reconnecting"
            else:
                message = "connecting to the camera"
            states[key] = RecordingState(
                stats.writing, written.get(key, 0), message, self._disk_full
            )
        return states

    def start(self) -> None:
        """Name segments a crash left open, then start a recorder per camera and retention."""
        changes = self.apply(self._site)
        if changes.started:
            log.info("recording %d camera(s) into %s", len(changes.started), self.root)

    def apply(self, site: LoadedSite) -> RecordingChanges:
        """Make the recorders follow ``site`` (a reload of the site file): start the cameras
        that now record, stop those that no longer do, and restart those whose source,
        transport or segment length changed; the others record on untouched.

        The recording folder is the one of the start (``storage`` changes need a restart, as
        the reload logs).
        """
        with self._lock:
            if self._stop.is_set():
                return RecordingChanges()
            self._site = site
            wanted = {key: _plan(camera) for key, camera in self.cameras(site).items()}
            gone = sorted(k for k in self._recorders if k not in wanted)
            changed = sorted(
                k for k, r in self._recorders.items() if k in wanted and r.plan != wanted[k]
            )
            new = sorted(k for k in wanted if k not in self._recorders)
            ending = [self._recorders.pop(k) for k in (*gone, *changed)]
            for recorder in ending:
                recorder.stop.set()
            deadline = time.monotonic() + self._stop_timeout
            for recorder in ending:  # closed before its successor opens a segment
                if recorder.thread is None:
                    continue
                recorder.thread.join(max(0.1, deadline - time.monotonic()))
                if recorder.thread.is_alive():
                    log.warning("%s still closing its segment", recorder.thread.name)
            failed = []
            for key in (*changed, *new):
                self._recorders[key] = self._launch(key, wanted[key])
                if self._recorders[key].thread is None:
                    failed.append(key)
            if self._retention is None:  # also for the folders of cameras no longer recorded
                self._retention = threading.Thread(
                    target=self._retain_loop, name="record-retention", daemon=True
                )
                self._retention.start()
        changes = RecordingChanges(tuple(new), tuple(gone), tuple(changed), tuple(sorted(failed)))
        if changes:
            log.info(
                "recording: started %s, stopped %s, restarted %s",
                list(changes.started),
                list(changes.stopped),
                list(changes.restarted),
            )
        return changes

    def check(self) -> tuple[str, ...]:
        """Start again the recorders that died and those that could not start, each once its
        back-off has passed; the cameras started (the service's thread calls this every
        ``check_seconds``)."""
        started = []
        with self._lock:
            if self._stop.is_set():
                return ()
            now = time.monotonic()
            for key, recorder in list(self._recorders.items()):
                thread = recorder.thread
                if thread is not None and not thread.is_alive() and not recorder.stop.is_set():
                    # a recorder that closed segments worked: its back-off starts over
                    failures = 1 if recorder.stats.segments else recorder.failures + 1
                    wait = retry_after(failures)
                    log.error(
                        "recording %s: the recorder ended (%s); starting it again in %.0f s",
                        key,
                        recorder.stats.error,
                        wait,
                    )
                    self._recorders[key] = _Recorder(
                        recorder.plan,
                        threading.Event(),
                        None,
                        RecordStats(error=f"the recorder ended: {recorder.stats.error}"),
                        failures,
                        now + wait,
                    )
            for key, recorder in list(self._recorders.items()):
                if recorder.thread is None and recorder.retry_at <= now:
                    self._recorders[key] = self._launch(key, recorder.plan, recorder.failures)
                    if self._recorders[key].thread is not None:
                        log.info("recording %s: recorder started again", key)
                        started.append(key)
        return tuple(started)

    def _launch(self, key: str, plan: RecorderPlan, failures: int = 0) -> _Recorder:
        """Start ``key``'s recorder; one that cannot start is returned without a thread, to be
        tried again by :meth:`check`. Never raises: the caller is starting the analysis, a
        handover or a reload, which a recording folder must not hold up."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if self._orphan_quiet is not None:  # a shared folder: any node's dead segments
                self._close_orphans(key, self._orphan_quiet)
            elif key not in self._orphans_closed:  # once: later ones are this process's own
                self._close_orphans(key, None)
                self._orphans_closed.add(key)
            spec = build_open_spec(plan.source, rtsp_transport=plan.rtsp_transport)
            camera = self._site.config.cameras.get(key)
            if camera is not None and camera.recording is not None:
                self._keep_limits(key, camera.recording)
        except Exception as error:  # an OSError mostly (EIO, ESTALE, EACCES)
            failures += 1
            wait = retry_after(failures)
            log.error("recording %s: cannot start (%s); trying again in %.0f s", key, error, wait)
            stats = RecordStats(error=f"cannot start: {error}")
            return _Recorder(
                plan, threading.Event(), None, stats, failures, time.monotonic() + wait
            )

        def open_input() -> Any:
            return av.open(spec.target, format=spec.format, options=spec.options, timeout=10.0)

        stop = threading.Event()
        stats = RecordStats()
        thread = threading.Thread(
            target=self._record,
            args=(key, open_input, plan, stop, stats),
            name=f"record-{key}",
            daemon=True,
        )
        thread.start()
        return _Recorder(plan, stop, thread, stats, failures)

    def _record(
        self,
        key: str,
        open_input: Callable[[], Any],
        plan: RecorderPlan,
        stop: threading.Event,
        stats: RecordStats,
    ) -> None:
        """One recorder thread: :func:`record` until stopped; an error it does not survive is
        logged and kept for :meth:`states`, and :meth:`check` starts the recorder again."""
        try:
            record(
                open_input,
                self.root,
                key,
                stop=stop,
                segment_seconds=plan.segment_seconds,
                clock=self._clock,
                on_segment=lambda _segment: self._count(key),
                stats=stats,
            )
        except Exception as error:
            stats.writing = False
            stats.error = repr(error)
            log.exception("recording %s: the recorder failed", key)

    def _count(self, key: str) -> None:
        with self._written_lock:
            self._written[key] = self._written.get(key, 0) + 1

    def _close_orphans(self, key: str, quiet: float | None) -> None:
        found = close_orphans(self.root, key, quiet_seconds=quiet, clock=self._clock)
        for orphan in found:
            log.info("recording %s: closed %s left by a stop", key, orphan.path.name)

    def stop(self, timeout: float = 15.0) -> None:
        """Close the open segments (they keep their footage) and stop."""
        with self._lock:
            self._stop.set()
            recorders = list(self._recorders.values())
            self._recorders.clear()
            retention, self._retention = self._retention, None
        for recorder in recorders:
            recorder.stop.set()
        deadline = time.monotonic() + timeout
        threads = [r.thread for r in recorders if r.thread is not None]
        threads += [retention] if retention else []
        for thread in threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def protected(self, camera_id: str) -> list[Protected]:
        """Spans of ``camera_id``'s footage that unreviewed incidents need: all of them, however
        many, but of those that ended within ``storage.recordings_protect_days`` only: at a
        site where nobody closes incidents, their footage was never deleted and filled the
        disk the database and evidence share."""
        spans = self._repository.spans(IncidentFilter(camera=camera_id, status=_UNREVIEWED))
        now = self._clock()
        days = self._protect_days
        since = -float("inf") if days is None else now - days * 86_400
        return [
            Protected(
                start - self._margin,
                (end if end is not None else now) + self._margin,
                camera_id,
            )
            for _, start, end in spans
            if end is None or end >= since
        ]

    def retain(self) -> int:
        """Apply the retention of every camera recorded here now, and of every camera folder
        the site records nowhere (module docstring); the number of segments deleted.

        Each camera is handled on its own, and its orphans apart from its pruning: a failure
        (a ``.part`` that cannot be removed, a stale mount) is logged and the rest still
        pruned; one camera's failure ended the round for every camera after it, every round,
        and their disks filled.
        """
        removed = 0
        pruned: list[str] = []  # the cameras whose footage this node prunes
        for key, camera in self.cameras().items():
            pruned.append(key)
            # A dead owner's segment (a shared folder), or on one host a segment its recorder
            # could not rename (a read-only remount, a stale NFS handle): named only at the next
            # start, it was hidden from playback and never pruned until then.
            try:
                self._close_orphans(key, self._orphan_quiet or _UNRECORDED_QUIET)
            except Exception:  # the storage still refuses: next round; prune anyway
                log.exception("recording %s: naming orphaned segments failed", key)
            try:
                self._keep_limits(key, camera.recording)
                removed += self._prune(key, camera.recording)
            except Exception:
                log.exception("recording %s: retention failed this round", key)
        configured = self._site.config.cameras
        for key in camera_folders(self.root):
            if key in configured and _records(configured[key]):
                continue  # its recorder's (here or on the node that owns it)
            try:
                done = self._retain_unrecorded(key)
            except Exception:  # not known to be left alone by its recorder: the guard too
                log.exception("recording %s: retention failed this round", key)
                continue
            # Only a folder this node prunes is the guard's: one it leaves alone (written to
            # lately: another node records it) was added before and the guard deleted that
            # node's live footage.
            if done is not None:
                pruned.append(key)
                removed += done
        try:
            removed += self._keep_free(pruned)
        except Exception:
            self._disk_full = None  # unknown this round: no stale warning in /readyz
            log.exception("recording retention: the free-space guard failed this round")
        return removed

    def _keep_free(self, keys: list[str]) -> int:
        """Delete the oldest segments of ``keys`` (all cameras together) that no unreviewed
        incident needs until the recording folder's file system has
        ``storage.recordings_min_free_gb`` free; the number deleted.

        The per-camera limits alone (72 h by default, no byte limit) let the recordings fill
        a disk the database and evidence share: incidents could then no longer be written.
        When even deleting every unprotected segment could not free enough, the recordings are
        not what fills the disk: each camera's newest :data:`GUARD_FLOOR_SECONDS` are kept
        (every closed segment went each round before, a minute of footage left) and a warning
        says so every hour, and in :meth:`states` (``/readyz``).
        """
        guard = self._min_free_gb
        if guard is None or not keys:  # no camera folder: nothing of ours to free
            self._disk_full = None
            return 0
        free = self._free_bytes(self.root)
        need = int(guard * 1e9) - free
        if need <= 0:
            if self._short_of_space:
                log.info("recording retention: %s is above its free-space guard again", self.root)
            self._short_of_space = False
            self._disk_full = None
            self._full_warned_at = -float("inf")  # a new spell warns at once
            return 0
        segments = [s for key in keys for s in list_segments(self.root, key)]
        total = sum(s.size for s in segments)
        incidents = [p for key in keys for p in self.protected(key)]
        held = sum(s.size for s in _covered(segments, incidents))
        hopeless = total - held < need  # deleting all we may would not meet the guard
        # The newest hour only while it fits: kept whole, it grew unchecked (the test above
        # cannot change while the cameras record, each byte adding to both sides) and could
        # fill the disk to its last byte.
        reserve = min(int(guard * 1e9) // 2, _FLOOR_RESERVE_BYTES)
        budget = free + (total - held) - reserve
        floor = _newest(segments, incidents, GUARD_FLOOR_SECONDS, budget) if hopeless else []
        now = self._clock()
        removed = prune(
            segments,
            now=now,
            max_age=None,
            max_bytes=max(0, total - need),
            protected=incidents + floor,
        )
        freed = sum(s.size for s in removed)
        blame = f"; unreviewed incidents' footage holds {held / 1e9:.2f} GB" if held else ""
        if hopeless:
            self._short_of_space = True
            # Only when even all the recordings could not free enough is it something else.
            cause = (
                "something else fills the disk"
                if total < need
                else f"unreviewed incidents' footage ({held / 1e9:.2f} GB) and other files keep "
                "the disk under the guard"
            )
            self._disk_full = (
                f"{free / 1e9:.2f} GB free on {self.root}, recordings hold {total / 1e9:.2f} GB: "
                f"{cause} (storage.recordings_min_free_gb: {guard:g}); each camera's newest "
                f"{GUARD_FLOOR_SECONDS / 3600:g} h is kept while "
                f"{reserve / 1e9:.2f} GB stay free{blame if total < need else ''}"
            )
            if not 0 <= now - self._full_warned_at < _FULL_WARN_SECONDS:
                self._full_warned_at = now
                log.warning(
                    "recording retention: %s; deleted %d segment(s) (%.2f GB)",
                    self._disk_full,
                    len(removed),
                    freed / 1e9,
                )
            return len(removed)
        self._disk_full = None
        # Once per spell under the guard (every round logged it: 1,440 a day), then debug.
        level = logging.DEBUG if self._short_of_space else logging.WARNING
        self._short_of_space = True
        short = ""
        if freed < need:  # segments it could not delete (prune logged them), or protected ones
            short = "; not enough" + (blame or ": some could not be deleted")
        log.log(
            level,
            "recording retention: under storage.recordings_min_free_gb (%g GB free wanted) on "
            "%s: deleted the %d oldest segment(s) (%.2f GB) before their limits%s",
            guard,
            self.root,
            len(removed),
            freed / 1e9,
            short,
        )
        return len(removed)

    def _retain_unrecorded(self, key: str) -> int | None:
        """Retention of the folder of a camera the site records nowhere (module docstring); the
        number of segments deleted, or ``None`` when the folder is left alone (recorded
        somewhere, or its limits unreadable): the free-space guard then leaves it alone too."""
        if _written_since(self.root / key, self._clock() - LIVE_SECONDS):
            return None  # recorded somewhere: this node's site file is not the others'
        configured = self._site.config.cameras
        block = configured[key].recording if key in configured else None
        if block is not None:  # a disabled camera or block: the site file says
            self._keep_limits(key, block)
            policy = block
        else:
            try:
                policy = _written_limits(self.root / key) or RecordingConfig()
            except (OSError, ValueError) as error:  # not the defaults: they may be shorter
                log.warning("recording %s: %s unreadable, not pruned: %s", key, LIMITS_FILE, error)
                return None
        quiet = self._orphan_quiet or _UNRECORDED_QUIET
        try:
            found = close_orphans(self.root, key, quiet_seconds=quiet, clock=self._clock)
        except Exception:  # its footage still ages out
            log.exception("recording %s: naming orphaned segments failed", key)
            found = []
        for orphan in found:
            log.info("recording %s: closed %s left by a crash", key, orphan.path.name)
        return self._prune(key, policy)

    def _keep_limits(self, key: str, block: RecordingConfig) -> None:
        """Write ``key``'s limits to its folder's :data:`LIMITS_FILE` if they changed; never
        raises (retention writes it again next round)."""
        target = self.root / key / LIMITS_FILE
        data = json.dumps({"max_gb": block.max_gb, "max_hours": block.max_hours})
        try:
            if target.read_text(encoding="utf-8") == data:
                return
        except (OSError, ValueError):
            pass  # none yet (or unreadable): written now
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)
        except OSError as error:
            log.warning("recording %s: cannot write %s: %s", key, LIMITS_FILE, error)

    def _prune(self, key: str, policy: RecordingConfig) -> int:
        return len(
            prune(
                list_segments(self.root, key),
                now=self._clock(),
                max_age=None if policy.max_hours is None else policy.max_hours * 3600,
                max_bytes=None if policy.max_gb is None else int(policy.max_gb * 1e9),
                protected=self.protected(key),
            )
        )

    def _retain_loop(self) -> None:
        """Every ``check_seconds``, :meth:`check`; every ``retention_seconds``, retention."""
        due = time.monotonic() + self._retention_seconds
        while not self._stop.wait(min(self._check_seconds, self._retention_seconds)):
            try:
                self.check()
            except Exception:  # the loop must not die either
                log.exception("recording check failed")
            if time.monotonic() < due:
                continue
            due = time.monotonic() + self._retention_seconds
            try:
                removed = self.retain()
            except Exception:  # retention must not die; the next round tries again
                log.exception("recording retention failed")
                continue
            if removed:
                log.info("recording retention deleted %d segment(s)", removed)


def _written_limits(folder: Path) -> RecordingConfig | None:
    """The limits last written to ``folder``'s :data:`LIMITS_FILE`, ``None`` if none ever was.

    Raises:
        OSError: The file cannot be read.
        ValueError: It holds no limits.
    """
    try:
        text = (folder / LIMITS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return RecordingConfig.model_validate(json.loads(text))


def _covered(segments: list[Segment], spans: list[Protected]) -> list[Segment]:
    """The segments one of ``spans`` covers; spans looked up by camera (every segment against
    every span cost ~10 s a round at 86,000 segments and 2,000 spans)."""
    by_camera: dict[str | None, list[Protected]] = {}
    for span in spans:
        by_camera.setdefault(span.camera_id, []).append(span)
    anywhere = by_camera.get(None, [])
    return [
        s
        for s in segments
        if any(p.covers(s) for p in by_camera.get(s.camera_id, ()))
        or any(p.covers(s) for p in anywhere)
    ]


def _newest(
    segments: list[Segment], protected: list[Protected], seconds: float, budget: int
) -> list[Protected]:
    """Spans keeping each camera's newest ``seconds`` of ``segments`` (up to its last one's end:
    a camera that stopped recording keeps its last footage too), newest first of all cameras,
    as long as their bytes fit in ``budget`` (the segments ``protected`` already keeps do not
    count: they stay anyway)."""
    last: dict[str, float] = {}
    for segment in segments:
        last[segment.camera_id] = max(segment.end, last.get(segment.camera_id, -float("inf")))
    kept = set(map(id, _covered(segments, protected)))
    recent = [s for s in segments if s.end > last[s.camera_id] - seconds and id(s) not in kept]
    spans: list[Protected] = []
    for segment in sorted(recent, key=lambda s: s.end, reverse=True):
        if segment.size > budget:
            break
        budget -= segment.size
        # A point at its start: the segment before ends there and is not covered (end exclusive).
        spans.append(Protected(segment.start, segment.start, segment.camera_id))
    return spans


def _written_since(folder: Path, since: float) -> bool:
    """Whether a segment or ``.part`` file of ``folder`` was modified after ``since``."""
    for path in folder.glob("*/*.mp4"):
        try:
            if path.stat().st_mtime > since:
                return True
        except FileNotFoundError:  # renamed or pruned meanwhile
            continue
    return False


def _asks(camera: Any) -> bool:
    """Whether ``camera`` is enabled with an enabled ``recording:`` block."""
    return bool(camera.enabled and camera.recording and camera.recording.enabled)


def _records(camera: Any) -> bool:
    """Whether the site records ``camera`` (on some node): it asks to, and its source is live
    (a file is its own recording)."""
    return _asks(camera) and source_kind(camera.source) != "file"


def _plan(camera: Any) -> RecorderPlan:
    return RecorderPlan(camera.source, camera.rtsp_transport, camera.recording.segment_seconds)
