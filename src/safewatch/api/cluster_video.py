"""Live video of a camera another analyzer owns: an API node relays it from the camera's owner.

Under ``serve --cluster`` a camera is analysed by its owner only (:mod:`safewatch.cluster`), and
only the owner knows where the heads are in the newest analysed frame, which the blurred live
video needs (:mod:`~safewatch.api.live_video`: without them it fails closed, all blurred). So an
API node does not open the camera itself: it asks the owner.

* **Where.** Each analyzer advertises a base URL with its heartbeat (``cluster_analyzers.
  video_url``: ``cluster.advertise_host``, or the address it listens on). It serves
  ``/internal/v1/cameras/{id}/video`` on a listener of its own (``cluster.video_port``), never
  on its operations port nor on a dashboard's (role ``all`` too): the same fragmented MP4
  messages as the dashboard's ``/api/v1/ws/cameras/{id}/video``, from its own
  :class:`~safewatch.api.live_video.LiveVideo` (one feed per camera and mode, shared by every
  API node that relays it). It serves only cameras it owns now (a lease it holds), else closes
  with :data:`NOT_OWNER`.
* **Who may.** Nodes share ``cluster.secret``. The API node authenticates the browser's user
  and decides, as on one host, whether the raw stream is allowed (admins) and writes the audit
  entry; then it signs a *grant* (HMAC-SHA256 over the target analyzer, camera, mode, user, a
  random nonce and an expiry :data:`GRANT_SECONDS` ahead) and sends it in the
  :data:`GRANT_HEADER` header. The analyzer serves exactly the camera and mode the grant names,
  only if the grant names it, only once per nonce (:class:`Nonces`), and nothing without a valid
  one; it writes its own audit entry for a raw stream (``live.raw_view``, the grant's user).
  A grant is checked once, at the connection's start: a stream outlives its grant (the relay
  follows the lease and signs a new grant for each owner it connects to). Clocks: the expiry is
  the signer's wall clock; the analyzer accepts it up to :data:`CLOCK_SKEW_SECONDS` past, and
  refuses one that claims to live longer than :data:`GRANT_SECONDS` plus that skew, so nodes'
  clocks must agree within it (NTP), and a refusal says by how much they seem to differ. The
  internal port carries no TLS of its own: keep it on the cluster's network.
* **Relay.** :meth:`ClusterVideo.relay` looks up the camera's owner in the lease table (an
  unexpired lease, joined with the owner's advertised URL), opens a WebSocket to it and copies
  every message to the browser unchanged. It checks the lease again every
  :attr:`ClusterVideo.recheck_seconds`: when the camera changes hands (a failover, a rebalance, a
  drain) or its owner's stream ends, it tells the browser ``{"type": "state", "state":
  "reconnecting", "reason": ...}`` (a text message; the player ignores it and keeps its picture)
  and follows the camera to its next owner, whose first message is a new ``init``; then
  ``{"type": "state", "state": "streaming", "owner": ...}``.
* **Errors.** Close codes with a reason: 4404 unknown camera (the dashboard's check), 4503 no
  owner now (free or expired lease, an owner that advertises no video, no ``cluster.secret``,
  the database unreachable), 4502 owner unreachable or refusing. Before the first picture they
  close the socket at once; after it, the relay keeps waiting for a new owner for
  :attr:`ClusterVideo.failover_seconds` before it closes with the last reason.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import hmac
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from safewatch.api.deps import client_of
from safewatch.api.live import LiveHub
from safewatch.api.live_video import LiveVideo, VideoMode, close_at_shutdown
from safewatch.api.ws import close_socket, refuse, stream_video, until_closed
from safewatch.cluster import leases
from safewatch.config.loader import LoadedSite
from safewatch.errors import SafewatchError

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "GRANT_HEADER",
    "GRANT_SECONDS",
    "INTERNAL_PREFIX",
    "ClusterVideo",
    "Grant",
    "GrantRefused",
    "NoOwner",
    "Nonces",
    "Owner",
    "advertised_url",
    "install_cluster_video",
    "internal_video_app",
    "sign_grant",
    "verify_grant",
]

log = logging.getLogger(__name__)

GRANT_HEADER = "x-safewatch-grant"
GRANT_SECONDS = 10.0
"""Lifetime of a grant: long enough for a connection to open across a busy cluster (the relay
signs it just before it connects), short enough that one read off the wire is soon worthless
(and it is good for one connection anyway: its nonce)."""
CLOCK_SKEW_SECONDS = 5.0
"""How far the signing node's wall clock may be from the analyzer's: a grant is accepted up to
this long after its expiry, and refused if it expires more than ``GRANT_SECONDS`` plus this from
now (which also bounds how long a nonce is remembered)."""
INTERNAL_PREFIX = "/internal/v1/cameras/"
"""The analyzer's video endpoints (authenticated by grant, not by session), served only on its
own listener (``cluster.video_port``), never on a dashboard's port."""

NO_OWNER, UNREACHABLE, BAD_GRANT, UNKNOWN, NOT_OWNER = 4503, 4502, 4401, 4404, 4409
AUDIT_FAILED = 4500


class GrantRefused(ValueError):
    """A grant that is missing, forged, expired or for another camera (the message says which)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What an API node allowed: this user may watch this camera in this mode from this analyzer,
    once (``nonce``), if the connection opens before ``expires``."""

    analyzer_id: str
    camera_id: str
    mode: VideoMode
    user: str
    expires: float
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_grant(
    secret: str,
    analyzer_id: str,
    camera_id: str,
    mode: VideoMode,
    user: str,
    *,
    now: float | None = None,
    seconds: float = GRANT_SECONDS,
) -> str:
    """A grant token for the analyzer ``analyzer_id``: ``payload.signature``, both base64url,
    HMAC-SHA256 with ``secret``; a fresh random nonce each call."""
    expires = (time.time() if now is None else now) + seconds
    body = {
        "a": analyzer_id,
        "c": camera_id,
        "m": mode,
        "u": user,
        "e": round(expires, 3),
        "n": secrets.token_urlsafe(16),
    }
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify_grant(
    secret: str,
    token: str | None,
    camera_id: str,
    analyzer_id: str,
    *,
    now: float | None = None,
) -> Grant:
    """The grant in ``token`` if it is signed with ``secret``, for ``analyzer_id`` and
    ``camera_id``, and unexpired by this node's clock (:data:`CLOCK_SKEW_SECONDS` either way).
    Its nonce is not checked here (:class:`Nonces`).

    Raises:
        GrantRefused: Which of these it is not.
    """
    if not token:
        raise GrantRefused(f"no grant: the {GRANT_HEADER} header is required")
    payload, _, signature = token.partition(".")
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    try:
        valid = hmac.compare_digest(_unb64(signature), expected)
        body = json.loads(_unb64(payload)) if valid else None
    except (ValueError, UnicodeDecodeError) as error:
        raise GrantRefused(f"malformed grant: {error}") from error
    if not valid or not isinstance(body, dict):
        raise GrantRefused("grant not signed with this cluster's secret (cluster.secret differs?)")
    if body.get("a") != analyzer_id:
        raise GrantRefused(f"grant is for analyzer {body.get('a')!r}, not {analyzer_id!r}")
    if body.get("c") != camera_id:
        raise GrantRefused(f"grant is for camera {body.get('c')!r}, not {camera_id!r}")
    mode = body.get("m")
    if mode not in ("blurred", "raw"):
        raise GrantRefused(f"grant names an unknown mode {mode!r}")
    nonce = body.get("n")
    if not isinstance(nonce, str) or not nonce:
        raise GrantRefused("grant has no nonce")
    expires = float(body.get("e", 0))
    now = time.time() if now is None else now
    if now > expires + CLOCK_SKEW_SECONDS:
        raise GrantRefused(
            f"grant expired {now - expires:.1f} s ago by this node's clock (clocks must agree "
            f"within {CLOCK_SKEW_SECONDS:g} s: NTP)"
        )
    if expires - now > GRANT_SECONDS + CLOCK_SKEW_SECONDS:
        raise GrantRefused(
            f"grant expires {expires - now:.1f} s from now by this node's clock, longer than a "
            f"grant lives ({GRANT_SECONDS:g} s; clocks must agree within "
            f"{CLOCK_SKEW_SECONDS:g} s: NTP)"
        )
    return Grant(analyzer_id, camera_id, mode, str(body.get("u", "")), expires, nonce)


class Nonces:
    """The nonces of the grants an analyzer accepted, so none is used twice.

    Each is remembered until its grant could no longer be accepted anyway (expiry plus
    :data:`CLOCK_SKEW_SECONDS`), and :func:`verify_grant` refuses grants that would live longer
    than :data:`GRANT_SECONDS` plus that skew: memory holds at most the grants of the last
    ~20 s. ``limit`` caps it even so (only holders of the secret can fill it).
    """

    def __init__(self, limit: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._order: list[tuple[float, str]] = []  # heap of (forget at, nonce)

    def use(self, grant: Grant) -> None:
        """Record ``grant``'s nonce.

        Raises:
            GrantRefused: It was used before (a replay), or too many grants are in flight.
        """
        now = self._clock()
        with self._lock:
            while self._order and self._order[0][0] < now:
                _, old = heapq.heappop(self._order)
                self._until.pop(old, None)
            if grant.nonce in self._until:
                raise GrantRefused("grant already used (a grant opens one connection)")
            if len(self._until) >= self._limit:
                raise GrantRefused(f"more than {self._limit} grants in flight: try again")
            forget = grant.expires + CLOCK_SKEW_SECONDS
            self._until[grant.nonce] = forget
            heapq.heappush(self._order, (forget, grant.nonce))

    def __len__(self) -> int:
        with self._lock:
            return len(self._until)


# -- the analyzer's side ---------------------------------------------------------------------------

_internal = APIRouter(prefix=INTERNAL_PREFIX.rstrip("/"), include_in_schema=False)


@dataclass(frozen=True, slots=True)
class _Serving:
    """What the analyzer's internal endpoint checks a connection against."""

    secret: str
    analyzer_id: str
    owns: Callable[[str], bool]
    audit: Callable[[Grant, str], None]
    nonces: Nonces


@_internal.websocket("/{camera_id}/video")
async def internal_video(websocket: WebSocket, camera_id: str) -> None:
    """The camera's live video for an API node that holds a grant (see the module)."""
    serving: _Serving = websocket.app.state.internal_video
    try:
        grant = verify_grant(
            serving.secret, websocket.headers.get(GRANT_HEADER), camera_id, serving.analyzer_id
        )
        serving.nonces.use(grant)
    except GrantRefused as error:
        log.warning("internal video of %s refused: %s", camera_id, error)
        await refuse(websocket, BAD_GRANT, str(error))
        return
    video: LiveVideo = websocket.app.state.live_video
    if video.camera(camera_id) is None:
        await refuse(websocket, UNKNOWN, f"camera {camera_id!r} not in this site")
        return
    if not serving.owns(camera_id):
        await refuse(
            websocket,
            NOT_OWNER,
            f"analyzer {serving.analyzer_id} does not own camera {camera_id!r} now",
        )
        return
    if grant.mode == "raw":  # audited here too: the grant's user, as the API node saw them
        try:
            await anyio.to_thread.run_sync(serving.audit, grant, client_of(websocket))
        except SafewatchError as error:
            log.error("raw video of %s refused: audit log not written: %s", camera_id, error)
            await refuse(websocket, AUDIT_FAILED, "audit log not written: raw video refused")
            return
    await websocket.accept()
    log.log(
        logging.WARNING if grant.mode == "raw" else logging.DEBUG,
        "live video of %s (%s) relayed for %s",
        camera_id,
        grant.mode,
        grant.user,
    )
    viewer = video.watch(camera_id, grant.mode, asyncio.get_running_loop())
    await stream_video(websocket, viewer, grant.mode)


def internal_video_app(
    live: LiveHub,
    site: Callable[[], LoadedSite],
    secret: str,
    *,
    analyzer_id: str,
    owns: Callable[[str], bool],
    engine: Engine,
) -> FastAPI:
    """The app serving ``/internal/v1/cameras/{id}/video``: an analyzer's own video listener,
    never a dashboard's app (its auth gate does not know grants, and a node of role api owns no
    camera). Video made here, from ``live``'s analysed frames, of cameras ``owns`` says this
    analyzer (``analyzer_id``) holds now, for API nodes holding a grant signed with ``secret``
    for it; raw streams audited in ``engine``'s audit log."""
    from safewatch.api.auth.store import AuthStore

    store = AuthStore(engine)

    def audit(grant: Grant, client: str) -> None:
        store.audit(
            "live.raw_view",
            actor=grant.user,
            subject=grant.camera_id,
            detail={"mode": "raw", "served_by": grant.analyzer_id},
            client=client,
        )

    app = FastAPI(
        title="safewatch internal video",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=close_at_shutdown,  # its feeds' threads must not outlive it
    )
    app.state.live_video = LiveVideo(live, site)
    app.state.internal_video = _Serving(secret, analyzer_id, owns, audit, Nonces())
    app.include_router(_internal)
    return app


def advertised_url(bound: str, host: str | None) -> str:
    """The base URL other nodes reach a server bound at ``bound`` on: ``host`` if given, else
    the bound address, with this machine's name in place of a wildcard (0.0.0.0, ::)."""
    parts = urlsplit(bound)
    name = host or parts.hostname or ""
    if name in ("", "0.0.0.0", "::"):
        name = socket.getfqdn()
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"{parts.scheme}://{name}:{parts.port}"


# -- the API node's side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    """Where the camera's video is now."""

    analyzer_id: str
    epoch: int
    url: str


@dataclass(frozen=True, slots=True)
class NoOwner:
    """Why the camera's video cannot be had now, and the close code that says so; ``transient``
    when the lease could not be read (a database hiccup, no news about the owner)."""

    code: int
    reason: str
    transient: bool = False


class _Moved(Exception):
    """The camera changed hands (or lost its owner) while relayed."""


class ClusterVideo:
    """An API node's relay of other analyzers' live video (see the module).

    Args:
        engine: The cluster's database (the lease table).
        secret: ``cluster.secret``; ``None`` refuses every relay with the reason.
        recheck_seconds: How often a relayed camera's lease is read again (follows a move).
        failover_seconds: How long a relay that showed video waits for a new owner.
        connect_timeout: Seconds to open the connection to an owner.
    """

    def __init__(
        self,
        engine: Engine,
        secret: str | None,
        *,
        recheck_seconds: float = 1.0,
        failover_seconds: float = 60.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._engine = engine
        self._secret = secret
        self.recheck_seconds = recheck_seconds
        self.failover_seconds = failover_seconds
        self.connect_timeout = connect_timeout
        self.cache_seconds = recheck_seconds / 2
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, Owner | NoOwner]] = {}

    def owner(self, camera_id: str) -> Owner | NoOwner:
        """The camera's owner now and its video URL, or why there is none (database clock).

        One answer serves every viewer of the camera for ``cache_seconds`` (half a recheck): a
        wall of forty tiles in ten browsers asks the database forty times a second, not four
        hundred.
        """
        now = time.monotonic()
        with self._lock:
            known = self._known.get(camera_id)
        if known is not None and now - known[0] < self.cache_seconds:
            return known[1]
        found = self._look_up(camera_id)
        with self._lock:
            self._known[camera_id] = (now, found)
        return found

    def _look_up(self, camera_id: str) -> Owner | NoOwner:
        if self._secret is None:
            return NoOwner(
                NO_OWNER,
                "cluster.secret is not set: the video of cameras analysed on other nodes "
                "cannot be relayed",
            )
        try:
            with Session(self._engine) as session:
                view = leases.owner_of(session, camera_id)
        except SQLAlchemyError as error:
            return NoOwner(NO_OWNER, f"database unreachable: {type(error).__name__}", True)
        if view is None:
            return NoOwner(NO_OWNER, f"camera {camera_id!r} has not been placed on an analyzer yet")
        if view.owner is None:
            before = f" (last owner {view.previous_owner})" if view.previous_owner else ""
            return NoOwner(NO_OWNER, f"no analyzer owns camera {camera_id!r} now{before}")
        if not view.video_url:
            return NoOwner(
                NO_OWNER,
                f"owner {view.owner} serves no video to other nodes (no cluster.secret there?)",
            )
        return Owner(view.owner, view.epoch, view.video_url)

    async def relay(self, websocket: WebSocket, camera_id: str, mode: VideoMode, user: str) -> None:
        """Relay the camera's video from its owner to the accepted ``websocket`` until the
        browser goes (or no owner comes back in time); the user's right to ``mode`` is checked
        and audited by the caller."""
        done = anyio.Event()
        ended: tuple[int, str] | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(until_closed, websocket, done, group.cancel_scope)
                ended = await self._follow(websocket, camera_id, mode, user)
                group.cancel_scope.cancel()
            if ended is not None:  # (None: the browser went first)
                log.info("live video relay of %s ended: %s", camera_id, ended[1])
                await websocket.close(code=ended[0], reason=ended[1][:120])
        except (WebSocketDisconnect, RuntimeError):
            pass  # the browser went while we were sending or closing
        finally:
            await close_socket(websocket)

    async def _follow(
        self, websocket: WebSocket, camera_id: str, mode: VideoMode, user: str
    ) -> tuple[int, str]:
        """Relay from each owner in turn; the close code and reason once it gives up."""
        said: tuple[Any, ...] | None = None
        showed = False  # some owner's picture reached the browser
        lost_at: float | None = None  # when the last owner's stream ended

        async def say(state: str, **detail: str) -> None:
            nonlocal said, showed, lost_at
            if state == "streaming":
                showed, lost_at = True, None
            key = (state, *detail.values())
            if key != said:
                said = key
                await websocket.send_json({"type": "state", "state": state, **detail})

        while True:
            found = await anyio.to_thread.run_sync(self.owner, camera_id, abandon_on_cancel=True)
            if isinstance(found, Owner):
                owner = found.analyzer_id
                try:
                    ended = await self._session(websocket, camera_id, mode, user, found, say)
                    found = NoOwner(UNREACHABLE, ended)
                except _Moved as moved:
                    found = NoOwner(NO_OWNER, str(moved))
                except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
                    found = NoOwner(UNREACHABLE, f"owner {owner} unreachable: {error or 'timeout'}")
            if not showed:  # never showed a picture: say why at once
                return found.code, found.reason
            lost_at = time.monotonic() if lost_at is None else lost_at
            if time.monotonic() - lost_at > self.failover_seconds:
                return found.code, found.reason
            await say("reconnecting", reason=found.reason)
            await anyio.sleep(min(0.5, self.recheck_seconds))

    async def _session(
        self,
        websocket: WebSocket,
        camera_id: str,
        mode: VideoMode,
        user: str,
        owner: Owner,
        say: Callable[..., Any],
    ) -> str:
        """Copy one owner's stream to the browser; why it ended (the owner's close).

        Raises:
            _Moved: The lease names another owner (or none) now.
            OSError, TimeoutError, InvalidHandshake: The owner could not be reached.
        """
        if self._secret is None:  # (owner() says so before any session)
            raise RuntimeError("no cluster.secret to sign a grant with")
        base = owner.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        url = f"{base}{INTERNAL_PREFIX}{quote(camera_id, safe='')}/video"
        grant = sign_grant(self._secret, owner.analyzer_id, camera_id, mode, user)
        async with connect(
            url,
            additional_headers={GRANT_HEADER: grant},
            open_timeout=self.connect_timeout,
            max_size=64 * 1024 * 1024,
            compression=None,
            ping_interval=5.0,
            ping_timeout=5.0,
            close_timeout=1.0,  # a frozen owner answers no close: leave it after a second
        ) as upstream:
            moved: list[str] = []
            streaming = False  # said once the owner's first video arrives (not at a refusal)
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_lease, camera_id, owner, moved, group.cancel_scope)
                try:
                    async for message in upstream:
                        if isinstance(message, bytes):
                            if not streaming:
                                streaming = True
                                await say("streaming", owner=owner.analyzer_id)
                            await websocket.send_bytes(message)
                except ConnectionClosed:
                    pass
                group.cancel_scope.cancel()
            if moved:
                raise _Moved(moved[0])
            close = upstream.close_code
            why = upstream.close_reason or "connection lost"
            return f"owner {owner.analyzer_id} ended the stream ({close}: {why})"

    async def _watch_lease(
        self, camera_id: str, owner: Owner, moved: list[str], scope: anyio.CancelScope
    ) -> None:
        """Read the lease every ``recheck_seconds``; cancel ``scope`` once it changed."""
        while True:
            await anyio.sleep(self.recheck_seconds)
            found = await anyio.to_thread.run_sync(self.owner, camera_id, abandon_on_cancel=True)
            if isinstance(found, Owner) and found == owner:
                continue
            if isinstance(found, NoOwner) and found.transient:
                continue  # a database hiccup is no reason to cut a working stream
            moved.append(
                f"camera moved from {owner.analyzer_id} to {found.analyzer_id}"
                if isinstance(found, Owner)
                else found.reason
            )
            scope.cancel()
            return


def install_cluster_video(app: FastAPI, engine: Engine, site: Callable[[], LoadedSite]) -> None:
    """An API-serving node of ``serve --cluster``: relay the video of cameras analysed elsewhere
    (``/api/v1/ws/cameras/{id}/video``). Its own cameras' video is served to the other nodes on
    a listener of its own (:func:`internal_video_app`), never from this app."""
    secret = site().config.cluster.secret
    value = secret.get_secret_value() if secret is not None else None
    app.state.cluster_video = ClusterVideo(
        engine, value, failover_seconds=max(60.0, 6 * site().config.cluster.lease_seconds)
    )
