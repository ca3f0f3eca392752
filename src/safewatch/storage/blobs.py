"""Where evidence bytes live: the blob-store protocol shared by the local folder and S3.

Evidence (stills, clips, sealed originals) is written once, read by people much later, and must be
either whole or absent. A blob store only moves bytes under keys; naming, encoding and the
tamper-evidence chain sit above it in :class:`safewatch.incidents.EvidenceStore`, so every backend
gets them for free. Keys are relative POSIX paths (``line-2/2026-11-20/abc.jpg``) so evidence can
move between a folder and a bucket unchanged.

Contract every backend keeps:

* ``put_*`` is atomic: a reader sees the previous object or the complete new one, never a part,
  and a failed put leaves the previous object in place.
* ``put_*`` returns the SHA-256 of what was stored, computed while writing (no second read).
* ``delete`` is idempotent: deleting a missing key is not an error (retention may be re-run).
* Reads of a missing key raise :class:`safewatch.errors.NotFound`; anything else the backend
  refuses is a :class:`safewatch.errors.StorageError` naming the key and the store.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from safewatch.errors import StorageError

__all__ = ["CHUNK", "BlobInfo", "BlobStore", "check_key", "sha256_of_stream"]

CHUNK = 1 << 20
"""Bytes read at a time when hashing or copying (1 MiB: big enough to be fast, small in memory)."""

_PART = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"
_KEY = re.compile(rf"^{_PART}(/{_PART})*$")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """One stored object.

    Attributes:
        key: Relative POSIX key inside the store.
        size: Bytes.
        sha256: Hex SHA-256 of the content when known (always after a put; when listing, only if
            the backend kept it, e.g. S3 object metadata).
    """

    key: str
    size: int
    sha256: str | None = None


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise.

    Safe means: ``/``-separated parts of letters, digits, ``.``, ``_`` and ``-`` that do not start
    with a dot. That keeps a key inside a folder on every OS and valid in every bucket, and leaves
    dot-names free for the local store's temporary files, which listings skip.

    Raises:
        StorageError: The key is empty, absolute, or would leave the store.
    """
    if not _KEY.match(key):
        raise StorageError(f"invalid evidence key {key!r}: expected a relative path like a/b.jpg")
    return key


def sha256_of_stream(stream: BinaryIO) -> tuple[str, int]:
    """SHA-256 hex digest and size of everything left in ``stream``, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class BlobStore(Protocol):
    """Bytes under keys: a local folder (:class:`LocalBlobStore`) or an S3 bucket."""

    @property
    def location(self) -> str:
        """Where the store is, for messages: ``/srv/evidence`` or ``s3://bucket/prefix/``."""
        ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> BlobInfo:
        """Store ``data`` under ``key`` atomically, replacing any earlier object."""
        ...

    def put_file(
        self, key: str, source: Path, *, content_type: str | None = None, move: bool = False
    ) -> BlobInfo:
        """Store the file ``source`` under ``key`` atomically; ``move`` deletes the source after.

        For large evidence (clips) that a writer produced in a temporary file.
        """
        ...

    def open(self, key: str) -> BinaryIO:
        """A binary stream of the object, for reading large objects without loading them."""
        ...

    def open_sized(self, key: str) -> tuple[BinaryIO, int]:
        """:meth:`open`, with the size of the very object opened. A ``stat`` before an ``open``
        can describe an earlier object where the key is replaced in between (a running
        incident's still is, when a clearer frame comes): a response sized from it is cut."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole object."""
        ...

    def stat(self, key: str) -> BlobInfo | None:
        """Size (and SHA-256 when kept) of the object, or ``None`` when there is none."""
        ...

    def sha256(self, key: str) -> str:
        """SHA-256 of the stored content, recomputed from the bytes (never from metadata)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every object whose key starts with ``prefix``, in key order."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object's file on this machine, or ``None`` for remote stores."""
        ...
