"""Blob store in a local folder (the embedded default).

A put writes a hidden temporary file in the destination folder, flushes it to disk and renames it
over the final name: rename is atomic on POSIX and Windows, so a crash or a full disk never leaves a
half-written still or clip, and the previous version survives a failed rewrite. The temporary file
is in the same folder (same file system) so the rename never degrades into a copy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from safewatch.errors import NotFound, StorageError
from safewatch.storage.atomic import atomic_file
from safewatch.storage.blobs import CHUNK, BlobInfo, check_key, sha256_of_stream

__all__ = ["LocalBlobStore"]

_Filler = Callable[[BinaryIO], tuple[str, int]]
"""Writes content into an open temporary file and returns ``(sha256, size)``."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class LocalBlobStore:
    """Blobs as files under ``root`` (created on first write).

    Args:
        root: The evidence folder, already resolved against the site file's folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        """The folder, for messages."""
        return str(self.root)

    def path_for(self, key: str) -> Path:
        """The file a key maps to (the key is checked, so it cannot leave :attr:`root`)."""
        return self.root / check_key(key)

    def local_path(self, key: str) -> Path | None:
        """The file of ``key`` (whether or not it exists)."""
        return self.path_for(key)

    def _write_atomically(self, key: str, fill: _Filler) -> BlobInfo:
        target = self.path_for(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target, suffix=".part") as handle:
                digest, size = fill(handle)
        except OSError as exc:
            raise StorageError(f"cannot write evidence {target}: {_reason(exc)}") from exc
        return BlobInfo(key, size, digest)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> BlobInfo:
        """Write ``data`` to the key's file atomically (see the module docstring)."""

        def fill(handle: BinaryIO) -> tuple[str, int]:
            handle.write(data)
            return hashlib.sha256(data).hexdigest(), len(data)

        return self._write_atomically(key, fill)

    def put_file(
        self, key: str, source: Path, *, content_type: str | None = None, move: bool = False
    ) -> BlobInfo:
        """Copy ``source`` to the key's file atomically, hashing on the way; ``move`` deletes it.

        Raises:
            StorageError: ``source`` cannot be read or the folder is not writable.
        """
        try:
            reader = Path(source).open("rb")  # noqa: SIM115 - closed below, after the put
        except OSError as exc:
            raise StorageError(f"cannot read evidence source {source}: {_reason(exc)}") from exc

        def fill(handle: BinaryIO) -> tuple[str, int]:
            digest = hashlib.sha256()
            size = 0
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)
            return digest.hexdigest(), size

        with reader:
            info = self._write_atomically(key, fill)
        if move:
            Path(source).unlink(missing_ok=True)
        return info

    def open(self, key: str) -> BinaryIO:
        """The key's file opened for reading.

        Raises:
            NotFound: No such evidence.
            StorageError: The file cannot be read.
        """
        path = self.path_for(key)
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise NotFound("evidence", key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read evidence {path}: {_reason(exc)}") from exc

    def open_sized(self, key: str) -> tuple[BinaryIO, int]:
        """The key's file opened for reading, and the size of that file (not of a later one
        renamed over the key meanwhile).

        Raises:
            NotFound: No such evidence.
            StorageError: The file cannot be read.
        """
        handle = self.open(key)
        try:
            return handle, os.fstat(handle.fileno()).st_size
        except OSError as exc:
            handle.close()
            raise StorageError(f"cannot read evidence {key}: {_reason(exc)}") from exc

    def read_bytes(self, key: str) -> bytes:
        """The whole file."""
        with self.open(key) as handle:
            return handle.read()

    def stat(self, key: str) -> BlobInfo | None:
        """Size of the key's file, or ``None`` when it does not exist."""
        path = self.path_for(key)
        try:
            return BlobInfo(key, path.stat().st_size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read evidence {path}: {_reason(exc)}") from exc

    def sha256(self, key: str) -> str:
        """SHA-256 of the file's current content."""
        with self.open(key) as handle:
            return sha256_of_stream(handle)[0]

    def delete(self, key: str) -> None:
        """Remove the key's file, then its folders if they became empty (old days vanish)."""
        path = self.path_for(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete evidence {path}: {_reason(exc)}") from exc
        root = self.root.resolve()
        folder = path.parent.resolve()
        while folder != root and folder.is_relative_to(root):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or busy): keep it
            folder = folder.parent

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Files whose key starts with ``prefix``, in key order; temporary files are skipped."""
        if not self.root.is_dir():
            return
        found: list[BlobInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            base = Path(dirpath).relative_to(self.root)
            for name in filenames:
                if name.startswith("."):
                    continue
                key = (base / name).as_posix()
                if key.startswith(prefix):
                    try:
                        size = (Path(dirpath) / name).stat().st_size
                    except FileNotFoundError:
                        continue  # removed while listing
                    found.append(BlobInfo(key, size))
        yield from sorted(found, key=lambda info: info.key)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"
