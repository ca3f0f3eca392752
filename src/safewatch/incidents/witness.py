"""The chain head witnessed outside the database, so cutting the newest entries is caught.

The tamper-evidence chain lives in the database it protects. Someone with write access to that
database can delete the newest entries (and the incidents they vouch for) and set the head row back
to the entry before them: every remaining link still checks, and ``safewatch verify`` without a
noted hash sees nothing wrong. A witness is the head ``(seq, hash, time)`` written somewhere else,
the evidence store (a folder or an S3 bucket, usually with different permissions and backups):

* ``safewatch serve`` writes one every ``interval`` seconds while the head moves, and one at a
  clean shutdown (:class:`WitnessWriter`);
* ``safewatch verify`` reads the latest and requires the chain to still hold that entry with that
  hash (:func:`safewatch.incidents.chain.verify_chain`).

Each witness is one small JSON object: ``chain-witness/YYYY/MM/DD/HHMMSSZ-<seq>.json`` keeps the
history, and ``chain-witness/latest.json`` is the newest (overwritten atomically, so it is never
half written). Retention never touches them: it removes only keys the chain recorded. Verify
reads ``latest.json`` and also the history object of the highest entry ever witnessed (found by
its key, :func:`read_highest_witness`): someone who cut the chain and put an older witness back
as ``latest.json`` (or deleted it) is still caught unless they also found and removed every
later history object.

Someone who controls the server may control its evidence store too. So the head also leaves the
site through the alert channels (``alerts.witness`` in the site file: a webhook, a mailbox kept
elsewhere), as one line :meth:`ChainWitness.line` in the message; ``safewatch verify --witness
FILE`` takes such a message back (:func:`parse_witness`: the saved mail, the webhook's JSON body,
a copy of ``latest.json``, or any text holding the line).
"""

from __future__ import annotations

import email
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from safewatch.errors import NotFound, SafewatchError, StorageError
from safewatch.storage import BlobStore
from safewatch.storage.hash_chain import read_head

__all__ = [
    "LATEST_KEY",
    "WITNESS_PREFIX",
    "ChainWitness",
    "WitnessWriter",
    "parse_witness",
    "read_highest_witness",
    "read_latest_witness",
    "write_witness",
]

log = logging.getLogger(__name__)

WITNESS_PREFIX = "chain-witness/"
LATEST_KEY = WITNESS_PREFIX + "latest.json"
LINE_PREFIX = "safewatch-chain-witness"
_LINE = re.compile(
    rf"{LINE_PREFIX} seq=(?P<seq>\d+) hash=(?P<hash>[0-9a-f]{{16,128}}) at=(?P<at>\d+(?:\.\d+)?)"
)


@dataclass(frozen=True, slots=True)
class ChainWitness:
    """The chain head as seen at one moment.

    Attributes:
        seq: Sequence number of the newest entry.
        hash: Its hash.
        at: When it was seen (Unix seconds, UTC).
    """

    seq: int
    hash: str
    at: float

    @property
    def when(self) -> str:
        """``at`` as an ISO 8601 UTC time, for messages."""
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def to_json(self) -> bytes:
        """The stored form."""
        body = {"seq": self.seq, "hash": self.hash, "at": self.at, "time": self.when}
        return json.dumps(body, sort_keys=True).encode()

    def line(self) -> str:
        """The witness as one line of text (in alert messages; :func:`parse_witness` finds it)."""
        return f"{LINE_PREFIX} seq={self.seq} hash={self.hash} at={self.at!r} time={self.when}"

    @classmethod
    def from_json(cls, data: bytes) -> ChainWitness:
        """Parse a stored witness.

        Raises:
            ValueError: The object is not a witness.
        """
        try:
            body = json.loads(data)
            return cls(seq=int(body["seq"]), hash=str(body["hash"]), at=float(body["at"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a chain witness: {exc}") from None


def parse_witness(data: bytes) -> ChainWitness:
    """A witness from what a receiver kept: a copy of ``latest.json``, a webhook's JSON body (its
    ``witness`` object), a saved mail (``.eml``, any transfer encoding) or text holding the
    :meth:`ChainWitness.line` (the last one wins).

    Raises:
        ValueError: No witness found in ``data``.
    """
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        inner = body.get("witness")
        fields = inner if isinstance(inner, dict) else body
        return ChainWitness.from_json(json.dumps(fields).encode())
    texts = [data.decode("utf-8", "replace")]
    message = email.message_from_bytes(data)
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    found = [m for text in texts for m in _LINE.finditer(text)]
    if not found:
        raise ValueError(f"no chain witness found (a line starting with {LINE_PREFIX!r})")
    last = found[-1]
    return ChainWitness(seq=int(last["seq"]), hash=last["hash"], at=float(last["at"]))


def write_witness(
    store: BlobStore, engine: Engine, *, now: float | None = None
) -> ChainWitness | None:
    """Write the current head to ``store`` (history object and ``latest.json``).

    Returns:
        The witness written, or ``None`` when the chain has no head row yet or no entry: the
        empty chain's head (entry 0, the genesis hash) is the same on every site and proves
        nothing, and a fresh site's first start would otherwise store and send it.

    Raises:
        StorageError: The database or the store cannot be used.
    """
    head = read_head(engine)
    if head is None or head[0] == 0:
        return None
    witness = ChainWitness(seq=head[0], hash=head[1], at=time.time() if now is None else now)
    stamp = datetime.fromtimestamp(witness.at, UTC).strftime("%Y/%m/%d/%H%M%SZ")
    data = witness.to_json()
    store.put_bytes(f"{WITNESS_PREFIX}{stamp}-{witness.seq}.json", data)
    store.put_bytes(LATEST_KEY, data, content_type="application/json")
    return witness


def read_latest_witness(store: BlobStore) -> ChainWitness | None:
    """The newest witness in ``store``, or ``None`` when none was ever written.

    Raises:
        StorageError: The store cannot be read, or ``latest.json`` is not a witness.
    """
    try:
        data = store.read_bytes(LATEST_KEY)
    except NotFound:
        return None
    try:
        return ChainWitness.from_json(data)
    except ValueError as exc:
        raise StorageError(f"{store.location}/{LATEST_KEY}: {exc}") from None


_HISTORY_KEY = re.compile(r"-(\d+)\.json$")
"""A history object's key ends with the entry it witnessed."""


def read_highest_witness(store: BlobStore) -> tuple[ChainWitness, str] | None:
    """The history object of the highest entry ever witnessed in ``store``, and its key;
    ``None`` when there is none. Only that one object is read: the entry is in its key.

    Raises:
        StorageError: The store cannot be listed or read, or the object is not a witness.
    """
    best: tuple[int, str] | None = None
    for info in store.list(WITNESS_PREFIX):
        found = _HISTORY_KEY.search(info.key)
        if info.key == LATEST_KEY or found is None:
            continue
        candidate = (int(found.group(1)), info.key)
        if best is None or candidate > best:
            best = candidate
    if best is None:
        return None
    key = best[1]
    try:
        return ChainWitness.from_json(store.read_bytes(key)), key
    except NotFound:  # removed since the listing: nothing to hold against the chain
        return None
    except ValueError as exc:
        raise StorageError(f"{store.location}/{key}: {exc}") from None


class WitnessWriter:
    """Writes a witness every ``interval`` seconds when the head moved, and one at :meth:`stop`.

    Args:
        store: The evidence store.
        engine: The site's database.
        interval: Seconds between witnesses.
        notify: Called with each witness written (e.g. a low-key alert); its errors are logged.
    """

    def __init__(
        self,
        store: BlobStore,
        engine: Engine,
        *,
        interval: float = 600.0,
        notify: Callable[[ChainWitness], None] | None = None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._interval = interval
        self._notify = notify
        self._stop = threading.Event()
        self._last: tuple[int, str] | None = None
        self._thread = threading.Thread(target=self._run, name="chain-witness", daemon=True)

    def start(self) -> WitnessWriter:
        """Start the periodic writes (the first one at once)."""
        self._thread.start()
        return self

    def write_now(self, *, force: bool = False) -> ChainWitness | None:
        """Write a witness if the head moved since the last one (always with ``force``).

        Never raises: a store that is down must not stop the server; it is logged.
        """
        try:
            head = read_head(self._engine)
            # nothing to witness before the first entry (see write_witness)
            if head is None or head[0] == 0 or (head == self._last and not force):
                return None
            witness = write_witness(self._store, self._engine)
        except SafewatchError as exc:
            log.warning("cannot write the chain witness to %s: %s", self._store.location, exc)
            return None
        if witness is not None:
            self._last = (witness.seq, witness.hash)
            if self._notify is not None:
                try:
                    self._notify(witness)
                except Exception:  # a notifier's bug must not stop the witness
                    log.exception("chain witness notification failed")
        return witness

    def _run(self) -> None:
        while True:
            self.write_now()
            if self._stop.wait(self._interval):
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and write a final witness of the head at shutdown."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.write_now()
