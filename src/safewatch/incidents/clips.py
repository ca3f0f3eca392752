"""Evidence clips: H.264 MP4 encoding that survives a crash, and recovery of interrupted clips.

A clip is written frame by frame while its incident goes on (it ends ``post_seconds`` after the
incident), so a process can die in the middle of one. The file is therefore *fragmented* MP4
(``frag_keyframe+empty_moov``): the header comes first and every keyframe starts a self-contained
fragment (one every :data:`KEYFRAME_SECONDS`), so a file cut off at any byte still holds every
complete fragment before the cut. Browsers play fragmented MP4 like any MP4 (H.264 High,
``yuv420p``). B-frames are off: presentation order equals decode order, so the first frame is at
time 0 and a cut never strands a frame whose reference was lost.

While being written a clip is ``<spool>/<incident id>.mp4.part``, and its writer holds an
exclusive ``flock`` on it; the lock dies with the process. :func:`recover_clips` (run when an
:class:`~safewatch.incidents.recorder.EvidenceRecorder` starts) takes every ``.part`` nobody
holds, remuxes the packets that still decode into a complete clip, stores it and points the
incident at it, or deletes the file when nothing decodes. Either way the incident row, written
before its clip started, stays; it never points at a partial file.

Each clip carries its identity and the wall time of its first frame in the MP4 ``comment`` tag
(JSON), so recovery can place an orphan clip and a reviewer can map clip time to wall time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import cv2
import numpy as np

from safewatch.domain import Image, Incident
from safewatch.errors import FencedWrite, NotFound, SafewatchError, StorageError
from safewatch.incidents.evidence import EvidenceStore
from safewatch.storage import IncidentRepository

__all__ = [
    "CLIP_RECOVERED",
    "CLIP_SUFFIX",
    "CLIP_UNRECOVERABLE",
    "KEYFRAME_SECONDS",
    "PART_SUFFIX",
    "Adoption",
    "ClipEncoder",
    "ClipInfo",
    "PartLock",
    "Recovery",
    "adopt_clips",
    "read_clip_info",
    "recover_clips",
    "salvage",
    "sweep_clips",
]

_log = logging.getLogger(__name__)

CLIP_SUFFIX = ".mp4"
PART_SUFFIX = ".mp4.part"
KEYFRAME_SECONDS = 2.0
"""Seconds between keyframes: at most this much of a clip is lost when the process dies."""

_TIME_BASE = Fraction(1, 1000)
_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
_SALVAGE = ".salvage"


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """What a clip says about itself (its ``comment`` tag).

    Attributes:
        incident_id: The incident the clip belongs to.
        camera_id: Camera key.
        at: The incident's start (wall-clock seconds): with the two above, the clip's storage key.
        start: Wall-clock seconds of the clip's first frame (clip time 0).
    """

    incident_id: str
    camera_id: str
    at: float
    start: float

    def to_comment(self) -> str:
        """The JSON written into the MP4."""
        return json.dumps({"safewatch": 1, **dataclasses.asdict(self)}, sort_keys=True)


def _parse_comment(text: str | None) -> ClipInfo | None:
    if not text:
        return None
    try:
        data = json.loads(text)
        return ClipInfo(
            incident_id=str(data["incident_id"]),
            camera_id=str(data["camera_id"]),
            at=float(data["at"]),
            start=float(data["start"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def read_clip_info(path: Path) -> ClipInfo | None:
    """The :class:`ClipInfo` of a clip file, or ``None`` if it has none or does not open."""
    try:
        with av.open(str(path)) as container:
            return _parse_comment(container.metadata.get("comment"))
    except (av.FFmpegError, OSError):
        return None


class ClipEncoder:
    """Encode BGR frames stamped with wall-clock times into a fragmented H.264 MP4.

    Frames may come at any rate (a live camera drops some): each is shown at its own time, relative
    to the first. Frames whose size differs from the first (a camera changed resolution) are
    resized to it.

    Args:
        target: A file path, or a seekable binary stream (sealed originals are encoded in memory
            so their plaintext never reaches the disk).
        info: Identity written into the file; its ``start`` is replaced by the first frame's time.
        fps: Nominal frame rate (sets the keyframe interval; timing comes from the frames).
        crf: x264 quality (lower is better and bigger; 23 is x264's default).

    Raises:
        StorageError: The file cannot be created.
    """

    def __init__(
        self, target: Path | BinaryIO, info: ClipInfo, *, fps: float, crf: int = 23
    ) -> None:
        self._info = info
        self._fps = fps
        self._crf = crf
        try:
            self._container = av.open(
                str(target) if isinstance(target, Path) else target,
                mode="w",
                format="mp4",
                options={"movflags": _MOVFLAGS, "flush_packets": "1"},
            )
        except (av.FFmpegError, OSError) as exc:
            raise StorageError(f"cannot write clip {target}: {exc}") from exc
        self._stream: Any = None
        self._size = (0, 0)
        self._last_pts = -1
        self.frames = 0
        self.first_timestamp: float | None = None
        self.last_timestamp: float | None = None

    def _open_stream(self, image: Image, timestamp: float) -> None:
        height, width = image.shape[:2]
        self._size = (width - width % 2, height - height % 2)
        info = dataclasses.replace(self._info, start=timestamp)
        self._container.metadata["comment"] = info.to_comment()
        rate = Fraction(self._fps).limit_denominator(1000)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.time_base = _TIME_BASE
        stream.codec_context.time_base = _TIME_BASE
        stream.codec_context.gop_size = max(1, round(self._fps * KEYFRAME_SECONDS))
        stream.options = {"crf": str(self._crf), "preset": "veryfast", "bf": "0"}
        self._stream = stream

    def add(self, image: Image, timestamp: float) -> None:
        """Append a frame shown at ``timestamp`` (wall-clock seconds); later ones must be later."""
        if self._stream is None:
            self._open_stream(image, timestamp)
            self.first_timestamp = timestamp
        assert self.first_timestamp is not None
        width, height = self._size
        if image.shape[1] != width or image.shape[0] != height:
            if abs(image.shape[1] - width) <= 1 and abs(image.shape[0] - height) <= 1:
                image = image[:height, :width]  # odd size: drop the last row/column
            else:
                image = np.asarray(cv2.resize(image, (width, height)), np.uint8)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        millis = max(round((timestamp - self.first_timestamp) * 1000), self._last_pts + 1)
        frame.pts = millis
        frame.time_base = _TIME_BASE
        self._last_pts = millis
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1
        self.last_timestamp = timestamp

    def finish(self) -> int:
        """Flush the encoder and close the file.

        Returns:
            Frames written (0: the file holds no video and should be discarded).
        """
        if self._stream is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        self._container.close()
        return self.frames

    def abort(self) -> None:
        """Close without flushing (the caller discards the file)."""
        with contextlib.suppress(av.FFmpegError, OSError):
            self._container.close()


class PartLock:
    """An exclusive ``flock`` on a clip being written, released on :meth:`release` or death.

    ``flock`` locks belong to an open file description, so the lock also keeps a second recorder
    in the same process (another camera thread) from recovering a clip still being written.
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | (os.O_CREAT if create else 0), 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise

    @classmethod
    def try_acquire(cls, path: Path, *, create: bool = True) -> PartLock | None:
        """The lock, or ``None`` when another writer holds it.

        Raises:
            FileNotFoundError: ``create`` is false and the file is gone.
        """
        try:
            return cls(path, create=create)
        except BlockingIOError:
            return None

    def release(self) -> None:
        """Let go (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def salvage(part: Path, target: Path) -> int:
    """Copy every packet of ``part`` that still decodes into a new clip at ``target``.

    Packets are remuxed, not re-encoded, in order, up to the first that fails to demux or decode
    (the fragment the crash cut through).

    Only an error *reading* ``part`` is that cut. One *writing* ``target`` (PyAV's
    ``av.error.OSError`` is an ``FFmpegError`` too: ENOSPC from ``mux``) says nothing about
    ``part``: taken for the cut, it stored a clip cut short at the full disk, partly
    undecodable, and the caller deleted the complete original.

    Returns:
        Frames kept; 0 means nothing was salvageable and ``target`` does not exist.

    Raises:
        StorageError: ``target`` cannot be written (a full disk); it is removed.
    """
    kept = 0
    try:
        source = av.open(str(part))
    except (av.FFmpegError, OSError):
        return 0
    output: Any = None
    try:
        if not source.streams.video:
            return 0
        stream = source.streams.video[0]
        decoder = stream.codec_context
        out_stream: Any = None
        packets = source.demux(stream)
        while True:
            try:
                packet = next(packets)
                if packet.dts is None or packet.size == 0:
                    continue
                decoder.decode(packet)
            except StopIteration:
                break
            except (av.FFmpegError, EOFError, ValueError):
                break  # the cut: keep what came before it
            if output is None:
                output = av.open(
                    str(target), mode="w", format="mp4", options={"movflags": _MOVFLAGS}
                )
                output.metadata.update(source.metadata)
                out_stream = output.add_stream_from_template(stream)
            packet.stream = out_stream
            output.mux(packet)
            kept += 1
        if output is not None:
            closing, output = output, None
            closing.close()
    except (av.FFmpegError, OSError) as exc:
        target.unlink(missing_ok=True)
        raise StorageError(f"cannot write the salvaged copy of {part.name}: {exc}") from exc
    finally:
        source.close()
        if output is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                output.close()
            target.unlink(missing_ok=True)
    if kept == 0:
        target.unlink(missing_ok=True)
    return kept


@dataclass
class Recovery:
    """What :func:`recover_clips` did.

    Attributes:
        completed: Evidence keys of clips salvaged and stored.
        removed: Partial files deleted (nothing decodable, or not a clip).
        busy: Partial files left alone because a live writer holds them.
        failed: Partial file -> the storage or database error that kept it from being stored
            (a full disk); the file stays in the spool for another try.
    """

    completed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def recover_clips(
    spool: Path,
    store: EvidenceStore,
    repository: IncidentRepository,
    *,
    only: Collection[str] | None = None,
) -> Recovery:
    """Complete or delete the partial clips left in ``spool`` by a process that died.

    Each clip is one try of its own: a storage or database error on one (a full disk, an
    unreachable bucket) is noted in :attr:`Recovery.failed` and its file stays, never raised:
    the recorder calling this at start must not keep the server from starting (a restart loop
    with no analysis at all), and tries the failed ones again later.

    Args:
        spool: The recorder's folder for clips in progress.
        store: Where completed clips go.
        repository: Incidents to point at their recovered clip.
        only: Try these part file names only (a retry), and leave the rest of the spool (and
            any ``.salvage`` of another writer) alone; ``None``: the whole spool (at start).

    Returns:
        What was completed, removed, skipped and left after a failure.
    """
    report = Recovery()
    if not spool.is_dir():
        return report
    if only is None:
        for stale in spool.glob(f"*{_SALVAGE}"):
            stale.unlink(missing_ok=True)
        parts = sorted(spool.glob(f"*{PART_SUFFIX}"))
    else:
        parts = [spool / name for name in sorted(only)]
    for part in parts:
        try:
            lock = PartLock.try_acquire(part, create=only is None)
        except FileNotFoundError:  # stored or removed since
            continue
        if lock is None:
            report.busy.append(part.name)
            continue
        try:
            key = _recover_one(part, store, repository).key
        except SafewatchError as exc:
            report.failed[part.name] = str(exc)
            continue
        finally:
            lock.release()
        if key is None:
            part.unlink(missing_ok=True)
            report.removed.append(part.name)
        else:
            report.completed.append(key)
    if report.completed or report.removed:
        _log.warning(
            "evidence recovery: %d interrupted clip(s) completed, %d removed",
            len(report.completed),
            len(report.removed),
        )
    return report


@dataclass(frozen=True, slots=True)
class _Recovered:
    """One interrupted clip's outcome: its stored key and frames, or why nothing was stored."""

    key: str | None
    frames: int = 0
    why: str = ""


def _incident_of(part: Path, repository: IncidentRepository) -> Incident | None:
    try:
        return repository.get(part.name[: -len(PART_SUFFIX)])
    except NotFound:
        return None


def _recover_one(
    part: Path,
    store: EvidenceStore,
    repository: IncidentRepository,
    stored: Callable[[int], None] | None = None,
) -> _Recovered:
    """Salvage ``part`` into evidence and attach it to its incident. ``stored`` (given the
    frame count) runs after the attach and *before* the file goes, so a failure there (the
    chain entry saying why the clip was recovered) leaves the file for a retry instead of a
    clip with no recorded reason."""
    incident_id = part.name[: -len(PART_SUFFIX)]
    info = read_clip_info(part)
    incident = _incident_of(part, repository)
    if incident is not None:
        camera_id, at = incident.camera_id, incident.started_at
    elif info is not None:
        camera_id, at = info.camera_id, info.at
    else:
        _log.warning("interrupted clip %s: no incident and no clip info, removed", part.name)
        return _Recovered(None, why="no incident and no clip info")
    salvaged = part.with_name(part.name + _SALVAGE)
    frames = salvage(part, salvaged)
    if frames == 0:
        _log.warning("interrupted clip %s: nothing decodable, removed", part.name)
        return _Recovered(None, why=f"nothing decodable in {part.stat().st_size} bytes")
    try:
        key = store.write_file(
            incident_id, salvaged, camera_id=camera_id, at=at, suffix=CLIP_SUFFIX, move=True
        )
    except SafewatchError:
        salvaged.unlink(missing_ok=True)
        raise
    if incident is not None:
        # Only the clip: the incident may still be open (a clip cut short by a full disk is
        # recovered while it runs), and an upsert of this copy would undo the manager's later
        # changes.
        repository.attach_evidence(incident_id, clip=key)
        _log.warning("interrupted clip of incident %s completed: %d frames", incident_id, frames)
    else:
        _log.warning("interrupted clip %s kept as %s: its incident is not stored", part.name, key)
    if stored is not None:
        stored(frames)
    part.unlink(missing_ok=True)
    return _Recovered(key, frames)


CLIP_RECOVERED = "clip.recovered"
"""Chain entry of a clip its writer never finished, stored by a camera's next owner."""
CLIP_UNRECOVERABLE = "clip.unrecoverable"
"""Chain entry of such a clip that could not be stored, with why."""


@dataclass
class Adoption:
    """What :func:`adopt_clips` did with one camera's interrupted clips.

    Attributes:
        completed: Incident ids whose clip was salvaged, stored and attached.
        unusable: Incident id -> why its clip was removed instead.
        busy: Incident ids whose clip a live writer still holds (try again later).
        failed: Incident id -> the storage or database error that kept its clip from being
            stored; the file stays in the spool (try again later).
    """

    completed: list[str] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """Whether some clip is left for another try (held by a writer, or a write failed)."""
        return bool(self.busy or self.failed)


def adopt_clips(
    spool: Path,
    store: EvidenceStore,
    repository: IncidentRepository,
    camera_id: str,
    *,
    reason: str,
    previous_owner: str | None,
    skip: Collection[str] = (),
) -> Adoption:
    """Finish the clips of ``camera_id``'s closed incidents that another writer left in ``spool``.

    Under ``serve --cluster`` the folder is shared and a camera's clips are written by its owner.
    An owner that died (or froze past its lease, then let its clips go) leaves ``.part`` files
    nobody else would finish before some analyzer restarts; the camera's next owner calls this:
    each one nobody holds is salvaged up to its last complete fragment, stored (``evidence.
    written``) and attached to its incident (``incident.updated``), and ``clip.recovered`` is
    chained with ``reason`` and ``previous_owner``; one with nothing decodable is removed and
    ``clip.unrecoverable`` chained with why. The writes go through the epoch fence like any of
    the owner's. Clips of open incidents, and of the incident ids in ``skip`` (the caller's own
    clips in progress), are left alone.

    Each clip is one try of its own: a storage or database error on one (an S3 or PostgreSQL
    hiccup) is noted in :attr:`Adoption.failed`, its file stays, and the next clip is tried,
    so one failure never strands the rest; the caller tries the failed ones again later.

    Raises:
        FencedWrite: The fence refused a write: this process no longer owns ``camera_id``, so
            the clips left are its new owner's to finish (the clip being written stays).
    """
    report = Adoption()
    if not spool.is_dir():
        return report
    detail = {"reason": reason, "previous_owner": previous_owner, "camera": camera_id}
    for part in sorted(spool.glob(f"*{PART_SUFFIX}")):
        incident_id = part.name[: -len(PART_SUFFIX)]
        if incident_id in skip:
            continue
        try:
            _adopt_one(part, store, repository, camera_id, detail, report)
        except FencedWrite:
            raise
        except SafewatchError as exc:
            _log.warning("camera %s: clip %s not stored yet: %s", camera_id, part.name, exc)
            report.failed[incident_id] = str(exc)
    return report


def _camera_of(part: Path, incident: Incident | None) -> str | None:
    """The camera a left clip belongs to: its incident's, else its own tag's."""
    if incident is not None:
        return incident.camera_id
    info = read_clip_info(part)
    return None if info is None else info.camera_id


def _adopt_one(
    part: Path,
    store: EvidenceStore,
    repository: IncidentRepository,
    camera_id: str,
    detail: dict[str, Any],
    report: Adoption,
    *,
    closed_only: bool = True,
) -> None:
    """One clip of :func:`adopt_clips` (raises what its writes raise)."""
    incident_id = part.name[: -len(PART_SUFFIX)]
    incident = _incident_of(part, repository)
    if _camera_of(part, incident) != camera_id:
        return  # another camera's, or a clip of an incident never stored
    if closed_only and incident is not None and incident.ended_at is None:
        return
    try:
        lock = PartLock.try_acquire(part, create=False)
    except FileNotFoundError:  # finished by its writer since the listing
        return
    if lock is None:
        report.busy.append(incident_id)
        return
    try:

        def chain(frames: int) -> None:
            if incident is not None:
                repository.record_event(incident_id, CLIP_RECOVERED, {**detail, "frames": frames})

        outcome = _recover_one(part, store, repository, chain)
        if outcome.key is not None:
            report.completed.append(incident_id)
            return
        if incident is not None:  # chained before the file goes: a failure leaves it to retry
            repository.record_event(incident_id, CLIP_UNRECOVERABLE, {**detail, "why": outcome.why})
        part.unlink(missing_ok=True)
        report.unusable[incident_id] = outcome.why
    finally:
        lock.release()


CAMERA_NOT_RUN = "camera_not_run"
"""Reason chained by :func:`sweep_clips`: the clip's camera is disabled or gone from the site."""


def sweep_clips(
    spool: Path,
    store: EvidenceStore,
    repository: IncidentRepository,
    run: Collection[str],
    *,
    quiet_seconds: float,
    stopping: Callable[[], bool] = lambda: False,
) -> dict[str, Adoption]:
    """Finish the clips left in a shared ``spool`` by cameras no analyzer runs any more.

    A camera disabled or removed while its owner was dead is claimed by nobody, so
    :func:`adopt_clips` never runs for it. This takes each ``.part`` whose camera is not in
    ``run`` (the site's enabled cameras), that nobody holds and that nobody wrote to for
    ``quiet_seconds`` (:func:`~safewatch.runtime.recording_link.orphan_quiet_seconds`: an
    owner frozen past its lease still looks alive that long), and stores it or chains
    ``clip.unrecoverable`` as :func:`adopt_clips` does, with reason :data:`CAMERA_NOT_RUN`.
    Its incident may still be open (nobody took the camera over to close it). ``repository``
    should refuse writes for a camera someone owns again
    (:class:`safewatch.cluster.fencing.UnleasedFence`): that camera's clips are then left to
    its owner.

    Returns:
        Per camera swept, what was done (a fence refusal leaves the camera's other clips).
    """
    reports: dict[str, Adoption] = {}
    if not spool.is_dir():
        return reports
    fenced: set[str] = set()
    now = time.time()
    for part in sorted(spool.glob(f"*{PART_SUFFIX}")):
        if stopping():  # a server stopping does not wait for a long round (checked per clip)
            break
        incident_id = part.name[: -len(PART_SUFFIX)]
        try:
            if now - part.stat().st_mtime < quiet_seconds:
                continue
            camera_id = _camera_of(part, _incident_of(part, repository))
        except FileNotFoundError:
            continue
        except SafewatchError as exc:
            _log.warning("clip sweep: %s skipped: %s", part.name, exc)
            continue
        if camera_id is None or camera_id in run or camera_id in fenced:
            continue
        report = reports.setdefault(camera_id, Adoption())
        detail = {"reason": CAMERA_NOT_RUN, "previous_owner": None, "camera": camera_id}
        try:
            _adopt_one(part, store, repository, camera_id, detail, report, closed_only=False)
        except FencedWrite as exc:  # owned again: its owner adopts it
            _log.info("clip sweep: camera %s has an owner again: %s", camera_id, exc)
            fenced.add(camera_id)
        except SafewatchError as exc:
            _log.warning("clip sweep: %s not stored yet: %s", part.name, exc)
            report.failed[incident_id] = str(exc)
    return reports
