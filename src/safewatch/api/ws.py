"""WebSockets: the live incident feed and per-camera live metadata (and frames) for overlays.

``/api/v1/ws/incidents`` sends ``{"type": "incident", "kind": "opened" | "updated" | "closed" |
"status", "incident": {...}, "actor": ...}`` for every change the pipeline or an operator makes,
with ``"seq"``, the change's number in the tamper-evidence chain, under ``serve --cluster``
(``null`` otherwise: a client may drop a repeated number), ``{"type": "ping"}`` every 15 s
of silence (keeps proxies from closing an idle feed), and ``{"type": "resync", "dropped": n}``
when the socket fell so far behind that the server dropped ``n`` changes for it (more than 256
waiting): the client reads again what it shows, as after a reconnect.

Under ``serve --cluster`` a camera analysed on another node has no local frames; its ``frame``
messages are that analyzer's, relayed over Redis (no JPEG), and its video socket relays the
owner's video (:mod:`~safewatch.api.cluster_video`).

``/api/v1/ws/cameras/{id}`` first sends ``{"type": "geometry", "zones": [...], "lines": [...]}``
(again whenever the rule set changes), then for each new analysed frame a ``{"type": "frame", ...}``
message (:func:`~safewatch.api.live.frame_metadata`: normalised boxes, track ids, labels, PPE
state, which tracks are in violation) followed, with ``?video=jpeg``, by the frame itself as one
binary message (JPEG, heads hidden). The browser draws the JPEG and the boxes on one canvas, so
they always match. A viewer that falls behind skips frames; ``?fps=`` caps the rate. Every second
it also sends ``{"type": "state", "state": "streaming" | "stale" | "reconnecting" | ...,
"frame_age": ...}``, the camera's state as the runtime sees it
(:mod:`~safewatch.api.camera_state`): the tile shows that, not whether the socket is open, so a
dead camera turns its tile to reconnecting within about a second of the runtime noticing.

``/api/v1/ws/cameras/{id}/video`` is the camera's video at its own frame rate (fragmented MP4 for
Media Source Extensions; heads hidden, or the raw stream for admins, audited): see
:func:`camera_video` and :mod:`~safewatch.api.live_video`. The browser then asks the metadata
socket for ``video=none`` and draws the overlays over the video, matched by time. A disabled
camera's video socket, and one whose feed ends (the camera disabled or removed by a site
reload), is closed with :data:`FEED_ENDED` (1013), on which the browser connects again.

Authentication is the gate's (:mod:`safewatch.api.auth.gate`): a session cookie from this origin
or a bearer token; anything else is closed before the handshake completes. An open socket keeps
asking (:func:`keep_access`): once its session or token is gone (user disabled or deleted, logged
out, token revoked, expired) it is closed with 4401, once the user's role no longer allows the
stream (a demoted admin's ``mode=raw`` video) with 4403.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketState

from safewatch import tracing
from safewatch.api.auth.principal import Role
from safewatch.api.camera_state import ReadinessSource, readiness_of, tile_state
from safewatch.api.dashboard import Dashboard
from safewatch.api.deps import access_watch, client_of, get_dashboard, principal_of
from safewatch.api.live import frame_metadata
from safewatch.api.live_video import LiveVideo, VideoMode, Viewer, encode_chunk
from safewatch.api.schemas import IncidentOut

if TYPE_CHECKING:
    from safewatch.api.auth.gate import AccessWatch
    from safewatch.api.cluster_video import ClusterVideo

__all__ = [
    "FEED_ENDED",
    "close_socket",
    "cluster_video_of",
    "geometry_message",
    "keep_access",
    "live_video_of",
    "refuse",
    "router",
    "stream_video",
    "until_closed",
]

router = APIRouter(prefix="/api/v1/ws", tags=["live"])

log = logging.getLogger(__name__)

_PING_SECONDS = 15.0
_STATE_SECONDS = 1.0


FEED_ENDED = 1013
"""Close code ("try again later") of a video socket whose camera is disabled, or whose feed
ended (the camera disabled or removed by a site reload, the server stopping): the browser
connects again with backoff, so the video comes back once the camera is enabled again. Not
4404: the page stops trying on that (a camera the site does not have)."""


def _state_message(readiness: ReadinessSource | None, dashboard: Dashboard, camera_id: str) -> Any:
    # ``enabled`` from the site in force at each tick, not at the handshake: a camera disabled
    # by a site reload while watched said "unknown" (the runtime no longer reports it) for good.
    camera = dashboard.site().config.cameras.get(camera_id)
    enabled = camera is not None and camera.enabled  # (removed: not analysed either)
    known = readiness().cameras.get(camera_id) if readiness is not None else None
    return {"type": "state", **tile_state(known, enabled=enabled).model_dump(mode="json")}


def geometry_message(dashboard: Dashboard, camera_id: str) -> dict[str, Any]:
    """The zones and lines of ``camera_id`` in the rule set in force."""
    generation = dashboard.rules.rule_generation()
    rules = generation.rules
    return {
        "type": "geometry",
        "generation": generation.number,
        "zones": [
            {"id": z.id, "polygon": [list(p) for p in z.polygon]}
            for z in rules.zones_for(camera_id)
        ],
        "lines": [
            {"id": line.id, "points": [list(line.a), list(line.b)]}
            for line in rules.lines_for(camera_id)
        ],
    }


async def until_closed(websocket: WebSocket, done: anyio.Event, sender: anyio.CancelScope) -> None:
    """Read (and ignore) client messages until the client goes; then stop the sender at once.

    Cancelling the sender's scope, rather than letting it notice ``done`` after its current wait
    (up to 15 s on the incident feed), matters at shutdown: uvicorn tells every WebSocket
    "going away" and gives the app 2 s before it cancels the task itself and logs a traceback.
    """
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    except (WebSocketDisconnect, RuntimeError):
        pass
    done.set()
    sender.cancel()


async def close_socket(websocket: WebSocket) -> None:
    """Close from our side unless the client already went (then there is nothing to close)."""
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.close()


@contextlib.asynccontextmanager
async def keep_access(websocket: WebSocket, needed: Role) -> AsyncIterator[None]:
    """Run the body (an accepted socket's stream) only while the socket's credential still
    allows ``needed``.

    The gate checks the credential at the handshake only, and a live feed can stay open for a
    whole shift; a watcher asks again (:class:`~safewatch.api.auth.gate.AccessWatch`: within
    half a second of a change made through this process, at least every
    ``socket_recheck_seconds`` otherwise). Gone: closed with 4401; the role no longer enough:
    4403, the handshake's codes. The socket is closed with that code *before* the body is
    cancelled, so the body's own :func:`close_socket` finds it closed and cannot end it with a
    plain 1000 first.
    """
    watch = access_watch(websocket, needed)
    if watch is None:  # not behind the gate (principal_of refused such a socket already)
        yield
        return
    async with anyio.create_task_group() as group:
        group.start_soon(_watch_access, websocket, watch, group.cancel_scope)
        try:
            yield
        finally:
            group.cancel_scope.cancel()


async def _watch_access(websocket: WebSocket, watch: AccessWatch, body: anyio.CancelScope) -> None:
    """:func:`keep_access`'s watcher: returns after closing the socket and cancelling ``body``."""
    code, reason = await watch.until_lost()
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.close(code=code, reason=reason[:120])
    body.cancel()


@router.websocket("/incidents")
async def incident_feed(websocket: WebSocket) -> None:
    """Live incident changes (see the module docstring)."""
    principal_of(websocket)
    dashboard = get_dashboard(websocket)
    await websocket.accept()
    subscription = dashboard.live.subscribe(incidents=True)
    done = anyio.Event()
    try:
        async with keep_access(websocket, "viewer"), anyio.create_task_group() as group:
            group.start_soon(until_closed, websocket, done, group.cancel_scope)
            while not done.is_set():
                woke = await subscription.wait(_PING_SECONDS)
                if done.is_set():
                    break
                if not woke:
                    await websocket.send_json({"type": "ping"})
                    continue
                for notice in subscription.notices():
                    attributes = {"incident": notice.incident.id, "kind": notice.kind}
                    with tracing.span("ws.broadcast", attributes, parent=notice.trace):
                        await websocket.send_json(
                            {
                                "type": "incident",
                                "kind": notice.kind,
                                "actor": notice.actor,
                                "at": notice.at,
                                "seq": notice.seq,
                                "incident": IncidentOut.of(notice.incident).model_dump(mode="json"),
                            }
                        )
                if dropped := subscription.take_dropped():
                    # This socket fell more than the backlog behind: the changes dropped never
                    # come, so the page reads its lists again.
                    await websocket.send_json({"type": "resync", "dropped": dropped})
            group.cancel_scope.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        subscription.close()
        await close_socket(websocket)


@router.websocket("/cameras/{camera_id}")
async def camera_feed(
    websocket: WebSocket,
    camera_id: str,
    video: Annotated[Literal["jpeg", "none"], Query()] = "none",
    fps: Annotated[float, Query(gt=0, le=30)] = 10.0,
    width: Annotated[int, Query(ge=0, le=7680)] = 0,
) -> None:
    """Live metadata (and JPEG frames with ``?video=jpeg``) of one camera."""
    principal_of(websocket)
    dashboard = get_dashboard(websocket)
    site = dashboard.site().config
    if camera_id not in site.cameras:  # (accepted first: a browser sees the code, and stops)
        await refuse(websocket, 4404, f"camera {camera_id!r} not found")
        return
    await websocket.accept()
    subscription = dashboard.live.subscribe(cameras=[camera_id])
    done = anyio.Event()
    last_seq = 0
    last_remote = 0
    generation = -1
    readiness = readiness_of(websocket)
    next_state = 0.0
    try:
        async with keep_access(websocket, "viewer"), anyio.create_task_group() as group:
            group.start_soon(until_closed, websocket, done, group.cancel_scope)
            while not done.is_set():
                current = dashboard.rules.rule_generation().number
                if current != generation:
                    generation = current
                    await websocket.send_json(geometry_message(dashboard, camera_id))
                if time.monotonic() >= next_state:
                    # Also the keep-alive: a message every second however quiet the camera.
                    next_state = time.monotonic() + _STATE_SECONDS
                    # abandon_on_cancel: a closing socket does not wait for a slow readiness
                    # read (the API process asks the runtime, busy stopping at shutdown);
                    # waiting past uvicorn's 2 s made it cancel the task and log a traceback.
                    state = await anyio.to_thread.run_sync(
                        _state_message, readiness, dashboard, camera_id, abandon_on_cancel=True
                    )
                    await websocket.send_json(state)
                frame = dashboard.live.latest(camera_id)
                if frame is None:
                    # Analysed on another node (serve --cluster): its overlay came over the bus;
                    # the pixels are the owner's to serve (docs/cluster.md).
                    remote = dashboard.live.remote(camera_id)
                    if remote is not None and remote[0] != last_remote:
                        last_remote = remote[0]
                        await websocket.send_json(remote[1])
                        await asyncio.sleep(1.0 / fps)
                        continue
                if frame is None or frame.seq == last_seq:
                    await subscription.wait(max(0.05, next_state - time.monotonic()))
                    continue
                last_seq = frame.seq
                await websocket.send_json(frame_metadata(frame))
                if video == "jpeg":
                    privacy = dashboard.site().config.privacy_for(camera_id)
                    data = await anyio.to_thread.run_sync(
                        functools.partial(dashboard.live.jpeg, frame, privacy, max_width=width),
                        abandon_on_cancel=True,
                    )
                    await websocket.send_bytes(data)
                await asyncio.sleep(1.0 / fps)
            group.cancel_scope.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        subscription.close()
        await close_socket(websocket)


async def refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept, then close with ``code`` and ``reason``: a socket closed before it is accepted
    reaches a browser as a bare HTTP 403, without the code or the reason."""
    await websocket.accept()
    await websocket.close(code=code, reason=reason[:120])


def live_video_of(connection: HTTPConnection) -> LiveVideo:
    """The app's live video feeds (made on first use: a dashboard nobody watches opens no
    camera)."""
    state = connection.app.state  # (cluster_video.internal_video_app sets its own)
    video: LiveVideo | None = getattr(state, "live_video", None)
    if video is None:
        dashboard = get_dashboard(connection)
        video = LiveVideo(dashboard.live, dashboard.site)
        state.live_video = video
    return video


def cluster_video_of(connection: HTTPConnection) -> ClusterVideo | None:
    """The relay to other analyzers' video (``serve --cluster``), ``None`` on a single host."""
    relay: ClusterVideo | None = getattr(connection.app.state, "cluster_video", None)
    return relay


@router.websocket("/cameras/{camera_id}/video")
async def camera_video(
    websocket: WebSocket,
    camera_id: str,
    mode: Annotated[VideoMode, Query()] = "blurred",
) -> None:
    """Live video of one camera at its frame rate, as fragmented MP4 for Media Source Extensions
    (:mod:`~safewatch.api.live_video`): each binary message is a 4-byte header length, a JSON
    header (``init`` or ``fragment``, the frame's wall-clock time, its media time) and the MP4
    bytes. ``mode=blurred`` (heads hidden, re-encoded) for everyone; ``mode=raw`` (the camera's
    own packets) for admins only, written to the audit log before the first byte."""
    principal = principal_of(websocket)
    dashboard = get_dashboard(websocket)
    site = dashboard.site().config
    if camera_id not in site.cameras:
        await refuse(websocket, 4404, f"camera {camera_id!r} not found")
        return
    if not site.cameras[camera_id].enabled:  # may be enabled again: the browser keeps trying
        await refuse(websocket, FEED_ENDED, f"camera {camera_id!r} is disabled")
        return
    if mode == "raw":
        if not principal.can("admin"):
            await refuse(websocket, 4403, "the unblurred stream is for admins only")
            return
        await anyio.to_thread.run_sync(
            lambda: dashboard.auth.audit(
                "live.raw_view",
                actor=principal.username,
                subject=camera_id,
                detail={"mode": "raw"},
                client=client_of(websocket),
            )
        )
    await websocket.accept()
    async with keep_access(websocket, "admin" if mode == "raw" else "viewer"):
        relay = cluster_video_of(websocket)
        if relay is not None and dashboard.live.latest(camera_id) is None:
            # serve --cluster: analysed by another node; relayed from its owner
            await relay.relay(websocket, camera_id, mode, principal.username)
            return
        viewer = live_video_of(websocket).watch(camera_id, mode, asyncio.get_running_loop())
        await stream_video(websocket, viewer, mode)


async def stream_video(websocket: WebSocket, viewer: Viewer, mode: VideoMode) -> None:
    """Send ``viewer``'s chunks on the accepted ``websocket`` until either side goes; closes
    both. (The dashboard's video socket, and an analyzer's internal one an API node relays:
    :mod:`~safewatch.api.cluster_video`.)"""
    done = anyio.Event()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(until_closed, websocket, done, group.cancel_scope)
            while not done.is_set():
                ended = viewer.ended  # read first: what the feed sent before it ended goes out
                chunks = await viewer.next(_STATE_SECONDS)
                try:
                    for chunk in chunks:
                        await websocket.send_bytes(encode_chunk(chunk, mode, time.time()))
                    if ended:  # no chunk comes any more: the browser connects again
                        await websocket.close(
                            code=FEED_ENDED, reason="the video ended (camera disabled or removed)"
                        )
                        break
                except (WebSocketDisconnect, RuntimeError):  # gone between two frames
                    break
            group.cancel_scope.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        viewer.close()
        await close_socket(websocket)
