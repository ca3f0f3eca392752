"""Export workers: copy every incident change from the stream into JSON lines files.

A worker is one consumer of a Redis consumer group (``XREADGROUP``): the group hands each stream
entry to one worker, so several workers share the load, and an entry stays *pending* on its
worker until that worker acknowledges it (``XACK``) after the lines are written and fsynced. A
worker that dies between reading and acknowledging leaves its entries pending; every round each
worker first claims entries pending longer than ``claim_idle`` on any consumer (``XAUTOCLAIM``)
and writes them, so a crash delays entries by ``claim_idle`` but loses none.

Delivery is at least once: a worker that dies after writing and before acknowledging has its
entries written again by the one that claims them. Every line carries the change's chain
sequence number (``seq``), which a reader of the files uses to drop the repeat. The files are one
per UTC day (``incidents-YYYY-MM-DD.jsonl``) of the change's time.

The stream is Redis's, trimmed to its ``MAXLEN`` and lost with Redis. Without a database a
worker down longer than the stream holds, or a Redis restart, loses entries for the export. With
one (``repository``) the worker writes the changes in chain order and fills every gap from the
incident hash chain, with the same :class:`~safewatch.bus.chain_order.ChainOrder` as the
dashboards' feed: it starts after the highest ``seq`` already in its folder (from the chain's
first change in an empty folder: the export holds every change), a stream entry that
skips sequence numbers (trimmed entries, a Redis restarted empty, a publisher that never sent)
first has the skipped changes written from the chain, a repeat (or an entry above the chain's
head: another site's, see :mod:`~safewatch.bus.chain_order`) is acknowledged without a line, and
every ``resync_seconds`` the chain's head is compared with the last written (a change whose
entry never reached Redis, with nothing after it, or a Redis that is down): what the stream did
not bring within one such interval is written from the chain. Lines from the chain have
``"stream_id": null``. Such a worker writes every change of the chain once, in order; workers
sharing a group would each fill in the changes the others took, so run one worker per group
(its crash is covered: a restarted worker resumes after its folder's last ``seq``).

A file ends with whole lines only: a line torn by a crash or a full disk would glue itself to the
next one appended and make it unreadable too (and, with a database, the restarted worker goes on
after the last readable ``seq``, so that change would be missing). Before each append the file is
cut back to its last newline (what is cut is logged; it is written again, since it was never
acknowledged or lies after the last readable ``seq``), and a failed write is cut back to the size
before it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safewatch.bus.chain_order import ChainOrder
from safewatch.bus.envelope import BusFormatError, Envelope, decode
from safewatch.bus.redis_streams import BusKeys
from safewatch.errors import SafewatchError, StorageError
from safewatch.storage.incident_repository import IncidentRepository

__all__ = ["ExportFileError", "ExportWorker"]

log = logging.getLogger(__name__)

_FIELD = b"e"

CHAIN_CHUNK = 1000
"""Chain entries read, written and fsynced at a time when catching up with the chain: a long gap
(a worker down for days, an empty folder) neither waits in memory whole nor is read again from
its start after a failure."""


class ExportFileError(StorageError):
    """An export file cannot be written (a full disk, a read-only or vanished folder): the file
    system's error, told apart from Redis's and the database's in the worker's log."""


class ExportWorker:
    """One consumer of the export group (see the module docstring).

    Args:
        client: From :func:`~safewatch.bus.redis_streams.connect`.
        folder: Where the JSON lines files go (created if missing).
        keys: The site's stream (its groups are the stream's, so the site's too).
        consumer: This worker's name in the group (unique per worker: the host name and pid).
        group: The consumer group (workers of one group share the entries).
        claim_idle: Seconds an entry may stay pending on another consumer before it is claimed.
        batch: Entries per read.
        repository: The incident database, to write in chain order and fill gaps from the chain
            (``None``: the stream alone, gaps lost).
        resync_seconds: Interval of the comparison with the chain's head (with ``repository``).
    """

    def __init__(
        self,
        client: Any,
        folder: Path,
        *,
        keys: BusKeys,
        consumer: str,
        group: str = "export",
        claim_idle: float = 60.0,
        batch: int = 100,
        repository: IncidentRepository | None = None,
        resync_seconds: float = 5.0,
    ) -> None:
        self._client = client
        self._folder = folder
        self._consumer = consumer
        self._group = group
        self._stream = keys.incidents
        self._claim_idle_ms = max(1, round(claim_idle * 1000))
        self._batch = batch
        self.written = 0
        self.claimed = 0
        self.malformed = 0
        self.trimmed = 0
        self._warned_unnamed = False
        self._order = (
            None if repository is None else ChainOrder(repository, last_exported_seq(folder) or 0)
        )
        self._resync = resync_seconds
        self._next_sync = 0.0  # the first round catches up with the chain
        self._seen_head: int | None = None

    @property
    def last_seq(self) -> int | None:
        """The highest sequence number written in order (``None`` without a database, or
        before the first change)."""
        return None if self._order is None else self._order.last_seq

    @property
    def backfilled(self) -> int:
        """Lines written from the chain."""
        return 0 if self._order is None else self._order.backfilled

    @property
    def duplicates(self) -> int:
        """Stream entries acknowledged without a line: already written."""
        return 0 if self._order is None else self._order.duplicates

    @property
    def foreign(self) -> int:
        """Stream entries acknowledged without a line: above the chain's head, not this
        site's."""
        return 0 if self._order is None else self._order.foreign

    def ensure_group(self) -> None:
        """Create the stream and the group (reading from the stream's start) if missing."""
        import redis

        try:
            self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self, block: float = 1.0) -> int:
        """One round: claim idle pending entries, then read new ones (waiting up to ``block``
        seconds); write and acknowledge them. Returns how many were written.

        A Redis restarted without persistence has lost the group (every group command answers
        ``NOGROUP``): the group is created again and the round retried once, so the worker goes
        on with the new stream instead of failing for ever.
        """
        import redis

        done = self.sync_chain()
        try:
            return done + self._step(block)
        except redis.ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            log.warning(
                "export worker: group %s gone (Redis restarted?): recreating it; %s",
                self._group,
                "what the stream held that was not written yet is lost for this export (run it "
                "with --database to fill it in from the chain)"
                if self._order is None
                else "what the stream lost is written from the chain",
            )
            self.ensure_group()
            return done + self._step(block)

    def sync_chain(self, *, force: bool = False) -> int:
        """With a database, every ``resync_seconds`` (or now, with ``force``): write from the
        chain what the stream has not brought since the previous look at the chain's head (one
        interval of grace, so a change on its way through Redis is not read from the chain
        without need; it would not be written twice either way). The first look, at start-up,
        catches up to the head, :data:`CHAIN_CHUNK` entries at a time, each written and
        fsynced before the next is read. Returns how many lines were written.

        Raises:
            StorageError: The database cannot be read.
        """
        order = self._order
        if order is None or (not force and time.monotonic() < self._next_sync):
            return 0
        self._next_sync = time.monotonic() + self._resync
        head = order.head()
        due = head if force or self._seen_head is None else self._seen_head
        self._seen_head = head
        done = 0
        while order.last_seq is not None and order.last_seq < due:
            before = order.last_seq
            try:
                done += self._write_from_chain(order, min(due, before + CHAIN_CHUNK))
            except BaseException:
                order.last_seq = before  # what earlier chunks wrote stays written
                raise
            if order.last_seq == before:  # the chain ends here
                break
        return done

    def _write_from_chain(self, order: ChainOrder, until: int) -> int:
        """Write the chain's changes after ``order``'s position up to ``until``; the count."""
        lines: dict[Path, list[str]] = {}
        order.backfill(lambda envelope: self._add(lines, envelope, None), until)
        self._write(lines)
        return sum(len(v) for v in lines.values())

    def _step(self, block: float) -> int:
        done = 0
        start = "0-0"
        while True:
            reply = self._client.xautoclaim(
                self._stream,
                self._group,
                self._consumer,
                self._claim_idle_ms,
                start_id=start,
                count=self._batch,
            )
            start = _text(reply[0])
            entries = [(entry_id, fields) for entry_id, fields in reply[1] if fields]
            # Pending, but trimmed from the stream meanwhile: nothing left to write. Redis 7
            # names them apart (and drops them from the pending list); 6.2 returns each as a
            # bare nil, without even its id, so it cannot be acknowledged here: acknowledging
            # None raised DataError every round and the worker never read again. Such entries
            # are counted once per round and left (harmless: nothing to write).
            trimmed = [*(reply[2] if len(reply) > 2 else ()), *(i for i, f in reply[1] if not f)]
            unnamed = sum(1 for entry_id in trimmed if entry_id is None)
            trimmed = [entry_id for entry_id in trimmed if entry_id is not None]
            if trimmed:
                self._trimmed_pending(trimmed)
            if unnamed and not self._warned_unnamed:
                self._warned_unnamed = True  # they come back every round on that Redis
                log.warning(
                    "export worker: %d pending entry(ies) trimmed from the stream before they "
                    "were written; Redis before 7 no longer names them, so they stay pending "
                    "(nothing to write)",
                    unnamed,
                )
            if entries:
                self.claimed += len(entries)
                log.warning("claimed %d entries another export worker left pending", len(entries))
                done += self._handle(entries)
            if start == "0-0":
                break
        replies = self._client.xreadgroup(
            self._group,
            self._consumer,
            {self._stream: ">"},
            count=self._batch,
            block=max(1, round(block * 1000)),
        )
        for _stream, entries in replies or ():
            done += self._handle(entries)
        return done

    def _trimmed_pending(self, ids: list[Any]) -> None:
        """Acknowledge pending entries the stream no longer holds, counted and logged: without
        a database their changes are lost for the export; with one, the chain fills them in."""
        self._client.xack(self._stream, self._group, *ids)
        self.trimmed += len(ids)
        log.warning(
            "export worker: %d pending entry(ies) trimmed from the stream before they were "
            "written (read by a worker that stopped before writing them): %s",
            len(ids),
            "their changes are lost for this export (run it with --database to fill them in "
            "from the chain)"
            if self._order is None
            else "their changes are written from the chain",
        )

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; Redis errors are logged and retried."""
        import redis

        while not stop.is_set():
            try:
                self.ensure_group()
                self._warn_if_shared()
                break
            except (redis.RedisError, OSError) as exc:
                log.warning("export worker: Redis error (%s); retrying", exc)
                stop.wait(2.0)
        while not stop.is_set():
            try:
                self.step()
            except (redis.RedisError, OSError) as exc:
                log.warning("export worker: Redis error (%s); retrying", exc)
                try:  # the chain goes on while Redis is away
                    self.sync_chain()
                except SafewatchError as db_exc:
                    log.warning("export worker: %s", db_exc)
                stop.wait(2.0)
            except SafewatchError as exc:  # the database is down or the folder cannot be written
                log.warning("export worker: %s; retrying", exc)  # the entries stay pending
                stop.wait(2.0)

    def _warn_if_shared(self) -> None:
        """With a database, say so when other workers read the same group: each would write
        the changes the others took too (run one such worker per group)."""
        if self._order is None:
            return
        others = [
            _text(c["name"])
            for c in self._client.xinfo_consumers(self._stream, self._group)
            if _text(c["name"]) != self._consumer and int(c.get("idle", 0)) < 60_000
        ]
        if others:
            log.warning(
                "export worker: group %s is also read by %s; with a database each worker writes "
                "every change (give each its own --group)",
                self._group,
                ", ".join(sorted(others)),
            )

    def _handle(self, entries: list[tuple[Any, dict[Any, Any]]]) -> int:
        """Write the entries' lines, fsync, then acknowledge them (never before)."""
        lines: dict[Path, list[str]] = {}
        ids = []
        before = None if self._order is None else self._order.last_seq
        try:
            for entry_id, fields in entries:
                ids.append(entry_id)
                try:
                    envelope = decode(fields.get(_FIELD) or fields.get(_FIELD.decode()) or b"")
                except BusFormatError as exc:
                    # Acknowledged anyway: a message no version of this worker can read would
                    # otherwise be claimed back and forth for ever. Logged with its id.
                    self.malformed += 1
                    log.error("export: skipping stream entry %s: %s", _text(entry_id), exc)
                    continue
                if self._order is None:
                    self._add(lines, envelope, _text(entry_id))
                else:
                    self._order.take(envelope, self._adder(lines, envelope, _text(entry_id)))
            self._write(lines)
        except BaseException:
            # Nothing acknowledged; the position goes back so the entries, claimed again, are
            # written then rather than dropped as repeats.
            if self._order is not None:
                self._order.last_seq = before
            raise
        if ids:
            self._client.xack(self._stream, self._group, *ids)
        return sum(len(v) for v in lines.values())

    def _adder(
        self, lines: dict[Path, list[str]], entry: Envelope, entry_id: str
    ) -> Callable[[Envelope], None]:
        """Adds the stream entry's line with its id, a change from the chain's without."""

        def add(envelope: Envelope) -> None:
            self._add(lines, envelope, entry_id if envelope is entry else None)

        return add

    def _add(self, lines: dict[Path, list[str]], envelope: Envelope, entry_id: str | None) -> None:
        path = self._folder / f"incidents-{_day(envelope.at)}.jsonl"
        lines.setdefault(path, []).append(_line(envelope, entry_id))

    def _write(self, lines: dict[Path, list[str]]) -> None:
        """Append and fsync the lines of each file.

        Raises:
            ExportFileError: A file cannot be written (what this call wrote to it is cut off).
        """
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            for path, texts in lines.items():
                _append(path, "".join(texts).encode("utf-8"))
                self.written += len(texts)
        except OSError as exc:
            raise ExportFileError(f"cannot write the export in {self._folder}: {exc}") from exc


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` (whole lines) to ``path`` and fsync it, the file first cut back to its
    last newline and, if the write fails, back to its size before it (module docstring).

    Under an exclusive ``flock``, so a worker appending to the same file never cuts another's
    line in progress. Where the file system has no locks (an NFSv3 mount without its lock
    service answers ENOLCK) the lines are appended as they were before the cutting existed:
    without a lock nothing says whether a torn tail is another worker's line being written, so
    nothing is cut (logged once).

    Raises:
        OSError: The file cannot be opened, cut or written.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        locked = _lock(fd, path)
        size = _cut_torn_tail(fd, path) if locked else os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            if locked:
                try:
                    os.ftruncate(fd, size)
                except OSError as exc:
                    log.error("export: cannot cut %s back to %d bytes: %s", path, size, exc)
            raise
    finally:
        os.close(fd)


_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
_WARNED_NO_LOCKS = threading.Event()


def _lock(fd: int, path: Path) -> bool:
    """Take the file's exclusive lock; ``False`` where the file system has none (module
    docstring of :func:`_append`), warned about once per process.

    Raises:
        OSError: Locking failed for another reason.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
        if not _WARNED_NO_LOCKS.is_set():
            _WARNED_NO_LOCKS.set()
            log.warning(
                "export: %s cannot be locked (%s): lines are appended without repairing a torn "
                "last line; run one export worker per folder there",
                path.parent,
                exc.strerror or exc,
            )
        return False
    return True


def _cut_torn_tail(fd: int, path: Path) -> int:
    """Cut the file after its last newline, logging what was cut; returns its new size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    keep, end = 0, size
    while end > 0:
        start = max(0, end - (1 << 16))
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            keep = start + at + 1
            break
        end = start
    torn = os.pread(fd, min(size - keep, 120), keep)
    log.warning(
        "export: %s ended in a torn line (a crash or a full disk mid-write): cut %d byte(s) "
        "from offset %d: %r",
        path,
        size - keep,
        keep,
        torn,
    )
    os.ftruncate(fd, keep)
    return keep


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def last_exported_seq(folder: Path, tail: int = 1 << 20) -> int | None:
    """The highest ``seq`` in the newest two ``incidents-*.jsonl`` of ``folder`` that hold one
    (their last ``tail`` bytes), or ``None`` when there is none: where a restarted worker goes on.

    Two, because a file is the UTC day of the change's time, which is the writing host's
    clock: around midnight, hosts whose clocks differ put a higher ``seq`` in the older day's
    file. The newest file alone gave a lower number, and the restarted worker wrote the
    changes after it a second time.
    """
    files = sorted(folder.glob("incidents-*.jsonl"))
    found: list[int] = []
    for path in reversed(files):
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - tail))
            text = handle.read().decode("utf-8", errors="replace")
        seqs = []
        for line in text.splitlines():
            try:
                seq = json.loads(line).get("seq")
            except (ValueError, AttributeError):  # the first, cut line; a torn last one
                continue
            if isinstance(seq, int):
                seqs.append(seq)
        if seqs:
            found.append(max(seqs))
            if len(found) == 2:
                break
    return max(found, default=None)


def _line(envelope: Envelope, entry_id: str | None) -> str:
    record = {
        "seq": envelope.seq,
        "type": envelope.type,
        "at": envelope.at,
        "stream_id": entry_id,
        "exported_at": time.time(),
        **envelope.body,
    }
    return json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
