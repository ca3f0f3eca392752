"""The bus on Redis: what is lossy or re-readable, never what must not be lost.

Every key and channel is the site's (:class:`BusKeys`: ``safewatch:<site>:...``), so sites that
share a Redis server neither read nor consume each other's messages.

* **Incident changes** go to one stream (``XADD safewatch:<site>:incidents MAXLEN ~ N``) after their
  transaction commits (:mod:`safewatch.bus.changes`), each with its chain sequence number.
  Dashboards read it through :class:`IncidentFeed`, which notices a gap (a sequence jump, Redis
  unreachable or restarted empty, the stream trimmed past it) and back-fills from the hash chain
  in the database (:meth:`~safewatch.storage.IncidentRepository.changes_after`), delivering each
  sequence number once. Losing Redis loses no incident: the chain is the record, the stream a
  fast path.
* **Live overlay metadata** goes over Pub/Sub (``safewatch:<site>:live:<camera>``): lossy by design,
  the newest frame wins, so an API node can draw the boxes of a camera another analyzer owns.
* **Export workers** read the stream with a consumer group (``XREADGROUP``, ``XACK`` after their
  side effect is stored, ``XAUTOCLAIM`` of entries a crashed worker left pending):
  :mod:`safewatch.bus.export`.

Alerts stay on the transactional outbox in PostgreSQL, and frames never ride Redis.

``redis`` is the optional ``cluster`` extra: importing this module needs it, nothing else does.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from safewatch import tracing
from safewatch.bus.chain_order import ChainOrder
from safewatch.bus.envelope import INCIDENT_CHANGE, LIVE_FRAME, BusFormatError, Envelope, decode
from safewatch.bus.envelope import encode as encode_envelope
from safewatch.bus.protocol import Publisher
from safewatch.errors import ConfigError, SafewatchError
from safewatch.ingest.redact import redact_text, redact_url, url_secrets
from safewatch.storage.incident_repository import IncidentRepository

if TYPE_CHECKING:
    from safewatch.config.site import SiteConfig

__all__ = [
    "BusKeys",
    "IncidentFeed",
    "LiveFeed",
    "RedisPublisher",
    "connect",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "safewatch:"
_NAMESPACE = re.compile(r"[A-Za-z0-9._~%-]+")


@dataclass(frozen=True)
class BusKeys:
    """The Redis names of one site's bus: the stream ``safewatch:<namespace>:incidents`` (its
    consumer groups live on it) and the channels ``safewatch:<namespace>:live:<camera>``.

    Why per site: with fixed names, two sites on one Redis server (two plants, staging and
    production) read and consumed each other's incident changes and showed each other's boxes
    of a camera id both use; a database number of its own did not separate the live overlays,
    since Pub/Sub channels are the server's. The namespace is the site's
    ``cluster.redis_namespace``, by default its ``site.name``, percent-encoded by
    :meth:`for_name`: it then holds no ``:``, so ``plant``'s names are no prefix of ``plant2``'s
    (``safewatch:plant:`` vs ``safewatch:plant2:``), and no glob character (``* ? [ ] \\``),
    so the live feed's ``PSUBSCRIBE safewatch:<namespace>:live:*`` matches this site's channels
    only. The encoding is one-to-one (``%`` itself is encoded), so two names never share keys.

    Raises:
        ConfigError: ``namespace`` is empty or not already encoded.
    """

    namespace: str

    def __post_init__(self) -> None:
        if not _NAMESPACE.fullmatch(self.namespace):
            raise ConfigError(
                f"bad Redis namespace {self.namespace!r}: set site.name or "
                "cluster.redis_namespace (letters, digits and . _ -)"
            )

    @classmethod
    def for_name(cls, name: str) -> BusKeys:
        """The keys of the site named ``name`` (a ``cluster.redis_namespace`` or a
        ``site.name``, any characters)."""
        return cls(quote(name, safe=""))

    @classmethod
    def for_site(cls, config: SiteConfig) -> BusKeys:
        """The keys of ``config``'s site: its ``cluster.redis_namespace``, else its name."""
        return cls.for_name(config.cluster.redis_namespace or config.site.name)

    @property
    def incidents(self) -> str:
        """The incident change stream."""
        return f"{KEY_PREFIX}{self.namespace}:incidents"

    @property
    def live_prefix(self) -> str:
        """What every live overlay channel of the site starts with."""
        return f"{KEY_PREFIX}{self.namespace}:live:"

    def live_channel(self, camera: str) -> str:
        """The live overlay channel of ``camera``."""
        return self.live_prefix + camera

    @property
    def live_pattern(self) -> str:
        """The ``PSUBSCRIBE`` pattern of the site's live channels (and no other site's)."""
        return self.live_prefix + "*"


_FIELD = b"e"
"""The one field of a stream entry: the encoded envelope."""

STREAM_MAXLEN = 100_000
"""Entries kept (approximately: ``MAXLEN ~`` trims whole nodes, which is cheap). A dashboard that
falls further behind back-fills from the database; an export worker down that long misses
changes (docs/cluster.md)."""

_BACKOFF = (0.2, 5.0)


def connect(url: str) -> Any:
    """A Redis client for ``url`` (``redis://host:6379/0``) with short timeouts.

    Short timeouts because every user of Redis here has a fallback (back-fill, drop, retry):
    waiting 30 s on a dead server would only delay it.

    Raises:
        ConfigError: The ``cluster`` extra is not installed, or the URL is malformed.
    """
    try:
        import redis
    except ImportError as exc:
        raise ConfigError(
            "Redis support needs the 'redis' package: pip install 'safewatch[cluster]'"
        ) from exc
    try:
        return redis.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=15
        )
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {redact_url(url)!r}: {_masked(str(exc), url)}") from exc


def _masked(text: str, url: str) -> str:
    """``text``, an error about ``url``, without the URL's secrets: :func:`redact_text`, and
    their pieces too, since a password pasted with a raw ``#`` or ``/`` is cut there by the URL
    parser, which then quotes the first piece as the port."""
    text = redact_text(text, url)
    for secret in url_secrets(url):
        for piece in re.split(r"[/?#@:]", secret):
            if len(piece) >= 3:
                text = text.replace(piece, "***")
    return text


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


class _Backoff:
    """Retry delays doubling from 0.2 s to 5 s, reset by a success."""

    def __init__(self) -> None:
        self.delay = 0.0

    def failed(self) -> float:
        self.delay = min(_BACKOFF[1], max(_BACKOFF[0], self.delay * 2))
        return self.delay

    def ok(self) -> bool:
        """Reset; ``True`` when this ends an outage."""
        recovered = self.delay > 0
        self.delay = 0.0
        return recovered


class RedisPublisher:
    """A :class:`~safewatch.bus.protocol.Publisher` onto Redis, sending from its own thread.

    :meth:`publish` only queues, so callers (an incident commit, the rules thread) never wait on
    the network. Incident changes wait in a bounded queue while Redis is unreachable and are
    sent when it returns (the oldest dropped past ``backlog``, counted; readers back-fill them
    from the chain); live frames keep only the newest per camera and are dropped while Redis is
    down.

    Args:
        client: From :func:`connect`.
        keys: The site's stream and channels.
        maxlen: Approximate length the stream is trimmed to.
        backlog: Incident changes held while Redis is unreachable.
    """

    def __init__(
        self,
        client: Any,
        *,
        keys: BusKeys,
        maxlen: int = STREAM_MAXLEN,
        backlog: int = 10_000,
    ) -> None:
        self._client = client
        self._keys = keys
        self._maxlen = maxlen
        self._cond = threading.Condition()
        self._changes: deque[tuple[Envelope, bytes]] = deque(maxlen=backlog)
        self._frames: dict[str, Envelope] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = _Backoff()
        self.sent = 0
        self.dropped = 0
        self.frames_dropped = 0
        self.failures = 0

    def start(self) -> RedisPublisher:
        """Start the sender thread; returns ``self``."""
        self._thread = threading.Thread(target=self._run, name="bus-redis-sender", daemon=True)
        self._thread.start()
        return self

    def publish(self, envelope: Envelope) -> None:
        """Queue ``envelope``: an incident change for the stream, a live frame for Pub/Sub.

        Raises:
            BusFormatError: Another type (this publisher has nowhere to send it), or an incident
                change that is not JSON (encoded here, so the caller hears of it).
        """
        encoded = encode_envelope(envelope) if envelope.type == INCIDENT_CHANGE else b""
        with self._cond:
            if envelope.type == INCIDENT_CHANGE:
                if len(self._changes) == self._changes.maxlen:
                    self.dropped += 1
                self._changes.append((envelope, encoded))
            elif envelope.type == LIVE_FRAME:
                camera = str(envelope.body.get("camera"))
                if camera in self._frames:
                    self.frames_dropped += 1
                self._frames[camera] = envelope
            else:
                raise BusFormatError(f"RedisPublisher cannot carry {envelope.type!r} messages")
            self._cond.notify()

    @property
    def pending(self) -> int:
        """Incident changes not yet on the stream."""
        with self._cond:
            return len(self._changes)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued incident change is on the stream; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout``) and stop the thread."""
        self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        errors = _redis_errors()
        while not self._stop.is_set():
            with self._cond:
                if not (self._changes or self._frames):
                    self._cond.wait(1.0)
                changes = list(self._changes)
                frames, self._frames = self._frames, {}
            if not (changes or frames):
                continue
            try:
                self._send(changes, frames)
            except BusFormatError as exc:
                # A live frame's metadata is not JSON (encoded first, so nothing was sent): drop
                # the overlays, which are lossy anyway; the changes go in the next round.
                self.frames_dropped += len(frames)
                log.error("cannot send live overlays: %s", exc)
                continue
            except errors as exc:
                self.failures += 1
                self.frames_dropped += len(frames)
                delay = self._backoff.failed()
                if self.failures == 1 or delay >= _BACKOFF[1]:
                    log.warning("Redis unreachable (%s); %d change(s) waiting", exc, len(changes))
                self._stop.wait(delay)
                continue
            if self._backoff.ok():
                log.warning("Redis reachable again")
            with self._cond:
                # Only what was sent leaves the queue; the deque may have dropped from its left
                # meanwhile, so remove by identity.
                sent = {id(e) for e, _ in changes}
                self._changes = deque(
                    (c for c in self._changes if id(c[0]) not in sent), maxlen=self._changes.maxlen
                )
            self.sent += len(changes)

    def _send(self, changes: list[tuple[Envelope, bytes]], frames: dict[str, Envelope]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for camera, envelope in frames.items():
            pipe.publish(self._keys.live_channel(camera), encode_envelope(envelope))
        for _envelope, encoded in changes:
            pipe.xadd(
                self._keys.incidents,
                {_FIELD: encoded},
                maxlen=self._maxlen,
                approximate=True,
            )
        with tracing.span("bus.publish", {"changes": len(changes), "frames": len(frames)}):
            pipe.execute()


class IncidentFeed:
    """Incident changes from the stream, gaps back-filled from the chain, each seq delivered once.

    A :class:`~safewatch.bus.protocol.Subscriber`. It starts at the chain's head (a dashboard
    loads the current list from the API, then follows changes) and keeps the highest sequence
    number delivered. An entry at or below it is a duplicate (skipped, counted); one above it
    by more than one means changes in between may be missing, so those are read from the chain
    first. Besides, after any Redis error, and every ``resync_seconds`` however quiet the stream,
    the feed reads the chain up to its head, which catches changes whose message never reached
    Redis (a restart emptied it, a publisher died before sending) even when nothing follows them.

    Without Redis (``client`` ``None``, a cluster without the optional Redis) the feed follows
    the chain alone, reading it every ``resync_seconds``.

    Args:
        client: From :func:`connect`, or ``None``.
        repository: Where the chain is.
        keys: The site's stream.
        block_ms: How long one read waits for new entries.
        resync_seconds: Interval of the check against the chain's head.
        start_seq: Deliver changes after this sequence number (``None``: the head now).
    """

    def __init__(
        self,
        client: Any,
        repository: IncidentRepository,
        *,
        keys: BusKeys,
        block_ms: int = 1000,
        resync_seconds: float = 5.0,
        start_seq: int | None = None,
    ) -> None:
        self._client = client
        self._repository = repository
        self._stream = keys.incidents
        self._block_ms = block_ms
        self._resync = resync_seconds
        self._order = ChainOrder(repository, start_seq)
        self._last_id: str | None = None
        self._next_sync = 0.0
        self._dirty = False
        self._backoff = _Backoff()
        self.malformed = 0
        self.failures = 0

    @property
    def last_seq(self) -> int | None:
        """The highest sequence number delivered (or started from)."""
        return self._order.last_seq

    @property
    def delivered(self) -> int:
        """Changes delivered from the stream."""
        return self._order.delivered

    @property
    def backfilled(self) -> int:
        """Changes delivered from the chain."""
        return self._order.backfilled

    @property
    def duplicates(self) -> int:
        """Stream entries dropped as already delivered."""
        return self._order.duplicates

    @property
    def foreign(self) -> int:
        """Stream entries refused as above the chain's head: not this site's."""
        return self._order.foreign

    def run(self, sink: Publisher, stop: threading.Event) -> None:
        """Deliver to ``sink`` until ``stop`` is set.

        Any exception ends one round, never the thread (a dead feed would leave every
        dashboard silent): the database down, a chain read failing in SQLAlchemy, a sink
        refusing an envelope. It is logged (with its traceback unless it is the database being
        down), the feed marked for a chain read, and the next round waits longer.
        """
        backoff = _Backoff()
        failing = False
        while not stop.is_set():
            try:
                delay = self.poll(sink)
            except Exception as exc:
                self.failures += 1
                if not failing:
                    log.warning(
                        "incident feed round failed: %s",
                        exc,
                        exc_info=not isinstance(exc, SafewatchError),
                    )
                failing = True
                self._dirty = True  # an entry read meanwhile is delivered from the chain
                delay = backoff.failed()
            else:
                if failing:
                    log.warning("incident feed works again")
                    backoff.ok()
                failing = False
            if delay:
                stop.wait(delay)

    def position(self) -> None:
        """Start from now: read the chain's head and the stream's newest entry here.

        The first round does it otherwise, and a thread may first run seconds after it was
        started on a busy host: a change committed in between would count as history and never
        reach a dashboard that had already loaded its list. Call it before starting the thread.

        Raises:
            StorageError: The chain cannot be read (the first round tries again).
        """
        if self._order.last_seq is None:
            self._order.start_at_head()
            self._next_sync = time.monotonic() + self._resync
        if self._client is not None and self._last_id is None:
            with contextlib.suppress(*_redis_errors()):  # Redis down: the first round retries
                self._last_id = self._tail_id()

    def poll(self, sink: Publisher) -> float:
        """One round: back-fill if due, then read what the stream has (waiting up to
        ``block_ms``). Returns the seconds to wait before the next round (after an error).

        Raises:
            StorageError: The chain cannot be read (the database is down: nothing to fall back
                on; the caller retries).
        """
        if self._order.last_seq is None:
            self.position()
        if self._dirty or time.monotonic() >= self._next_sync:
            self._backfill(sink, None)
        if self._client is None:
            return max(0.01, self._next_sync - time.monotonic())
        try:
            if self._last_id is None:
                self._last_id = self._tail_id()
            replies = self._client.xread(
                {self._stream: self._last_id}, count=500, block=self._block_ms
            )
        except _redis_errors() as exc:
            self.failures += 1
            if not self._dirty:
                log.warning("incident stream unreadable (%s); following the chain meanwhile", exc)
            self._dirty = True
            return self._backoff.failed()
        if self._backoff.ok():
            log.warning("incident stream readable again")
        for _stream, entries in replies or ():
            for entry_id, fields in entries:
                self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                self._take(sink, fields)
        return 0.0

    def _tail_id(self) -> str:
        """The newest entry's id, so reading starts after it ("0-0" for an empty stream)."""
        newest = self._client.xrevrange(self._stream, count=1)
        if not newest:
            return "0-0"
        entry_id = newest[0][0]
        return str(entry_id.decode() if isinstance(entry_id, bytes) else entry_id)

    def _take(self, sink: Publisher, fields: dict[Any, Any]) -> None:
        try:
            envelope = decode(fields.get(_FIELD) or fields.get(_FIELD.decode()) or b"")
        except BusFormatError as exc:
            self.malformed += 1
            log.warning("skipping an incident stream entry: %s", exc)
            return
        self._order.take(envelope, sink.publish)

    def _backfill(self, sink: Publisher, until: int | None) -> None:
        """Deliver the chain's changes after the last delivered, up to ``until`` (the head)."""
        self._order.backfill(sink.publish, until)
        self._dirty = False
        self._next_sync = time.monotonic() + self._resync


class LiveFeed:
    """Live overlay metadata of every camera from Pub/Sub, into a hub; lossy by design.

    A :class:`~safewatch.bus.protocol.Subscriber`. A message lost while Redis is down is simply
    not seen (the next frame replaces it), so it resubscribes and carries on.

    Args:
        client: From :func:`connect`.
        keys: The site's channels (only those are subscribed to).
    """

    def __init__(self, client: Any, *, keys: BusKeys) -> None:
        self._client = client
        self._keys = keys
        self.received = 0
        self.malformed = 0

    def run(self, sink: Publisher, stop: threading.Event) -> None:
        """Deliver to ``sink`` until ``stop`` is set."""
        errors = _redis_errors()
        backoff = _Backoff()
        while not stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(self._keys.live_pattern)
                backoff.ok()
                while not stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._take(sink, message.get("data"))
            except errors as exc:
                log.debug("live metadata subscription lost: %s", exc)
                stop.wait(backoff.failed())
            except Exception:  # a sink refusing a frame: never the end of the live view
                log.exception("live metadata feed round failed; resubscribing")
                stop.wait(backoff.failed())
            finally:
                with contextlib.suppress(*errors):
                    pubsub.close()

    def _take(self, sink: Publisher, data: Any) -> None:
        try:
            envelope = decode(data if isinstance(data, bytes | str) else b"")
        except BusFormatError as exc:
            self.malformed += 1
            log.debug("skipping a live message: %s", exc)
            return
        if envelope.type == LIVE_FRAME:
            self.received += 1
            sink.publish(envelope)


def check_reachable(client: Any) -> None:
    """Raise a clear error when Redis does not answer (start-up check of a cluster node).

    Raises:
        SafewatchError: No answer to ``PING``.
    """
    try:
        client.ping()
    except _redis_errors() as exc:
        raise SafewatchError(f"Redis does not answer: {exc}") from exc
