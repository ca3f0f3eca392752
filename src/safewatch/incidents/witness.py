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
history, and ``chain-witness/latest.json`` is the one verify reads (overwritten atomically, so it
is never half written). Retention never touches them: it removes only keys the chain recorded.
"""

from __future__ import annotations

import json
import logging
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
    "read_latest_witness",
    "write_witness",
]

log = logging.getLogger(__name__)

WITNESS_PREFIX = "chain-witness/"
LATEST_KEY = WITNESS_PREFIX + "latest.json"


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


def write_witness(
    store: BlobStore, engine: Engine, *, now: float | None = None
) -> ChainWitness | None:
    """Write the current head to ``store`` (history object and ``latest.json``).

    Returns:
        The witness written, or ``None`` when the chain has no head row yet.

    Raises:
        StorageError: The database or the store cannot be used.
    """
    head = read_head(engine)
    if head is None:
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
            if head is None or (head == self._last and not force):
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
