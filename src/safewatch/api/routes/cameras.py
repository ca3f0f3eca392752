"""Cameras: the site's cameras with their live state, the newest analysed frame as a JPEG, and an
MJPEG stream for viewers that cannot use the WebSocket (``<img src>``, VLC, other tools).

Frames are the analysed ones (the analysis rate, e.g. 5 fps), so boxes drawn from the live
metadata line up with them exactly; heads are hidden per the camera's privacy settings, like the
evidence. A camera with a ``live_url`` (a media server such as MediaMTX) is shown from there at
its native rate by the live page, with the metadata on top: that is the camera's original video,
heads not hidden, so the URL is given only where the camera hides nothing (its privacy mode is
``off``) or to admins (:func:`camera_list`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from safewatch.api.camera_state import ReadinessSource, camera_states, readiness_of
from safewatch.api.dashboard import Dashboard
from safewatch.api.deps import DashboardDep, Viewer, access_watch
from safewatch.api.errors import ERROR_RESPONSES
from safewatch.api.schemas import CameraOut
from safewatch.errors import NotFound

__all__ = ["camera_list", "router"]

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"], responses=ERROR_RESPONSES)

CameraId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
_BOUNDARY = "safewatchframe"

log = logging.getLogger(__name__)


def camera_list(
    dashboard: Dashboard, readiness: ReadinessSource | None = None, *, original: bool = False
) -> list[CameraOut]:
    """Every camera of the site in force, with whether frames arrive and, given the runtime's
    ``readiness``, its state (:mod:`safewatch.api.camera_state`).

    ``live_url`` (a media server's player: the camera's original video, heads visible) only for
    a camera whose privacy mode is ``off`` (nothing is hidden from anyone there), or with
    ``original`` (the caller's user is an admin, who may see the original; the live page
    audits it). Sent to every viewer, it showed them the heads the live video hides, under a
    page that said "Heads are hidden as in evidence."
    """
    site = dashboard.site().config
    states = camera_states(readiness, {k: c.enabled for k, c in site.cameras.items()})
    cameras = []
    for key, camera in site.cameras.items():
        frame = dashboard.live.latest(key)
        cameras.append(
            CameraOut(
                id=key,
                name=camera.name or key,
                enabled=camera.enabled,
                fps=camera.fps,
                models=list(camera.models),
                live_url=(
                    camera.live_url if original or site.privacy_for(key).mode == "off" else None
                ),
                live=frame is not None,
                last_frame_at=frame.received_at if frame else None,
                width=frame.tracked.width if frame else None,
                height=frame.tracked.height if frame else None,
                state=states[key] if readiness is not None else None,
            )
        )
    return cameras


def _camera(
    dashboard: Dashboard,
    camera_id: str,
    readiness: ReadinessSource | None = None,
    *,
    original: bool = False,
) -> CameraOut:
    for camera in camera_list(dashboard, readiness, original=original):
        if camera.id == camera_id:
            return camera
    raise NotFound("camera", camera_id)


@router.get("", response_model=list[CameraOut], summary="List cameras")
async def cameras(user: Viewer, dashboard: DashboardDep, request: Request) -> list[CameraOut]:
    """The site's cameras, whether analysed frames arrive from them, and their state
    (``live_url``: see :func:`camera_list`)."""
    listed = partial(camera_list, dashboard, readiness_of(request), original=user.can("admin"))
    return await anyio.to_thread.run_sync(listed)


@router.get("/{camera_id}", response_model=CameraOut, summary="One camera")
async def camera(
    camera_id: CameraId, user: Viewer, dashboard: DashboardDep, request: Request
) -> CameraOut:
    """One camera, with its state."""
    found = partial(
        _camera, dashboard, camera_id, readiness_of(request), original=user.can("admin")
    )
    return await anyio.to_thread.run_sync(found)


def _jpeg(dashboard: Dashboard, camera_id: str, max_width: int) -> tuple[int, bytes]:
    frame = dashboard.live.latest(camera_id)
    if frame is None:
        raise NotFound("live frame of camera", camera_id)
    privacy = dashboard.site().config.privacy_for(camera_id)
    return frame.seq, dashboard.live.jpeg(frame, privacy, max_width=max_width)


@router.get(
    "/{camera_id}/frame.jpg",
    response_class=Response,
    responses={**ERROR_RESPONSES, 200: {"content": {"image/jpeg": {}}}},
    summary="Newest analysed frame (JPEG)",
)
async def frame(
    camera_id: CameraId,
    _user: Viewer,
    dashboard: DashboardDep,
    width: Annotated[int, Query(ge=0, le=7680, description="Scale to this width (0: full).")] = 0,
) -> Response:
    """The newest analysed frame, heads hidden; 404 until the camera delivered one."""
    _camera(dashboard, camera_id)
    seq, data = await anyio.to_thread.run_sync(_jpeg, dashboard, camera_id, width)
    return Response(data, media_type="image/jpeg", headers={"X-Frame-Seq": str(seq)})


@router.get(
    "/{camera_id}/mjpeg",
    response_class=StreamingResponse,
    responses={
        **ERROR_RESPONSES,
        200: {"content": {f"multipart/x-mixed-replace; boundary={_BOUNDARY}": {}}},
    },
    summary="MJPEG stream of analysed frames",
)
async def mjpeg(
    camera_id: CameraId,
    _user: Viewer,
    dashboard: DashboardDep,
    request: Request,
    width: Annotated[int, Query(ge=0, le=7680)] = 0,
    fps: Annotated[float, Query(gt=0, le=30, description="At most this many frames/s.")] = 10,
    frames: Annotated[
        int, Query(ge=0, le=1_000_000, description="Stop after this many (0: never).")
    ] = 0,
) -> StreamingResponse:
    """``multipart/x-mixed-replace`` JPEG stream; skips frames a slow viewer cannot take.

    The stream ends once its session or token no longer allows it (revoked, logged out, user
    disabled, expired): the gate checked it when the request came, and with ``frames=0`` the
    stream would otherwise go on for as long as the viewer stays, like a WebSocket before
    :func:`~safewatch.api.ws.keep_access`. Same re-check (:func:`access_watch`), run by a task
    beside the stream (:meth:`~safewatch.api.auth.gate.AccessWatch.until_lost`) and looked at
    before each frame and at least every 5 s of a camera sending none. Not asked inline: while
    the database hangs a re-check takes up to 10 s, and the stream sent a frame per re-check.
    """
    _camera(dashboard, camera_id)
    watch = access_watch(request, "viewer")

    async def parts() -> AsyncIterator[bytes]:
        subscription = dashboard.live.subscribe(cameras=[camera_id])
        checker = asyncio.create_task(watch.until_lost()) if watch is not None else None
        sent = 0
        last = 0
        try:
            while frames == 0 or sent < frames:
                if checker is not None and checker.done():
                    log.info("MJPEG stream of %s ended: %s", camera_id, checker.result()[1])
                    return
                current = dashboard.live.latest(camera_id)
                if current is None or current.seq == last:
                    await subscription.wait(5.0)
                    continue
                seq, data = await anyio.to_thread.run_sync(_jpeg, dashboard, camera_id, width)
                last = seq
                sent += 1
                yield (
                    (
                        f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(data)}\r\n\r\n"
                    ).encode()
                    + data
                    + b"\r\n"
                )
                await asyncio.sleep(1.0 / fps)
        finally:
            if checker is not None:
                checker.cancel()
            subscription.close()

    return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
