"""Answers of the incident list and statistics, serialised once and reused until incidents change.

A dashboard polls the same few queries (the first page of open incidents, counts per hour and per
camera) from every open tab, and a wall screen or a script may poll them many times a second.
Each answer costs a SQL query, building pydantic models and serialising them to JSON; under 50
clients hammering the list and the statistics (issue 13) that work, not the database, is what
saturated the API. Incidents change a few times a minute, so almost every answer is the same as
the previous one.

:class:`QueryCache` keeps the JSON bytes of each answer, keyed by the endpoint and its query
string, together with the *incident version* it was computed at (a counter the
:class:`~safewatch.api.live.LiveHub` increments on every incident change it publishes: opened,
updated or closed by the pipeline, acted on by an operator). A cached answer is served only while
the version is unchanged and it is younger than ``ttl`` seconds; the age limit covers writers the
hub does not see (another process's ``safewatch retention``, ``audit`` into the site database).
Concurrent requests for the same missing answer compute it once: the others wait for it (a
"single flight"), so a burst of identical requests costs one query, not fifty.

An answer is keyed by the request's path and raw query string (:func:`request_key`), so
:class:`CachedAnswers`, a middleware just inside the authentication gate, can send a cached
answer without routing the request: under the same load, FastAPI's routing and the validation of
the filter's query parameters were about half of a cached answer's CPU (``bench/api_profile.py``).
An answer is only ever cached by the route after it validated the very same query string and the
principal's role, so a hit needs nothing but an authenticated principal (every role may read).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from safewatch.api.auth.principal import Principal

__all__ = ["CachedAnswers", "QueryCache", "cached_answer", "request_key"]


@dataclass(slots=True)
class _Entry:
    body: bytes
    version: Hashable
    at: float


@dataclass(slots=True)
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    body: bytes | None = None


class QueryCache:
    """Serialised answers by key, valid while the incident version holds (see module doc).

    Args:
        ttl: Longest age of an answer in seconds; 0 turns the cache off.
        version: Returns the current version of what the answers depend on (the incident
            version; the dashboard adds the site's time zone, which the statistics use).
        max_entries: Answers kept (least recently used dropped first).
        clock: Monotonic clock.
    """

    def __init__(
        self,
        ttl: float,
        version: Callable[[], Hashable],
        *,
        max_entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._version = version
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self.hits = 0
        self.misses = 0

    def peek(self, key: Hashable) -> bytes | None:
        """The cached answer for ``key`` if it is still valid, without computing (never blocks
        for long: the event loop may call it before it hands a miss to a worker thread)."""
        if self._ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.version != self._version():
                return None
            if self._clock() - entry.at >= self._ttl:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.body

    def get(self, key: Hashable, compute: Callable[[], bytes]) -> bytes:
        """The cached answer for ``key``, or ``compute()``'s (stored for the next callers).

        Blocking: call it from a worker thread. An exception from ``compute`` reaches the caller
        that ran it; callers that waited for it compute again themselves.
        """
        if self._ttl <= 0:
            return compute()
        with self._lock:
            version = self._version()
            entry = self._entries.get(key)
            fresh = entry is not None and self._clock() - entry.at < self._ttl
            if entry is not None and fresh and entry.version == version:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry.body
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            self.misses += 1
        if not leader:
            flight.done.wait()
            if flight.body is not None:
                return flight.body
            return compute()
        try:
            body = compute()
            flight.body = body
            with self._lock:
                self._entries[key] = _Entry(body, version, self._clock())
                self._entries.move_to_end(key)
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
            return body
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()


def request_key(scope: Scope) -> Hashable:
    """The cache key of a request: its path and raw query string (the same bytes validated)."""
    return ("answer", scope["path"], scope.get("query_string", b""))


async def cached_answer(
    cache: QueryCache, request: Request, compute: Callable[[], bytes]
) -> Response:
    """The JSON answer of a cached route: from ``cache`` while valid, else ``compute()`` on a
    worker thread (it queries the database), stored for the next requests."""
    key = request_key(request.scope)
    body = cache.peek(key)
    if body is None:
        body = await anyio.to_thread.run_sync(cache.get, key, compute)
    return Response(body, media_type="application/json")


class CachedAnswers:
    """ASGI middleware: a ``GET`` whose answer :func:`cached_answer` holds is sent from the cache
    without routing (module doc). Installed inside the authentication gate, so only a request
    with a principal gets here, and outside nothing else: security headers, redaction and the
    body limit wrap it like any answer.

    Args:
        app: The wrapped application.
        cache: Returns the cache (the dashboard's).
    """

    def __init__(self, app: ASGIApp, cache: Callable[[], QueryCache]) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            principal = scope.get("state", {}).get("principal")
            if isinstance(principal, Principal) and principal.can("viewer"):
                body = self.cache().peek(request_key(scope))
                if body is not None:
                    await Response(body, media_type="application/json")(scope, receive, send)
                    return
        await self.app(scope, receive, send)
