"""An append-only, hash-chained JSON-lines log of saved rule drafts.

Who changed which safety rule, asked in which words, answered by which model, is the question an
incident review asks months later, so every save leaves a record: the actor, the time, the
request, the model, the resulting YAML, the diff and its hash. Each line carries the SHA-256 of the
line before it, so an edited or deleted line breaks the chain and :meth:`DraftAuditLog.verify`
says where. The file lives in the site's data folder beside the database; the API may send the
same record to the dashboard's audit table too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from safewatch.errors import StorageError

__all__ = ["GENESIS", "DraftAuditLog"]

GENESIS = "0" * 64
"""The ``prev_sha256`` of the first record."""


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.rstrip("\n").encode("utf-8")).hexdigest()


class DraftAuditLog:
    """The log file; appends are serialised across processes with ``flock``.

    Args:
        path: The JSON-lines file (created, with its folder, on first append).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def locked(self) -> Iterator[IO[str]]:
        """Hold the log's exclusive lock (saves hold it while they check and write)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise StorageError(f"cannot open the rule-draft audit log {self.path}: {exc}") from None
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def append(self, record: Mapping[str, Any], *, handle: IO[str] | None = None) -> str:
        """Append one record (chained to the last one); returns the new line's hash.

        Args:
            record: JSON-serialisable fields; ``prev_sha256`` is added.
            handle: The handle of :meth:`locked`, when the caller already holds the lock.

        Raises:
            StorageError: The file cannot be written.
        """
        if handle is None:
            with self.locked() as own:
                return self.append(record, handle=own)
        try:
            handle.seek(0)
            last = ""
            for line in handle:
                if line.strip():
                    last = line
            prev = _line_hash(last) if last else GENESIS
            line = json.dumps({**record, "prev_sha256": prev}, ensure_ascii=False, sort_keys=True)
            handle.seek(0, os.SEEK_END)
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            raise StorageError(
                f"cannot write the rule-draft audit log {self.path}: {exc}"
            ) from None
        return _line_hash(line)

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first (``[]`` when the file does not exist)."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def verify(self) -> int | None:
        """The 1-based number of the first line whose chain link is wrong, or ``None`` if intact."""
        if not self.path.exists():
            return None
        prev = GENESIS
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate((ln for ln in handle if ln.strip()), start=1):
                try:
                    record = json.loads(line)
                except ValueError:
                    return number
                if record.get("prev_sha256") != prev:
                    return number
                prev = _line_hash(line)
        return None
