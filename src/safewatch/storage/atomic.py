"""Files replaced whole or not at all: the one implementation of the atomic write.

Rule files are watched by the hot reload, evidence is hashed into the chain, job records and
caches are read back after a crash: a reader must see the old file or the new one, never half of
one. So every write goes to a hidden temporary file in the target's own folder (a rename is atomic
only within one file system), is flushed to disk, takes the target's permissions, and is renamed
over the target; the folder is synced so the rename itself survives a power cut. On any failure
the temporary file is removed and the target is untouched.

Two phases (:func:`write_temp`, then :func:`commit`) serve a caller that must do something in
between, e.g. record a rule change in the audit log before the change becomes visible.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "atomic_write", "commit", "write_temp"]


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it back at once
    os.umask(mask)
    return mask


_UMASK = _read_umask()
"""The process umask, read once at import rather than per write: reading it sets it to 0 for an
instant, and a file another thread created in that instant would be world-writable. At import
(before the service starts its threads) no other thread is creating files."""


def _mode_for(target: Path) -> int:
    """The permission bits a write of ``target`` gives its file: the target's own, and for a new
    one what ``open()`` gives (0666 less the umask). ``mkstemp`` makes 0600 files, which other
    users (a web server or a backup reading evidence) could not read; a fixed 0644 instead
    ignored the umask, so an operator's ``UMask=0077`` no longer kept evidence private."""
    return target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_UMASK


@contextmanager
def atomic_file(target: Path, *, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``target`` when the block ends without error; the
    file takes ``target``'s permission bits (0666 less the umask for a new file), as
    :func:`write_temp`.

    Raises:
        OSError: The temporary file cannot be made, written or renamed (``target`` unchanged).
    """
    mode = _mode_for(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, mode)
        commit(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_temp(target: Path, data: str | bytes) -> Path:
    """Write ``data`` to a hidden, synced temporary file beside ``target``; returns its path.

    The file takes ``target``'s permission bits (0666 less the umask for a new file). Call
    :func:`commit` to put it in place, or unlink it.
    """
    mode = _mode_for(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, mode)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def commit(temp: Path, target: Path) -> None:
    """Rename ``temp`` over ``target`` and sync the folder."""
    os.replace(temp, target)
    _sync_folder(target.parent)


def atomic_write(target: Path, data: str | bytes) -> None:
    """Replace ``target`` with ``data`` (UTF-8 for text), whole or not at all."""
    temp = write_temp(target, data)
    try:
        commit(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
