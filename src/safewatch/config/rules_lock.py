"""One writer at a time per rules folder, across threads and processes.

The rules folder is changed from three places: the dashboard's saves (YAML editor, zones drawn on a
still, rules switched on or off), confirmed LLM drafts (from the dashboard or ``safewatch rules
draft``), and the CLI. Each change is validate-the-whole-set-then-write, so two writers that
interleave can each validate against a folder the other is about to change and together leave a
set that neither validated. They used to hold different locks (a thread lock for dashboard saves,
a file lock for drafts); now every writer holds this one.

It is an exclusive ``flock`` on a lock file named after the folder's real path, opened afresh on
every acquisition: on Linux two open file descriptions exclude each other even within one process,
so the same lock serialises the server's threads, its API process and a CLI run. The lock file
lives in the temporary folder, so a read-only or version-controlled rules folder gets no stray file.

Every writer puts a file in place with :func:`replace_rule_file` (record first, then rename), and
a write that the OS refuses is answered by :func:`rule_write_error`, for every writer alike.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from safewatch.errors import StorageError
from safewatch.storage.atomic import commit, write_temp

__all__ = ["lock_path", "replace_rule_file", "rule_write_error", "rules_folder_lock"]

log = logging.getLogger(__name__)


def lock_path(folder: Path) -> Path:
    """The lock file of a rules folder (the same for every spelling of its path)."""
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"safewatch-rules-{key}.lock"


@contextmanager
def rules_folder_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's writer lock for the block (waits for the current writer).

    Raises:
        StorageError: The lock file cannot be opened.
    """
    path = lock_path(folder)
    try:
        handle = path.open("a")
    except OSError as exc:
        raise StorageError(f"cannot lock the rules folder {folder} ({path}): {exc}") from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def rule_write_error(target: Path, exc: OSError) -> StorageError:
    """The error of a rule-file write the OS refused: it names the file and, where ``errno`` says
    so, that the folder cannot be written here.

    Rules folders are often read-only on purpose (a Kubernetes ConfigMap mount, a systemd unit
    without ``ReadWritePaths=``); a bare ``OSError`` from a dashboard save was a 500 that said
    neither which file nor why. A :class:`StorageError` is answered 503 by the API.
    """
    folder = target.parent
    if exc.errno == errno.EROFS:
        why = (
            f"the rules folder {folder} is read-only here (e.g. a Kubernetes ConfigMap mount or a "
            "systemd unit without ReadWritePaths=); change the rules where they come from"
        )
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = f"safewatch may not write in the rules folder {folder} (permission denied)"
    else:
        why = exc.strerror or str(exc)
    return StorageError(f"cannot write the rule file {target}: {why}")


def replace_rule_file(
    target: Path,
    text: str,
    record: Callable[[], None] | None = None,
    *,
    failed: Callable[[OSError], None] | None = None,
) -> None:
    """Put ``text`` in place as rule file ``target``, recorded before it becomes visible.

    The text is written to a synced temporary file beside ``target``; then ``record`` runs (the
    audit record); only then is the file renamed over ``target``. A record that cannot be
    written (it raises) leaves the file untouched, so no rule change is ever live without its
    record; a crash between the two leaves a record of a change that did not happen, which is
    the safe side. Call it holding :func:`rules_folder_lock`.

    Args:
        target: The rule file.
        text: Its new content.
        record: Writes the record; whatever it raises is raised, nothing changed.
        failed: Called with the error when the final rename fails (to record that).

    Raises:
        StorageError: The file cannot be written (:func:`rule_write_error`).
    """
    try:
        temp = write_temp(target, text)
    except OSError as exc:
        raise rule_write_error(target, exc) from None
    try:
        if record is not None:
            record()
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    try:
        commit(temp, target)
    except OSError as exc:
        if not temp.exists():
            # Renamed into place; only the folder's sync failed (some network and FUSE file
            # systems refuse to sync a folder). The change is made and recorded as made.
            log.warning("rule file %s saved, but its folder could not be synced: %s", target, exc)
            return
        temp.unlink(missing_ok=True)
        if failed is not None:
            failed(exc)
        raise rule_write_error(target, exc) from None
