"""The evidence thread: frame buffers, clips and secondary stills, off the analysis path.

The analysis thread hands every frame to :meth:`EvidenceRecorder.observe`, which only appends a
reference to a bounded queue and returns; when the queue is full the frame is dropped and counted
(the clip gets a gap, the analysis never waits). One background thread owns everything else:

- a :class:`~safewatch.incidents.ringbuffer.FrameRing` per camera (JPEG-encoded here, not on the
  analysis thread);
- the clips in progress: when an incident opens, its clip starts from the buffered frames at
  ``started_at - pre_seconds`` and then takes each new frame of that camera until
  ``ended_at + post_seconds`` (or ``max_clip_seconds`` after its first frame); heads are hidden
  and, if configured, the overlay drawn, frame by frame, then the frame is encoded
  (:class:`~.clips.ClipEncoder`);
- the stills of an incident: the annotated one (heads hidden, tracks and zones drawn) that the
  incident points at, the clean one (heads hidden, no overlay), and the sealed originals when
  ``keep_originals`` is on. The manager stores the incident's row first and asks for its stills
  after, so the frame that opens an incident (and its alert, queued with the row) never waits
  for a JPEG encode and a synced write; the row gets the still's key once the file is stored
  (:meth:`~safewatch.storage.IncidentRepository.attach_evidence`), as with clips.

Messages are handled in the order they were sent, so a clip opened after a frame was observed
contains that frame. A finished clip is stored through :class:`EvidenceStore` (the one place
evidence is written, where the tamper-evidence chain records it) and only then set on the
incident, so an incident never points at a partial clip. On start the recorder completes or
removes the clips a dead process left behind (:func:`~.clips.recover_clips`; one it cannot store,
on a full disk say, stays in the spool and is tried again on the adoption worker); under ``serve
--cluster`` a camera's new owner finishes its lost owner's clips on a second thread, the
adoption worker (:meth:`EvidenceRecorder.adopt_clips`), so that salvage and upload never hold
up the frames of live clips.

Evidence keys (relative paths) of one incident share its stem and differ by suffix:
``.jpg`` annotated still, ``.clean.jpg``, ``.mp4`` clip, and the sealed
originals ``.orig.jpg.sealed`` and ``.orig.mp4.sealed``.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import cv2

from safewatch.config.site import EvidenceConfig, PrivacyConfig
from safewatch.domain import Frame, Image, Incident, TrackedFrame, Zone
from safewatch.errors import FencedWrite, SafewatchError, StorageError
from safewatch.incidents.annotate import draw_overlay
from safewatch.incidents.clips import (
    CLIP_SUFFIX,
    PART_SUFFIX,
    ClipEncoder,
    ClipInfo,
    PartLock,
    Recovery,
    adopt_clips,
    recover_clips,
)
from safewatch.incidents.evidence import JPEG_QUALITY, EvidenceStore
from safewatch.incidents.privacy import anonymise_heads
from safewatch.incidents.ringbuffer import BufferedFrame, FrameRing
from safewatch.incidents.sealed import EvidenceKey, seal
from safewatch.storage import IncidentRepository

__all__ = [
    "CLEAN_STILL_SUFFIX",
    "CLIP_SUFFIX",
    "ORIGINAL_CLIP_SUFFIX",
    "ORIGINAL_STILL_SUFFIX",
    "EvidenceRecorder",
    "RecorderStats",
]

_log = logging.getLogger(__name__)

CLEAN_STILL_SUFFIX = ".clean.jpg"
ORIGINAL_STILL_SUFFIX = ".orig.jpg.sealed"
ORIGINAL_CLIP_SUFFIX = ".orig.mp4.sealed"

_DEFAULT_FPS = 5.0
_MIB = 1 << 20


@dataclass
class RecorderStats:
    """Counters of one recorder (a snapshot from :attr:`EvidenceRecorder.stats`).

    Attributes:
        frames_observed: Frames handed to :meth:`EvidenceRecorder.observe`.
        frames_dropped: Of those, dropped because the queue was full.
        clips_written: Clips stored.
        clips_failed: Clips abandoned on an error (their incident keeps no clip, or what
            recovery salvages of it later: a full disk).
        stills_written: Clean stills stored.
        originals_sealed: Sealed originals stored (stills and clips).
        stills_failed: Incidents' stills (annotated or clean) that could not be stored.
        originals_failed: Sealed originals (stills and clips) that could not be stored.
        errors: Evidence writes that failed (logged with the incident id): the failed stills
            and originals, adoptions' clips not stored yet, and the thread's unexpected errors.
        buffered_bytes: Picture bytes held in the frame buffers, per camera.
        recovery: What the start-up recovery did.
    """

    frames_observed: int = 0
    frames_dropped: int = 0
    clips_written: int = 0
    clips_failed: int = 0
    stills_written: int = 0
    originals_sealed: int = 0
    stills_failed: int = 0
    originals_failed: int = 0
    errors: int = 0
    buffered_bytes: dict[str, int] = field(default_factory=dict)
    recovery: Recovery = field(default_factory=Recovery)


@dataclass(frozen=True, slots=True)
class _Observed:
    frame: Frame
    tracked: TrackedFrame


@dataclass(frozen=True, slots=True)
class _Open:
    incident: Incident


@dataclass(frozen=True, slots=True)
class _Close:
    incident: Incident


@dataclass(frozen=True, slots=True)
class _Still:
    incident_id: str
    camera_id: str
    at: float
    frame: Frame
    tracked: TrackedFrame
    highlight: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Barrier:
    done: threading.Event


@dataclass(frozen=True, slots=True)
class _EndCamera:
    camera_id: str


@dataclass(frozen=True, slots=True)
class _DropCamera:
    camera_id: str


@dataclass(frozen=True, slots=True)
class _Adopt:
    camera_id: str
    reason: str
    previous_owner: str | None
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class _Recover:
    """Another try at interrupted clips of this spool that could not be stored (part names)."""

    parts: frozenset[str]
    attempt: int = 0


_Message = (
    _Observed | _Open | _Close | _Still | _Barrier | _EndCamera | _DropCamera | _Adopt | _Recover
)

_ADOPT_RETRY_CAP = 30.0
"""Longest wait between two tries at a lost camera's clips (held by another process, or not
stored because of a storage or database error)."""
_ADOPT_MAX_FAILED_TRIES = 20
"""Tries of a camera's adoption while some clip *fails* to be stored (about 8 minutes with the
backoff): each try decodes the whole clip again on an analyzer doing live inference, so an error
that does not go away (bucket permissions) stops being retried; the file stays in the spool for
the next claim of the camera or the next start. Clips only *held* by a live writer (a frozen
owner) cost nothing to try and are retried as long as the recorder runs."""

_RECOVER_RETRY_CAP = 300.0
"""Longest wait between two tries at interrupted clips that could not be stored (a full disk):
each try decodes the clips again, and a disk stays full for minutes or hours. There is no last
try: the file is evidence, and once space is freed it is stored within this wait."""

_AdoptWork = tuple[_Adopt | _Recover, frozenset[str]] | _Barrier | None
"""The adoption worker's queue: a camera's adoption or another try at clips recovery could not
store (with the evidence thread's own clips to leave alone), a barrier
(:meth:`EvidenceRecorder.flush`), or ``None`` (stop)."""


@dataclass
class _Clip:
    """One clip in progress (owned by the evidence thread)."""

    incident: Incident
    window_start: float
    limit: float
    part: Path
    lock: PartLock
    interval: float
    encoder: ClipEncoder | None = None
    original: ClipEncoder | None = None
    original_bytes: io.BytesIO | None = None
    last_written: float = float("-inf")


class EvidenceRecorder:
    """Buffers frames and writes clips and secondary stills on its own thread.

    Thread-safe: any number of pipeline threads (and their incident managers) may share one.

    Args:
        store: Where evidence is stored.
        repository: Incidents get their clip reference here once the clip is stored.
        config: The site's ``evidence`` block.
        privacy_for: A camera's privacy settings (``SiteConfig.privacy_for``); default: blur.
        zones_for: A camera's zones, drawn on annotated clips.
        key: Key for sealed originals; default: read from ``config.key_env`` when
            ``config.keep_originals`` is on.
        spool: Folder for clips being written; default ``.clips-in-progress`` in a local store.
        max_queued_frames: Frames waiting for the thread before new ones are dropped.
        max_queued_mib: Picture MiB waiting for the thread before new frames are dropped.
        on_full: ``drop`` (live cameras: the analysis never waits, the clip gets a gap) or
            ``wait`` (archived footage: :meth:`observe` waits for room, so a file run's clips are
            complete and the same on every run, at the evidence thread's pace).
        crf: x264 quality of clips.
        recover: Complete the clips a dead process left in the spool now. ``serve --cluster``
            with a shared spool turns it off: each camera's next owner does it, through the
            epoch fence and with the takeover's reason in the chain (:meth:`adopt_clips`).

    Raises:
        EvidenceKeyError: ``keep_originals`` is on and the key is missing or malformed.
        StorageError: The spool cannot be created (a clip start-up recovery cannot store is
            left in the spool and tried again later, never raised).
    """

    def __init__(
        self,
        store: EvidenceStore,
        repository: IncidentRepository,
        config: EvidenceConfig,
        *,
        privacy_for: Callable[[str], PrivacyConfig] | None = None,
        zones_for: Callable[[str], Sequence[Zone]] | None = None,
        key: EvidenceKey | None = None,
        spool: Path | None = None,
        max_queued_frames: int = 64,
        max_queued_mib: float = 256.0,
        on_full: Literal["drop", "wait"] = "drop",
        crf: int = 23,
        recover: bool = True,
    ) -> None:
        self._store = store
        self._repository = repository
        self._config = config
        self._privacy_for = privacy_for or (lambda _camera: PrivacyConfig())
        self._zones_for = zones_for
        if config.keep_originals and key is None:
            key = EvidenceKey.from_env(config.key_env)
        self._key = key if config.keep_originals else None
        self._spool = spool if spool is not None else store.root / ".clips-in-progress"
        try:
            self._spool.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the clip spool {self._spool}: {exc.strerror or exc}"
            ) from exc
        self._max_frames = max(1, max_queued_frames)
        self._max_bytes = int(max_queued_mib * _MIB)
        self._crf = crf
        self._wait_when_full = on_full == "wait"
        recovery = recover_clips(self._spool, store, repository) if recover else Recovery()
        self._stats = RecorderStats(recovery=recovery)
        self._unstored: set[str] = set()  # part files whose failure was logged (adopter thread)
        self._queue: deque[_Message] = deque()
        self._queued_frames = 0
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._rings: dict[str, FrameRing] = {}
        self._clips: dict[str, _Clip] = {}
        # Adopting a lost camera's clips decodes and uploads whole files (seconds for a long
        # 1080p clip): on a worker of its own, so the evidence thread keeps taking live frames.
        self._adoptions: queue.SimpleQueue[_AdoptWork] = queue.SimpleQueue()
        self._adopter = threading.Thread(target=self._adopt_run, name="evidence-adopt", daemon=True)
        self._thread = threading.Thread(target=self._run, name="evidence", daemon=True)
        self._adopter.start()
        self._thread.start()
        if recovery.failed:  # a full disk must not stop the start: tried again on the adopter
            self._note_unstored(recovery.failed)
            self._retry_recovery(_Recover(frozenset(recovery.failed)))

    # -- analysis side: a queue append (or, with on_full="wait", a wait for room) -------------

    def _full(self, size: int) -> bool:
        return self._queued_frames > 0 and (
            self._queued_frames >= self._max_frames or self._queued_bytes + size > self._max_bytes
        )

    def observe(self, frame: Frame, tracked: TrackedFrame) -> None:
        """Queue a frame for the buffer and the clips in progress.

        When the queue is full the frame is dropped (counted, logged), or with ``on_full="wait"``
        this waits for room. With clips off nothing is queued: the buffer exists only for clips,
        and JPEG-encoding every frame into it cost the evidence thread a few percent of a core.
        """
        size = int(frame.image.nbytes)
        with self._cond:
            self._stats.frames_observed += 1
            if not self._config.clips:
                return
            if self._wait_when_full:
                while self._full(size) and not self._stopping:
                    self._cond.wait()
            if self._stopping:
                return
            if self._full(size):
                self._stats.frames_dropped += 1
                dropped = self._stats.frames_dropped
            else:
                self._queue.append(_Observed(frame, tracked))
                self._queued_frames += 1
                self._queued_bytes += size
                self._cond.notify_all()
                return
        if dropped == 1 or dropped % 100 == 0:
            _log.warning(
                "evidence thread behind: %d frame(s) dropped from clips so far (camera %s)",
                dropped,
                frame.camera_id,
            )

    def _send(self, message: _Message) -> None:
        with self._cond:
            if self._stopping:
                _log.warning("evidence recorder closed: %s ignored", type(message).__name__)
                return
            self._queue.append(message)
            self._cond.notify_all()

    def open_clip(self, incident: Incident) -> None:
        """Start the incident's clip (from the buffered frames) if clips are on."""
        if self._config.clips:
            self._send(_Open(incident))

    def close_clip(self, incident: Incident) -> None:
        """The incident ended (``ended_at`` set): its clip runs ``post_seconds`` more."""
        if self._config.clips:
            self._send(_Close(incident))

    def end_camera(self, camera_id: str) -> None:
        """The camera stopped (removed, handed over): no frame of it will come, so the clips of
        its closed incidents finish now, short of ``post_seconds``. Under ``serve --cluster``
        they must be stored before the camera's lease goes to its next owner (:meth:`flush`
        waits for that); otherwise the fence would refuse them. Its pre-roll buffer is let go."""
        if self._config.clips:
            self._send(_EndCamera(camera_id))

    def drop_camera(self, camera_id: str) -> None:
        """This process lost the camera (``serve --cluster``: its lease expired under it): its
        clips in progress are closed where they are, not stored (the fence would refuse them),
        and let go, so the camera's next owner finishes them (:meth:`adopt_clips`), and its
        pre-roll buffer is let go."""
        if self._config.clips:
            self._send(_DropCamera(camera_id))

    def adopt_clips(self, camera_id: str, *, reason: str, previous_owner: str | None) -> None:
        """This process now owns ``camera_id``: finish the clips its previous owner left in the
        (shared) spool, chaining ``reason`` (:func:`~.clips.adopt_clips`), on the recorder's
        adoption worker (salvage and upload never hold up the live clips). A clip another
        process still holds (an owner frozen past its lease), or one a storage or database
        error kept from being stored, is tried again 1 s later, then 2 s, ... up to 30 s
        apart, until it is stored, the fence refuses (this process lost the camera) or this
        recorder closes; the next start's recovery takes what is left then."""
        self._send(_Adopt(camera_id, reason, previous_owner))

    def record_still(
        self,
        incident_id: str,
        frame: Frame,
        tracked: TrackedFrame,
        *,
        camera_id: str,
        at: float,
        highlight: Sequence[int] = (),
    ) -> None:
        """Write an incident's stills from this frame, then point the stored incident at them.

        The annotated still (replacing an earlier one of the incident atomically), the clean
        still, and the sealed original when originals are kept. Send it after the incident's
        row is stored: the row gets the annotated still's key once the file is written.

        Args:
            incident_id: The incident (already stored).
            frame: The frame of the still.
            tracked: The tracker's output for it (where the heads are, what is drawn).
            camera_id: Camera key (storage key).
            at: The incident's start (storage key).
            highlight: Track ids drawn as the incident's subjects.
        """
        self._send(_Still(incident_id, camera_id, at, frame, tracked, frozenset(highlight)))

    def flush(self, timeout: float | None = None, *, adoptions: bool = False) -> bool:
        """Wait until everything sent so far is handled (clips still open stay open).

        Args:
            timeout: Seconds to wait at most.
            adoptions: Also wait for the adoptions sent so far (their first try; a camera
                stopping waits only for its own clips, not for another camera's adoption).

        Returns:
            Whether it was handled within ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        done = threading.Event()
        self._send(_Barrier(done))
        if not done.wait(timeout):
            return False
        if not adoptions:
            return True
        adopted = threading.Event()
        self._adoptions.put(_Barrier(adopted))
        return adopted.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float | None = None) -> None:
        """Handle what is queued, finish every clip with the frames it has, stop the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            _log.error("evidence thread still busy after %s s; clips may be incomplete", timeout)
        self._adoptions.put(None)  # after the evidence thread: it forwards adoptions here
        self._adopter.join(timeout)

    @property
    def stats(self) -> RecorderStats:
        """A copy of the counters."""
        with self._cond:
            return dataclasses.replace(
                self._stats, buffered_bytes={c: r.nbytes for c, r in self._rings.items()}
            )

    # -- evidence thread -----------------------------------------------------------------------

    def _next(self) -> _Message | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            message = self._queue.popleft()
            if isinstance(message, _Observed):
                self._queued_frames -= 1
                self._queued_bytes -= int(message.frame.image.nbytes)
                if self._wait_when_full:
                    self._cond.notify_all()  # a producer may be waiting for room
            return message

    def _run(self) -> None:
        while (message := self._next()) is not None:
            try:
                self._handle(message)
            except Exception:  # the thread must outlive any one bad frame or write
                _log.exception("evidence thread: %s failed", type(message).__name__)
                with self._cond:
                    self._stats.errors += 1
        # At shutdown each open clip is finished on its own: one that fails in a way _finish
        # does not expect (a backend's raw error) must not end the thread before the others
        # are stored; its file stays in the spool for the next start's recovery.
        for clip in list(self._clips.values()):
            try:
                self._finish(clip)
            except Exception:
                _log.exception(
                    "incident %s: finishing its clip at shutdown failed", clip.incident.id
                )
                with self._cond:
                    self._stats.errors += 1

    def _handle(self, message: _Message) -> None:
        if isinstance(message, _Observed):
            self._on_frame(message.frame, message.tracked)
        elif isinstance(message, _Open):
            self._on_open(message.incident)
        elif isinstance(message, _Close):
            self._on_close(message.incident)
        elif isinstance(message, _Still):
            self._on_still(message)
        elif isinstance(message, _EndCamera):
            for clip in [
                c for c in self._clips.values() if c.incident.camera_id == message.camera_id
            ]:
                if clip.incident.ended_at is not None:
                    self._finish(clip)
            self._forget_ring(message.camera_id)
        elif isinstance(message, _DropCamera):
            self._on_drop(message.camera_id)
            self._forget_ring(message.camera_id)
        elif isinstance(message, _Adopt | _Recover):
            self._on_adopt(message)
        else:
            message.done.set()

    def _ring(self, camera_id: str) -> FrameRing:
        ring = self._rings.get(camera_id)
        if ring is None:
            ring = FrameRing(
                self._config.buffer_seconds,
                int(self._config.buffer_max_mb * _MIB),
                self._config.buffer_format,
            )
            with self._cond:  # `stats` iterates the rings from other threads
                self._rings[camera_id] = ring
        return ring

    def _forget_ring(self, camera_id: str) -> None:
        """Let go of a stopped camera's pre-roll (up to ``buffer_max_mb``): a camera removed
        from the site never sends the frame that would evict it, so it was kept for ever. Its
        clips are finished (or let go) first; one still open (its incident not ended) takes
        the camera's next frames into a new ring, as after any restart."""
        with self._cond:  # `stats` iterates the rings from other threads
            self._rings.pop(camera_id, None)

    def _on_frame(self, frame: Frame, tracked: TrackedFrame) -> None:
        entry = self._ring(frame.camera_id).push(frame, tracked)
        for clip in [c for c in self._clips.values() if c.incident.camera_id == frame.camera_id]:
            self._offer(clip, entry, frame.image)

    def _fps(self, camera_id: str) -> float:
        if self._config.clip_fps is not None:
            return self._config.clip_fps
        frames = self._ring(camera_id).since(float("-inf"))
        gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(frames)]
        gaps = [g for g in gaps if g > 0]
        return 1.0 / statistics.median(gaps) if gaps else _DEFAULT_FPS

    def _on_open(self, incident: Incident) -> None:
        if incident.id in self._clips:
            return
        part = self._spool / f"{incident.id}{PART_SUFFIX}"
        window_start = incident.started_at - self._config.pre_seconds
        interval = 1.0 / self._config.clip_fps if self._config.clip_fps else 0.0
        # ``max_clip_seconds`` is measured from the first frame written (see ``_encode``), not
        # from ``window_start``: the rule fires ``min_duration`` after ``started_at``, so the
        # buffer may no longer hold ``window_start``; measured from there the clip was cut short,
        # or had no frame at all (and was silently dropped) once the buffer's oldest frame was
        # past ``window_start + max_clip_seconds``.
        clip = _Clip(
            incident=incident,
            window_start=window_start,
            limit=float("inf"),
            part=part,
            lock=PartLock(part),
            interval=interval,
        )
        self._clips[incident.id] = clip
        for entry in self._ring(incident.camera_id).since(window_start):
            if incident.id not in self._clips:
                break  # reached its limit already
            self._offer(clip, entry, None)

    def _on_close(self, incident: Incident) -> None:
        clip = self._clips.get(incident.id)
        if clip is None:
            return
        clip.incident = incident
        end = (incident.ended_at or incident.started_at) + self._config.post_seconds
        clip.limit = min(clip.limit, end)
        if clip.last_written >= clip.limit:
            self._finish(clip)

    def _offer(self, clip: _Clip, entry: BufferedFrame, image: Image | None) -> None:
        """Add one buffered frame to a clip, or finish the clip once past its window."""
        if entry.timestamp < clip.window_start:
            return
        if entry.timestamp > clip.limit:
            self._finish(clip)
            return
        if clip.interval and entry.timestamp - clip.last_written < 0.75 * clip.interval:
            return
        try:
            self._encode(clip, entry, image if image is not None else entry.image())
        except (SafewatchError, av.FFmpegError, OSError, ValueError) as exc:
            self._abandon(clip, exc)

    def _encode(self, clip: _Clip, entry: BufferedFrame, picture: Image) -> None:
        camera_id = clip.incident.camera_id
        if clip.encoder is None:
            clip.limit = min(clip.limit, entry.timestamp + self._config.max_clip_seconds)
            info = ClipInfo(clip.incident.id, camera_id, clip.incident.started_at, 0.0)
            fps = self._fps(camera_id)
            clip.encoder = ClipEncoder(clip.part, info, fps=fps, crf=self._crf)
            if self._key is not None:
                clip.original_bytes = io.BytesIO()
                clip.original = ClipEncoder(clip.original_bytes, info, fps=fps, crf=self._crf)
        shown = anonymise_heads(picture, entry.tracked, self._privacy_for(camera_id))
        if self._config.annotate_clips:
            zones = self._zones_for(camera_id) if self._zones_for else ()
            shown = draw_overlay(shown, entry.tracked, zones, set(clip.incident.track_ids))
        clip.encoder.add(shown, entry.timestamp)
        if clip.original is not None:
            clip.original.add(picture, entry.timestamp)
        clip.last_written = entry.timestamp

    def _on_drop(self, camera_id: str) -> None:
        for clip in [c for c in self._clips.values() if c.incident.camera_id == camera_id]:
            self._clips.pop(clip.incident.id, None)
            try:
                if clip.encoder is not None:
                    clip.encoder.finish()  # a complete file for the next owner to store
                if clip.original is not None:
                    clip.original.abort()  # sealed originals are only kept by their writer
            except (av.FFmpegError, OSError) as exc:
                _log.warning("incident %s: closing its dropped clip: %s", clip.incident.id, exc)
            finally:
                clip.lock.release()
            _log.warning(
                "incident %s: camera %s lost; its clip is left in %s for the next owner",
                clip.incident.id,
                camera_id,
                self._spool,
            )

    def _on_adopt(self, message: _Adopt | _Recover) -> None:
        """Hand the adoption (or recovery) to its worker, with this thread's clips in progress
        to skip."""
        self._adoptions.put((message, frozenset(self._clips)))

    def _adopt_run(self) -> None:
        while (work := self._adoptions.get()) is not None:
            if isinstance(work, _Barrier):
                work.done.set()
                continue
            message, skip = work
            try:
                if isinstance(message, _Recover):
                    self._recover(message, skip)
                else:
                    self._adopt(message, skip)
            except Exception:  # the worker must outlive any one bad file
                _log.exception("evidence worker: %s failed", message)
                with self._cond:
                    self._stats.errors += 1

    def _note_unstored(self, failed: dict[str, str]) -> None:
        """Log and count each clip left unstored once (a full disk fails every try until space
        is freed)."""
        for name, why in sorted(failed.items()):
            if name not in self._unstored:
                self._unstored.add(name)
                with self._cond:
                    self._stats.errors += 1
                _log.warning(
                    "interrupted clip %s not stored yet (%s); kept in %s and tried again every "
                    "%.0f s at most",
                    name,
                    why,
                    self._spool,
                    _RECOVER_RETRY_CAP,
                )

    def _recover(self, message: _Recover, skip: frozenset[str]) -> None:
        """Another try at clips that could not be stored (:func:`~.clips.recover_clips`)."""
        live = {f"{incident_id}{PART_SUFFIX}" for incident_id in skip}
        recovery = recover_clips(
            self._spool, self._store, self._repository, only=message.parts - live
        )
        self._note_unstored(recovery.failed)
        left = frozenset(recovery.failed) | frozenset(recovery.busy) | (message.parts & live)
        self._unstored -= message.parts - left
        if left:
            self._retry_recovery(_Recover(left, message.attempt + 1))

    def _retry_recovery(self, message: _Recover) -> None:
        delay = min(_RECOVER_RETRY_CAP, 2.0**message.attempt)
        timer = threading.Timer(delay, self._retry, (message,))
        timer.daemon = True
        timer.start()

    def _adopt(self, message: _Adopt, skip: frozenset[str]) -> None:
        try:
            adoption = adopt_clips(
                self._spool,
                self._store,
                self._repository,
                message.camera_id,
                reason=message.reason,
                previous_owner=message.previous_owner,
                skip=skip,
            )
        except FencedWrite as exc:  # the camera moved on: the rest is its new owner's
            _log.warning("camera %s: clips left by its previous owner: %s", message.camera_id, exc)
            return
        if adoption.completed or adoption.unusable:
            _log.warning(
                "camera %s: %d clip(s) left by %s stored, %d unusable (%s)",
                message.camera_id,
                len(adoption.completed),
                message.previous_owner or "a previous owner",
                len(adoption.unusable),
                message.reason,
            )
        if adoption.pending:
            with self._cond:
                self._stats.errors += len(adoption.failed)
            if adoption.failed and message.attempt + 1 >= _ADOPT_MAX_FAILED_TRIES:
                _log.error(
                    "camera %s: %d clip(s) left by %s still not stored after %d tries, left in "
                    "the spool for the camera's next claim or start: %s",
                    message.camera_id,
                    len(adoption.failed),
                    message.previous_owner or "a previous owner",
                    message.attempt + 1,
                    "; ".join(f"{i}: {e}" for i, e in sorted(adoption.failed.items())),
                )
                return
            delay = min(_ADOPT_RETRY_CAP, 2.0**message.attempt)
            retry = dataclasses.replace(message, attempt=message.attempt + 1)
            timer = threading.Timer(delay, self._retry, (retry,))
            timer.daemon = True
            timer.start()

    def _retry(self, message: _Message) -> None:
        with self._cond:
            if self._stopping:
                return
        self._send(message)

    def _abandon(self, clip: _Clip, exc: BaseException) -> None:
        """Drop a clip that cannot be encoded.

        On an error of the file itself (``OSError``, PyAV's ``av.error.OSError`` included: a
        full disk) the fragments already flushed are readable evidence, so the file is closed
        without flushing the encoder and left in the spool, where recovery salvages and stores
        it (tried again until space is back); deleting it threw away the whole clip. On any
        other error the file goes and the incident keeps no clip.
        """
        self._clips.pop(clip.incident.id, None)
        for encoder in (clip.encoder, clip.original):
            if encoder is not None:
                encoder.abort()
        keep = isinstance(exc, OSError) and clip.encoder is not None and clip.part.exists()
        if keep:
            _log.warning(
                "incident %s: clip cut short: %s; what was written is kept in %s and stored "
                "once it can be",
                clip.incident.id,
                exc,
                self._spool,
            )
        else:
            _log.warning("incident %s: clip abandoned: %s", clip.incident.id, exc)
            clip.part.unlink(missing_ok=True)
        clip.lock.release()
        with self._cond:
            self._stats.clips_failed += 1
        if keep:
            self._retry_recovery(_Recover(frozenset({clip.part.name})))

    def _finish(self, clip: _Clip) -> None:
        """Close the clip's file, store it, then point the incident at it.

        If storing or the database fails, the finished file stays in the spool, where recovery
        stores it and sets the reference (tried again while the recorder runs, then at the next
        start).
        """
        self._clips.pop(clip.incident.id, None)
        incident = clip.incident
        try:
            frames = clip.encoder.finish() if clip.encoder is not None else 0
        except (av.FFmpegError, OSError) as exc:
            self._abandon(clip, exc)
            return
        try:
            if frames == 0:
                # Not an error of the store, but the incident keeps no clip: say so and count it
                # with the failed clips, rather than dropping it without a trace.
                _log.warning(
                    "incident %s: no clip: no frame of camera %s was buffered or arrived "
                    "between its start and its end",
                    incident.id,
                    incident.camera_id,
                )
                clip.part.unlink(missing_ok=True)
                with self._cond:
                    self._stats.clips_failed += 1
                return
            key = self._store.write_file(
                incident.id,
                clip.part,
                camera_id=incident.camera_id,
                at=incident.started_at,
                suffix=CLIP_SUFFIX,
            )
            self._repository.attach_evidence(incident.id, clip=key)
            clip.part.unlink(missing_ok=True)
            with self._cond:
                self._stats.clips_written += 1
        except SafewatchError as exc:
            _log.warning(
                "incident %s: clip not stored (%s); kept in %s and tried again later",
                incident.id,
                exc,
                self._spool,
            )
            with self._cond:
                self._stats.clips_failed += 1
            clip.lock.release()
            self._retry_recovery(_Recover(frozenset({clip.part.name})))
            return
        finally:
            clip.lock.release()
        if clip.original is not None and clip.original_bytes is not None:
            try:
                clip.original.finish()
                self._seal(
                    incident.id,
                    incident.camera_id,
                    incident.started_at,
                    clip.original_bytes.getvalue(),
                    ORIGINAL_CLIP_SUFFIX,
                )
            except (SafewatchError, av.FFmpegError) as exc:
                _log.warning("incident %s: sealed original clip not stored: %s", incident.id, exc)
                self._failed("original")

    def _seal(self, incident_id: str, camera_id: str, at: float, data: bytes, suffix: str) -> None:
        assert self._key is not None
        key = self._store.key_for(incident_id, camera_id=camera_id, at=at, suffix=suffix)
        self._store.write_bytes(
            incident_id,
            seal(data, self._key, context=key),
            camera_id=camera_id,
            at=at,
            suffix=suffix,
            content_type="application/octet-stream",
        )
        with self._cond:
            self._stats.originals_sealed += 1

    def _on_still(self, message: _Still) -> None:
        frame = message.frame
        clean = anonymise_heads(frame.image, message.tracked, self._privacy_for(frame.camera_id))
        zones = self._zones_for(frame.camera_id) if self._zones_for else ()
        try:
            annotated = draw_overlay(clean, message.tracked, zones, set(message.highlight))
            still = self._store.write_still(
                message.incident_id, annotated, camera_id=message.camera_id, at=message.at
            )
            self._repository.attach_evidence(message.incident_id, snapshot=still)
        except (SafewatchError, ValueError) as exc:
            _log.warning("incident %s: no evidence still: %s", message.incident_id, exc)
            self._failed("still")
        kind: Literal["still", "original"] = "still"
        try:
            self._store.write_bytes(
                message.incident_id,
                _jpeg(clean),
                camera_id=message.camera_id,
                at=message.at,
                suffix=CLEAN_STILL_SUFFIX,
            )
            with self._cond:
                self._stats.stills_written += 1
            if self._key is not None:
                kind = "original"
                self._seal(
                    message.incident_id,
                    message.camera_id,
                    message.at,
                    _jpeg(frame.image),
                    ORIGINAL_STILL_SUFFIX,
                )
        except SafewatchError as exc:
            what = "clean still" if kind == "still" else "sealed original still"
            _log.warning("incident %s: %s not stored: %s", message.incident_id, what, exc)
            self._failed(kind)

    def _failed(self, kind: Literal["still", "original"]) -> None:
        """Count a still or sealed original that could not be stored, by kind: ``/metrics``
        (``safewatch_evidence_failures_total``) and ``/readyz`` read these, so a full evidence
        disk is seen, not only logged."""
        with self._cond:
            self._stats.errors += 1
            if kind == "still":
                self._stats.stills_failed += 1
            else:
                self._stats.originals_failed += 1


def _jpeg(image: Image) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV encodes any (H, W, 3) uint8 image
        raise ValueError(f"cannot encode an image of shape {image.shape}")
    return encoded.tobytes()
