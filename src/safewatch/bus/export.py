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

The stream is Redis's, trimmed to its ``MAXLEN`` and lost with Redis: a worker down longer than
the stream holds, or a Redis restart, loses entries for the export (dashboards back-fill from the
chain; an export that must be complete is re-made from the database with the incident API).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safewatch.bus.envelope import BusFormatError, Envelope, decode
from safewatch.bus.redis_streams import INCIDENT_STREAM

__all__ = ["ExportWorker"]

log = logging.getLogger(__name__)

_FIELD = b"e"


class ExportWorker:
    """One consumer of the export group (see the module docstring).

    Args:
        client: From :func:`~safewatch.bus.redis_streams.connect`.
        folder: Where the JSON lines files go (created if missing).
        consumer: This worker's name in the group (unique per worker: the host name and pid).
        group: The consumer group (workers of one group share the entries).
        stream: The incident stream's key.
        claim_idle: Seconds an entry may stay pending on another consumer before it is claimed.
        batch: Entries per read.
    """

    def __init__(
        self,
        client: Any,
        folder: Path,
        *,
        consumer: str,
        group: str = "export",
        stream: str = INCIDENT_STREAM,
        claim_idle: float = 60.0,
        batch: int = 100,
    ) -> None:
        self._client = client
        self._folder = folder
        self._consumer = consumer
        self._group = group
        self._stream = stream
        self._claim_idle_ms = max(1, round(claim_idle * 1000))
        self._batch = batch
        self.written = 0
        self.claimed = 0
        self.malformed = 0

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

        try:
            return self._step(block)
        except redis.ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            log.warning(
                "export worker: group %s gone (Redis restarted?): recreating it", self._group
            )
            self.ensure_group()
            return self._step(block)

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
            if len(reply) > 2 and reply[2]:  # pending, but trimmed from the stream: nothing left
                self._client.xack(self._stream, self._group, *reply[2])
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

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; Redis errors are logged and retried."""
        import redis

        self.ensure_group()
        while not stop.is_set():
            try:
                self.step()
            except (redis.RedisError, OSError) as exc:
                log.warning("export worker: Redis error (%s); retrying", exc)
                stop.wait(2.0)

    def _handle(self, entries: list[tuple[Any, dict[Any, Any]]]) -> int:
        """Write the entries' lines, fsync, then acknowledge them (never before)."""
        lines: dict[Path, list[str]] = {}
        ids = []
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
            path = self._folder / f"incidents-{_day(envelope.at)}.jsonl"
            lines.setdefault(path, []).append(_line(envelope, _text(entry_id)))
        self._write(lines)
        if ids:
            self._client.xack(self._stream, self._group, *ids)
        return sum(len(v) for v in lines.values())

    def _write(self, lines: dict[Path, list[str]]) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        for path, texts in lines.items():
            with path.open("a", encoding="utf-8") as handle:
                handle.write("".join(texts))
                handle.flush()
                os.fsync(handle.fileno())
            self.written += len(texts)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def _line(envelope: Envelope, entry_id: str) -> str:
    record = {
        "seq": envelope.seq,
        "type": envelope.type,
        "at": envelope.at,
        "stream_id": entry_id,
        "exported_at": time.time(),
        **envelope.body,
    }
    return json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
