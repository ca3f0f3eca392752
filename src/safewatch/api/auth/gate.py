"""The authentication gate: one ASGI middleware in front of every route, HTTP and WebSocket.

Protection does not depend on each route remembering a dependency: every path except
:data:`PUBLIC_PATHS` (liveness, the login page and endpoint, static CSS/JS with no data) is refused
here unless the request carries a valid session cookie or API token. The principal found is put in
``scope["state"]["principal"]`` for the routes' role checks (:mod:`safewatch.api.deps`), with the
gate itself (``scope["state"]["auth_gate"]``): a WebSocket or an endless response (the MJPEG
stream) asks again while it is open (:class:`AccessWatch`).

Cross-site request forgery: a browser attaches the session cookie to requests other sites trigger,
so for cookie-authenticated requests that change state (POST, PUT, PATCH, DELETE) the gate also
requires the session's CSRF token in the ``X-CSRF-Token`` header (a page of another origin can
neither read it nor set custom headers without CORS, which this server never grants) and, when the
browser sends an ``Origin``, that it is this server's. Cookie-authenticated WebSocket handshakes
must come from this origin too (cross-site WebSocket hijacking). The cookie is also
``SameSite=Strict``, a second, independent barrier. Bearer tokens are never sent by browsers on
their own, so token requests need no CSRF token.

Principals found are kept for :data:`PRINCIPAL_CACHE_SECONDS` (see :class:`PrincipalCache`): under
50 clients polling the incident list, looking the token up in the database (a worker-thread hop,
an ORM session, two queries) was three quarters of the API's busy time once the answers
themselves came from the query cache (``bench/api_profile.py``, issue 13).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import anyio
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from safewatch.api.auth.principal import Principal, Role
from safewatch.api.auth.store import AuthStore
from safewatch.api.errors import ErrorBody
from safewatch.errors import StorageError

__all__ = [
    "ACCESS_POLL_SECONDS",
    "CSRF_HEADER",
    "PUBLIC_PATHS",
    "PUBLIC_PREFIXES",
    "AccessWatch",
    "AuthGate",
    "is_public",
    "same_token",
]

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/login", "/api/v1/auth/login"})
"""Paths answered without authentication."""

PUBLIC_PREFIXES = ("/static/",)
"""Path prefixes answered without a session or token: stylesheets, scripts, icons (no data).
(The live video one cluster node relays from another is not served here at all: an analyzer
serves it on a listener of its own, by grant, :mod:`safewatch.api.cluster_video`.)"""

CSRF_HEADER = "x-csrf-token"
PRINCIPAL_CACHE_SECONDS = 1.0
"""How long a credential found valid is believed without asking the database again. A change
made through this process's :class:`AuthStore` (user updated or deleted, logout, token revoked)
ends every cached entry at once; one made by another process (``safewatch users``) or an expiry
takes effect within this time."""
RECHECK_THREADS = 4
"""Worker threads open streams' re-checks (:meth:`AuthGate.recheck`) use at most, all
sockets together."""
RECHECK_TIMEOUT = 10.0
"""Seconds a re-check waits for the database. A lookup stuck longer (a half-open pooled
connection after a PostgreSQL failover has no driver timeout) is abandoned, its thread slot given
back, and its credential may be looked up again: four such lookups held every slot for good, and
one kept its credential from ever being checked again, a revoked token's open video included."""
AUTH_UNAVAILABLE = "authentication unavailable: the database cannot be read"
"""The 503's message when the credential cannot be looked up (the cause is logged)."""
ACCESS_POLL_SECONDS = 0.5
"""How often an open stream looks at the auth store's change counter (reading an integer)."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_token(sent: str, expected: str) -> bool:
    """Whether the token a client sent is ``expected``, compared in constant time.

    Compared as UTF-8 bytes: ``hmac.compare_digest`` raises ``TypeError`` for a ``str`` with a
    non-ASCII character, and a client controls what it sends (a header is decoded as Latin-1, a
    form field as UTF-8), so ``X-CSRF-Token: \\xe9`` was a 500 instead of a refusal.
    ``surrogatepass`` keeps even a lone surrogate a mismatch rather than an error.
    """
    return hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def is_public(path: str) -> bool:
    """Whether ``path`` is served without authentication."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = ErrorBody(error=code, message=message).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=headers)


def _origin_mismatch(headers: Headers, scheme: str) -> str | None:
    """``None`` when ``Origin`` is absent (non-browser client) or equal to this server's origin;
    else what was compared, for the refusal and the log.

    Behind a reverse proxy that rewrites ``Host`` (nginx's default ``proxy_pass`` sends the
    upstream's address) every browser change and every WebSocket was refused, and the bare
    "Origin mismatch" gave the operator no hint why: the message names both sides and the fix.
    """
    origin = headers.get("origin")
    if origin is None:
        return None
    host = headers.get("host", "")
    expected = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    try:
        parts = urlsplit(origin)
    except ValueError:  # "http://[" : not an origin at all, and no reason for a 500
        pass
    else:
        if parts.netloc == host and parts.scheme == expected:
            return None
    return (
        f"Origin {origin[:200]!r} is not this server's {expected}://{host[:200]} (scheme of the "
        "connection, host from the Host header); behind a reverse proxy, have it pass the "
        "browser's Host (nginx: proxy_set_header Host $host;) and, for HTTPS, list it in "
        "runtime.http.trusted_proxies"
    )


class PrincipalCache:
    """Valid credentials seen in the last ``ttl`` seconds, by the SHA-256 of the credential.

    An entry holds while it is younger than ``ttl``, the credential has not expired, and the
    store's :attr:`~safewatch.api.auth.store.AuthStore.changes` is what it was *before* the
    lookup that produced it (so a revocation committed during that lookup is not missed).
    Only successes are kept: an unknown credential is asked again every time, so a token
    created a moment ago works at once.

    Args:
        ttl: Longest time an entry is believed, seconds; 0 turns the cache off.
        changes: The store's change counter.
        max_entries: Entries kept; when full, the cache starts over (no eviction bookkeeping
            on the hot path: a site has a few dozen live credentials).
        clock: Wall clock (expiry times are epoch seconds).
    """

    def __init__(
        self,
        ttl: float,
        changes: Callable[[], int],
        *,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl = ttl
        self._changes = changes
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[Principal, float, int]] = {}

    @staticmethod
    def key(kind: str, credential: str) -> bytes:
        """The cache key of a credential (its raw value is never kept)."""
        return hashlib.sha256(f"{kind}\0{credential}".encode()).digest()

    def get(self, key: bytes) -> Principal | None:
        """The cached principal of ``key`` if the entry still holds."""
        if self._ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        principal, until, changes = entry
        if self._clock() >= until or changes != self._changes():
            with self._lock:
                self._entries.pop(key, None)
            return None
        return principal

    def put(self, key: bytes, principal: Principal, changes: int, expires_at: float | None) -> None:
        """Keep ``principal``; ``changes`` is the counter read before the lookup."""
        if self._ttl <= 0:
            return
        until = self._clock() + self._ttl
        if expires_at is not None:
            until = min(until, expires_at)
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[key] = (principal, until, changes)


@dataclass
class _Recheck:
    """One re-check lookup of a credential, shared by the sockets that ask meanwhile."""

    done: anyio.Event
    result: tuple[Principal | None, str] | None = None
    error: StorageError | None = None
    running: bool = False
    """Its worker thread is inside the lookup (set and cleared by that thread)."""
    left: bool = False
    """The socket that started it stopped waiting (closed, or the lookup ended)."""
    started: float = 0.0
    """When it started (monotonic): one abandoned for :data:`RECHECK_TIMEOUT` is replaced."""
    generation: int = 0
    """The auth store's change counter when it started: an answer read before a later change
    (a logout, a revoked token) is no answer for a socket that saw that change."""


class AuthGate:
    """ASGI middleware that authenticates every non-public request (module docstring).

    Args:
        app: The wrapped application.
        store: Where sessions and tokens are checked.
        session_cookie: The session cookie's name.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: AuthStore,
        session_cookie: str,
        cache_seconds: float = PRINCIPAL_CACHE_SECONDS,
    ) -> None:
        self.app = app
        self.store = store
        self.cookie = session_cookie
        self.cache = PrincipalCache(cache_seconds, lambda: store.changes)
        # Re-checks' answers are kept apart: found without touching the session (see
        # recheck), they must not spare a request that follows the touch it is due.
        self._recheck_cache = PrincipalCache(cache_seconds, lambda: store.changes)
        self._recheck_threads = anyio.CapacityLimiter(RECHECK_THREADS)
        self.recheck_timeout = RECHECK_TIMEOUT
        self._rechecks: dict[bytes, _Recheck] = {}
        self._rechecks_lock = threading.Lock()

    def _credential(self, headers: Headers) -> tuple[str, str] | str:
        """``(kind, value)`` of the request's credential, or why there is none usable.

        An ``Authorization`` header of another scheme is not ours: a reverse proxy with HTTP
        basic authentication (nginx ``auth_basic``) forwards the browser's ``Basic ...`` with
        every request, and refusing it without looking at the session cookie made such a site
        unusable (every request 401). Such a header is ignored; the cookie decides (with the
        CSRF and Origin checks of a session). A ``Bearer`` header is always the credential,
        and an empty one is refused, whatever cookie comes with it.
        """
        authorization = headers.get("authorization")
        bearer = "use 'Authorization: Bearer <token>'"
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                return ("token", value.strip()) if value.strip() else bearer
        cookie = _cookies(headers).get(self.cookie)
        if cookie:
            return "session", cookie
        return bearer if authorization else "log in, or send an API token"

    def _lookup(
        self, kind: str, value: str, key: bytes, touch: bool = True
    ) -> tuple[Principal | None, str]:
        """Ask the store (a worker thread: it is a database query) and cache a success;
        ``touch=False``: a re-check, which does not count as a request (:meth:`recheck`)."""
        changes = self.store.changes
        if kind == "token":
            found = self.store.token(value)
            if found is None:
                return None, "the API token is unknown, expired or revoked"
            user, token = found
            principal = Principal(user.id, user.username, user.role, "token")
            self.cache.put(key, principal, changes, token.expires_at)
            return principal, ""
        session = self.store.session(value, touch=touch)
        if session is None:
            return None, "the session has expired; log in again"
        user, info = session
        principal = Principal(
            user.id, user.username, user.role, "session", info.csrf_token, info.id
        )
        (self.cache if touch else self._recheck_cache).put(key, principal, changes, info.expires_at)
        return principal, ""

    async def principal(self, headers: Headers) -> tuple[Principal | None, str]:
        """The principal of a request (or of an open WebSocket, asked again), or ``None`` and
        why."""
        credential = self._credential(headers)
        if isinstance(credential, str):
            return None, credential
        kind, value = credential
        key = PrincipalCache.key(kind, value)
        cached = self.cache.get(key)
        if cached is not None:
            return cached, ""
        return await anyio.to_thread.run_sync(self._lookup, kind, value, key)

    async def recheck(self, headers: Headers) -> tuple[Principal | None, str] | None:
        """:meth:`principal` for an open WebSocket or stream asking again
        (:class:`AccessWatch`), or ``None``: a lookup of this credential is
        still running (the database is slow), ask again shortly.

        Unlike a request it does not count as use of a session (its last-seen time is left
        alone, so a session still ends after ``idle`` seconds without a request, open sockets or
        not; one that has idled out is found gone). And it stays off the worker threads requests
        share: on those (anyio's default 40) a database stall parked one thread per open socket
        (a 20-camera Live grid has 41) until nothing was left for ``/healthz``, the cameras'
        state messages or any request, and a socket closing meanwhile could not finish. Here
        at most :data:`RECHECK_THREADS` threads look at once, a closing socket abandons its
        lookup instead of waiting for it, and a credential is never looked up twice at once:
        sockets asking while a lookup runs wait for its answer, and while one a closed socket
        abandoned is still running they are told to ask again later. A lookup is given
        :attr:`recheck_timeout` seconds (a :class:`StorageError` after: the socket stays and asks
        again), and one abandoned that long ago no longer holds its credential back.
        """
        credential = self._credential(headers)
        if isinstance(credential, str):
            return None, credential
        kind, value = credential
        key = PrincipalCache.key(kind, value)
        cached = self.cache.get(key) or self._recheck_cache.get(key)
        if cached is not None:
            return cached, ""
        now, generation = time.monotonic(), self.store.changes
        with self._rechecks_lock:
            shared = self._rechecks.get(key)
            if shared is not None and shared.left and now - shared.started > self.recheck_timeout:
                shared = None  # abandoned long ago and its thread still hangs: try afresh
            if shared is not None and shared.generation < generation:
                shared = None  # started before a change this socket saw: its answer may be old
            if shared is None:
                mine = self._rechecks[key] = _Recheck(
                    anyio.Event(), started=now, generation=generation
                )
        if shared is not None:
            await shared.done.wait()
            if shared.error is not None:
                raise shared.error
            return shared.result
        try:
            with anyio.fail_after(self.recheck_timeout):
                mine.result = await anyio.to_thread.run_sync(
                    self._recheck_lookup,
                    mine,
                    kind,
                    value,
                    key,
                    abandon_on_cancel=True,
                    limiter=self._recheck_threads,
                )
        except TimeoutError:
            mine.error = StorageError(
                f"the database gave no answer in {self.recheck_timeout:.0f} s"
            )
            raise mine.error from None
        except StorageError as exc:
            mine.error = exc
            raise
        finally:
            with self._rechecks_lock:
                mine.left = True
                if not mine.running and self._rechecks.get(key) is mine:
                    del self._rechecks[key]  # else the abandoned thread removes it when done
            mine.done.set()
        return mine.result

    def _recheck_lookup(
        self, recheck: _Recheck, kind: str, value: str, key: bytes
    ) -> tuple[Principal | None, str] | None:
        """:meth:`recheck`'s worker thread: the lookup, unless nobody waits for it any more;
        ends the credential's entry if the socket abandoned it meanwhile."""
        with self._rechecks_lock:
            if recheck.left:
                return None
            recheck.running = True
        try:
            return self._lookup(kind, value, key, touch=False)
        finally:
            with self._rechecks_lock:
                recheck.running = False
                if recheck.left and self._rechecks.get(key) is recheck:
                    del self._rechecks[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            principal, why = await self.principal(headers)
        except StorageError as exc:
            # The detail stays in the log: it is the driver's text (a PostgreSQL host, address
            # and user name), and nobody is authenticated yet to be shown it.
            log.error("authentication failed: %s", exc)
            principal, why = None, "authentication is unavailable (database error)"
            if scope["type"] == "http":
                await _error(503, "storage_unavailable", AUTH_UNAVAILABLE)(scope, receive, send)
                return
        if scope["type"] == "websocket":
            mismatch = None
            if principal is not None and principal.method == "session":
                mismatch = _origin_mismatch(headers, scope["scheme"])
            if principal is None or mismatch is not None:
                if mismatch is not None:
                    # A socket closed before it is accepted reaches a browser as a bare HTTP
                    # 403, without a reason: the log is where the operator sees the cause.
                    log.warning("cross-origin WebSocket refused (4403): %s", mismatch)
                await receive()
                await send({"type": "websocket.close", "code": 4401 if principal is None else 4403})
                return
        else:
            rejection = self._check_http(scope, headers, principal, why)
            if rejection is not None:
                await rejection(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        # An open socket or an endless response (the MJPEG stream) outlives the check above:
        # it asks the gate again while it runs (AccessWatch), so a user disabled, demoted or
        # logged out stops receiving.
        state["auth_gate"] = self
        await self.app(scope, receive, send)

    def _check_http(
        self, scope: Scope, headers: Headers, principal: Principal | None, why: str
    ) -> Response | None:
        method = scope["method"]
        if principal is None:
            path = scope["path"]
            accept = headers.get("accept", "")
            if method == "GET" and not path.startswith("/api/") and "text/html" in accept:
                query = scope.get("query_string", b"").decode("latin-1")
                target = path + (f"?{query}" if query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            return _error(
                401,
                "unauthenticated",
                f"authentication required: {why}",
                {"WWW-Authenticate": 'Bearer realm="safewatch"'},
            )
        if method in _SAFE_METHODS or principal.method != "session":
            return None
        mismatch = _origin_mismatch(headers, scope["scheme"])
        if mismatch is not None:
            log.warning("cross-origin request refused (403): %s", mismatch)
            return _error(403, "csrf_failed", f"cross-origin request refused: {mismatch}")
        sent = headers.get(CSRF_HEADER, "")
        if not principal.csrf_token or not same_token(sent, principal.csrf_token):
            return _error(
                403, "csrf_failed", f"missing or wrong CSRF token (send the {CSRF_HEADER} header)"
            )
        return None


class AccessWatch:
    """Whether an open stream's credential still allows ``needed``: the one implementation of
    "a stream does not outlive its access", for WebSockets (:func:`~safewatch.api.ws.keep_access`)
    and endless HTTP responses (the MJPEG stream, :mod:`~safewatch.api.routes.cameras`).

    The gate checks a credential when the request arrives, and a live view can stay open for a
    whole shift: without asking again a disabled user's open tab went on receiving the incident
    feed, an admin demoted to operator kept an open unblurred video, and an ``<img>`` showing
    the MJPEG stream went on after its token was revoked. :meth:`lost` asks
    :meth:`AuthGate.recheck` again when the auth store's
    :attr:`~safewatch.api.auth.store.AuthStore.changes` moved (a user updated or deleted, a
    logout, a token revoked in this process) and at least every ``every`` seconds (changes made
    by another process, expiries); in between it only reads an integer, so a stream may call it
    as often as it likes (:data:`ACCESS_POLL_SECONDS` for a socket's watcher). A re-check does
    not count as use of the session and runs on a few threads of its own (see
    :meth:`AuthGate.recheck`). A re-check can take up to :attr:`AuthGate.recheck_timeout` while
    the database hangs, so a stream runs :meth:`until_lost` in a task beside its sends rather
    than asking inline.

    Args:
        gate: The gate that let the stream in.
        headers: The stream's request headers (its credential).
        needed: The role the stream needs.
        every: Longest time between two lookups, seconds.
    """

    def __init__(self, gate: AuthGate, headers: Headers, needed: Role, every: float) -> None:
        self._gate = gate
        self._headers = headers
        self._needed = needed
        self._every = every
        self.poll = min(ACCESS_POLL_SECONDS, every)
        """Seconds a watcher sleeps between two calls of :meth:`lost`."""
        self._seen = gate.store.changes
        self._due = time.monotonic() + every

    async def lost(self) -> tuple[int, str] | None:
        """``None`` while access holds (or no check is due), else the WebSocket close code
        (4401: the session or token is gone; 4403: the role no longer allows the stream, the
        handshake's codes) and why."""
        store = self._gate.store
        if store.changes == self._seen and time.monotonic() < self._due:
            return None
        self._seen, self._due = store.changes, time.monotonic() + self._every
        try:
            found = await self._gate.recheck(self._headers)
        except StorageError as exc:
            # The database is away: nothing says the credential went (a change made here is
            # committed before the counter moves), and dropping every live view on a blip
            # would help nobody; asked again at the next check.
            log.warning("could not check an open stream's credential again: %s", exc)
            return None
        finally:
            # The next check is due ``every`` seconds after this one *ended*: a lookup that hung
            # for the recheck timeout (10 s, longer than ``every``) left the next one due at
            # once, so a database hang was asked about back to back, each time for 10 s.
            self._due = time.monotonic() + self._every
        if found is None:
            # Another socket's abandoned lookup of this credential is still running (the
            # database is slow): ask again at the next check, not at once (as after an error).
            return None
        principal, why = found
        if principal is None:
            return 4401, f"authentication required: {why}"
        if not principal.can(self._needed):
            return 4403, (
                f"this needs the {self._needed} role; {principal.username} is {principal.role}"
            )
        return None

    async def until_lost(self) -> tuple[int, str]:
        """Ask :meth:`lost` every :attr:`poll` seconds; return its answer once access is lost.

        For a task beside the stream (a socket's watcher, the MJPEG stream's): asked inline
        before each send, a database hang held the stream for each re-check (up to the recheck
        timeout, 10 s), so an MJPEG view delivered a frame per 10 s.
        """
        while True:
            lost = await self.lost()
            if lost is not None:
                return lost
            await anyio.sleep(self.poll)


def _cookies(headers: Headers) -> dict[str, str]:
    """The request's cookies, parsed the way browsers send them (Starlette's lenient parser).

    Not ``http.cookies.SimpleCookie``: it drops *every* cookie when one is malformed, and
    cookies ignore ports, so another app on the same host setting ``theme=dark mode`` logged
    the user out here while the login form (Starlette's ``request.cookies``) kept succeeding:
    a login loop. The parser never raises; a malformed pair is skipped alone.
    """
    return cookie_parser(headers.get("cookie", ""))
