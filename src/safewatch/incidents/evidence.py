"""Evidence files (stills, clips, sealed originals) in a local folder or an S3 bucket.

Evidence is what an operator, an auditor or an insurer looks at later, so a file is either complete
or absent: every write goes through a :class:`safewatch.storage.blobs.BlobStore` whose puts are
atomic (a temporary file renamed over the final name in a folder; a single PUT in S3), so a crash
never leaves a half-written JPEG and a failed rewrite keeps the previous version. Files are laid
out as ``<camera>/<YYYY-MM-DD>/<incident id><suffix>`` (UTC date of the frame) so a folder stays
browsable; the keys handed out are relative, so the evidence can move between folders and buckets.

When given an :class:`EvidenceLog` (the incident repository), every write is also recorded, with
the SHA-256 of the bytes written, in the tamper-evidence chain: ``safewatch verify`` can then tell
an edited or deleted file from an intact one.
"""

from __future__ import annotations

import mimetypes
import os
import re
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

import cv2

from safewatch.domain import Image
from safewatch.errors import NotFound, StorageError
from safewatch.storage.blobs import BlobInfo, BlobStore
from safewatch.storage.local_blobs import LocalBlobStore

__all__ = ["JPEG_QUALITY", "EvidenceLog", "EvidenceStore", "is_evidence_key"]

JPEG_QUALITY = 90
"""Enough to read a hard hat's outline on a small CCTV person; a 640x352 still is ~60-90 KB."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9_-]+)+$")
_KEY = re.compile(r"^[^/]+/\d{4}-\d{2}-\d{2}/[^/]+$")
"""The shape :meth:`EvidenceStore.key_for` gives: ``camera/YYYY-MM-DD/name``."""


def is_evidence_key(key: str) -> bool:
    """Whether ``key`` has the shape of an incident's evidence file, unlike the other objects
    kept in the evidence store (``chain-witness/...``, ``_jobs/...``, ``reveal-log.jsonl``)."""
    return _KEY.match(key) is not None


def _safe_part(value: str) -> str:
    """A single path component from a camera or incident id (no separators, no ``..``)."""
    cleaned = _UNSAFE.sub("_", value).strip(".") or "_"
    return cleaned[:128]


class EvidenceLog(Protocol):
    """Where evidence writes are recorded (the tamper-evidence chain, via the repository)."""

    def evidence_written(
        self, incident_id: str, key: str, sha256: str, size: int, *, camera_id: str
    ) -> None:
        """Record that ``key`` of ``incident_id`` (of camera ``camera_id``) now holds ``size``
        bytes hashing to ``sha256``."""
        ...


class EvidenceStore:
    """Evidence files of incidents, in one blob store.

    Args:
        root: The evidence folder (``StorageConfig.evidence_dir`` resolved against the site file),
            created on first write; or a ready blob store (e.g. an S3 bucket, see
            :func:`safewatch.incidents.site_storage.open_site_storage`).
        log: Records each write in the tamper-evidence chain; ``None`` records nothing (a bare
            store, e.g. in tests of other stages).
    """

    def __init__(self, root: Path | BlobStore, *, log: EvidenceLog | None = None) -> None:
        if isinstance(root, str | os.PathLike):
            self.backend: BlobStore = LocalBlobStore(Path(root))
        else:
            self.backend = root
        self.log = log

    @property
    def root(self) -> Path:
        """The evidence folder of a local store.

        Raises:
            StorageError: The evidence is not in a local folder (e.g. S3).
        """
        if isinstance(self.backend, LocalBlobStore):
            return self.backend.root
        raise StorageError(f"evidence is stored in {self.backend.location}, not in a folder")

    @property
    def location(self) -> str:
        """Where the evidence is (folder or ``s3://bucket/prefix/``), for messages."""
        return self.backend.location

    def key_for(self, incident_id: str, *, camera_id: str, at: float, suffix: str) -> str:
        """Key (relative path, POSIX separators) of one evidence file of an incident.

        Args:
            incident_id: The incident's id (file name stem).
            camera_id: Camera key (first folder level).
            at: Frame time, epoch seconds (second folder level: the UTC date).
            suffix: File suffix(es) telling the kind, e.g. ``.jpg``, ``.mp4``, ``.orig.jpg.sealed``.

        Raises:
            ValueError: ``suffix`` is not one or more ``.name`` parts.
        """
        if not _SUFFIX.match(suffix):
            raise ValueError(f"evidence suffix must look like '.jpg' or '.mp4', got {suffix!r}")
        day = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
        name = f"{_safe_part(incident_id)}{suffix}"
        return str(PurePosixPath(_safe_part(camera_id), day, name))

    def still_path(self, incident_id: str, *, camera_id: str, at: float) -> str:
        """Relative path the still of this incident goes to (POSIX separators)."""
        return self.key_for(incident_id, camera_id=camera_id, at=at, suffix=".jpg")

    def write_still(self, incident_id: str, image: Image, *, camera_id: str, at: float) -> str:
        """Write ``image`` as the incident's JPEG still, replacing any earlier one atomically.

        Args:
            incident_id: The incident's id (file name).
            image: ``(H, W, 3)`` BGR ``uint8``, usually from :func:`draw_overlay`.
            camera_id: Camera key (first folder level).
            at: Frame time, epoch seconds (second folder level: the UTC date).

        Returns:
            The still's path relative to the store, as stored on the incident.

        Raises:
            StorageError: The image cannot be encoded or the store is not writable.
        """
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise StorageError(f"cannot encode the evidence still of incident {incident_id}")
        return self.write_bytes(
            incident_id, encoded.tobytes(), camera_id=camera_id, at=at, suffix=".jpg"
        )

    def write_bytes(
        self,
        incident_id: str,
        data: bytes,
        *,
        camera_id: str,
        at: float,
        suffix: str,
        content_type: str | None = None,
    ) -> str:
        """Store ``data`` as an evidence file of the incident, atomically, and record it.

        Returns:
            The file's key (relative path), to store on the incident.

        A file that replaces an earlier one at the same key (a better still) is put back as it
        was when the chain cannot record the new one: the earlier file is recorded, and the
        incident's only still.

        Raises:
            StorageError: The store or the chain cannot be written (then nothing new is kept).
        """
        key = self.key_for(incident_id, camera_id=camera_id, at=at, suffix=suffix)
        kind = content_type or _type_of(key)
        earlier = self._read_if_any(key)
        info = self.backend.put_bytes(key, data, content_type=kind)
        try:
            self._record(incident_id, info, camera_id)
        except StorageError:
            if earlier is not None:
                self.backend.put_bytes(key, earlier, content_type=kind)
            raise
        return key

    def _read_if_any(self, key: str) -> bytes | None:
        """The file at ``key`` before it is replaced, or ``None`` when there is none (or it
        cannot be read: then a failed replacement leaves no file, as for a new one)."""
        if self.log is None:
            return None  # nothing is recorded, so nothing can fail to be
        try:
            with self.backend.open(key) as stream:
                return stream.read()
        except (NotFound, StorageError):
            return None

    def write_file(
        self,
        incident_id: str,
        source: Path,
        *,
        camera_id: str,
        at: float,
        suffix: str,
        content_type: str | None = None,
        move: bool = False,
    ) -> str:
        """Store the file ``source`` (e.g. a finished clip) as evidence, atomically, and record it.

        Args:
            move: Delete ``source`` once it is stored (it was a temporary file).

        Returns:
            The file's key (relative path), to store on the incident.

        Raises:
            StorageError: ``source`` cannot be read, or the store or the chain cannot be written.
        """
        key = self.key_for(incident_id, camera_id=camera_id, at=at, suffix=suffix)
        info = self.backend.put_file(
            key, source, content_type=content_type or _type_of(key), move=move
        )
        self._record(incident_id, info, camera_id)
        return key

    def _record(self, incident_id: str, info: BlobInfo, camera_id: str) -> None:
        if self.log is None or info.sha256 is None:
            return
        try:
            self.log.evidence_written(
                incident_id, info.key, info.sha256, info.size, camera_id=camera_id
            )
        except StorageError:
            # Unrecorded evidence would look forged to `safewatch verify`: keep none instead
            # (write_bytes then puts back a file this one replaced).
            self.backend.delete(info.key)
            raise

    def open(self, relative: str) -> BinaryIO:
        """Stream an evidence file (close it after use).

        Raises:
            NotFound: No such file.
            StorageError: The store cannot be read or the key is invalid.
        """
        return self.backend.open(relative)

    def open_sized(self, relative: str) -> tuple[BinaryIO, int]:
        """:meth:`open`, with the size of the file opened (a still can be replaced between a
        ``stat`` and an ``open``; see :meth:`safewatch.storage.blobs.BlobStore.open_sized`).

        Raises:
            NotFound: No such file.
            StorageError: The store cannot be read or the key is invalid.
        """
        return self.backend.open_sized(relative)

    def read_bytes(self, relative: str) -> bytes:
        """The whole evidence file."""
        return self.backend.read_bytes(relative)

    def path_of(self, relative: str) -> Path:
        """Absolute path of a stored evidence file, refusing paths that leave the root.

        Raises:
            StorageError: ``relative`` points outside the evidence folder, or the evidence is not
                in a local folder.
        """
        root = self.root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise StorageError(f"evidence path {relative!r} is outside {root}")
        return path


def _type_of(key: str) -> str | None:
    return mimetypes.guess_type(key)[0]
