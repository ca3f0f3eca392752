"""Recordings around an incident: which segments of its camera's continuous recording hold the
minutes before and after it, and the segment files themselves (range requests, for seeking).

Segments are the camera's own stream, copied without re-encoding (:mod:`safewatch.recording`), so
heads are **not** hidden in them. Listing them is a viewer's right (it says footage exists);
playing one is an admin's, and every first request of a file is written to the audit log
(``recording.view``) before a byte is sent, as revealing an original is. A range of a camera's
recording across segments downloads as one MP4 (admin; ``recording.export`` in the audit log).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path as FsPath
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from safewatch.api.deps import Admin, DashboardDep, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES, ApiError
from safewatch.api.ranges import reads_from_start, stream_range
from safewatch.api.routes.incidents import IncidentId
from safewatch.errors import NotFound
from safewatch.recording.export import export_range, format_gaps
from safewatch.recording.segments import Segment, read_segment, segments_between
from safewatch.recording.service import recordings_root

__all__ = ["CameraRecordingOut", "RecordingOut", "SegmentOut", "router"]

router = APIRouter(prefix="/api/v1", tags=["recordings"], responses=ERROR_RESPONSES)

_CAMERA = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class SegmentOut(BaseModel):
    """One recorded segment."""

    start: float = Field(description="Epoch seconds of its first frame.")
    end: float
    size: int
    url: str = Field(description="The MP4 file (admin; range requests; logged).")


class CameraRecordingOut(BaseModel):
    """A camera's recorded segments over a span."""

    camera_id: str
    since: float
    until: float
    segments: list[SegmentOut]


class RecordingOut(CameraRecordingOut):
    """The recording of an incident's camera around it."""

    incident_started: float = Field(description="Epoch seconds: the incident's start.")
    incident_ended: float | None = Field(description="Its end; null while its episode runs.")


def _segments_out(camera_id: str, found: list[Segment]) -> list[SegmentOut]:
    return [
        SegmentOut(
            start=s.start,
            end=s.end,
            size=s.size,
            url=f"/api/v1/recordings/{camera_id}/{s.path.parent.name}/{s.path.name}",
        )
        for s in found
    ]


@router.get(
    "/incidents/{incident_id}/recording",
    response_model=RecordingOut,
    summary="Recorded segments around an incident",
)
async def incident_recording(
    incident_id: IncidentId,
    _user: Viewer,
    dashboard: DashboardDep,
    before: Annotated[float, Query(ge=0, le=3600, description="Seconds before its start.")] = 120,
    after: Annotated[float, Query(ge=0, le=3600, description="Seconds after its end.")] = 120,
) -> RecordingOut:
    """The segments of the incident's camera from ``before`` seconds before it to ``after``
    seconds after its end (or now, while its episode runs), oldest first."""

    def find() -> RecordingOut:
        incident = dashboard.storage.repository.get(incident_id)
        since = incident.started_at - before
        # A running incident's footage goes on until now: its start would hide all but its
        # first minutes (and the timeline the incident page draws from this span).
        end = incident.ended_at if incident.ended_at is not None else time.time()
        until = max(end, incident.started_at) + after
        root = recordings_root(dashboard.site())
        found = segments_between(root, incident.camera_id, since, until)
        return RecordingOut(
            camera_id=incident.camera_id,
            since=since,
            until=until,
            incident_started=incident.started_at,
            incident_ended=incident.ended_at,
            segments=_segments_out(incident.camera_id, found),
        )

    return await anyio.to_thread.run_sync(find)


@router.get(
    "/recordings/{camera_id}",
    response_model=CameraRecordingOut,
    summary="A camera's recorded segments over a span",
)
async def camera_recording(
    camera_id: Annotated[str, Path(pattern=_CAMERA)],
    since: Annotated[float, Query(description="Epoch seconds.")],
    until: Annotated[float, Query(description="Epoch seconds, after since.")],
    _user: Viewer,
    dashboard: DashboardDep,
) -> CameraRecordingOut:
    """The segments of any camera with footage in ``[since, until]``, oldest first (the incident
    page shows the other cameras at the same moment with it)."""
    if not until > since:
        raise ApiError(422, "invalid_request", f"until ({until}) must be after since ({since})")
    root = recordings_root(dashboard.site())
    found = await anyio.to_thread.run_sync(segments_between, root, camera_id, since, until)
    return CameraRecordingOut(
        camera_id=camera_id, since=since, until=until, segments=_segments_out(camera_id, found)
    )


@router.get(
    "/recordings/{camera_id}/{day}/{name}",
    response_class=Response,
    responses={**ERROR_RESPONSES, 200: {"content": {"video/mp4": {}}}, 206: {}},
    summary="One recorded segment (admin, logged)",
)
async def segment_file(
    camera_id: Annotated[str, Path(pattern=_CAMERA)],
    day: Annotated[str, Path(pattern=r"^\d{4}-\d{2}-\d{2}$")],
    name: Annotated[str, Path(pattern=r"^\d{10,16}-\d{10,16}\.mp4$")],
    request: Request,
    user: Admin,
    dashboard: DashboardDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """The segment's MP4 (heads not hidden: the camera's own footage)."""
    root = recordings_root(dashboard.site())
    path: FsPath = root / camera_id / day / name
    segment = await anyio.to_thread.run_sync(read_segment, camera_id, path)
    if segment is None:
        raise NotFound("recorded segment", f"{camera_id}/{day}/{name}")
    if reads_from_start(range_header, segment.size):
        await anyio.to_thread.run_sync(
            lambda: dashboard.auth.audit(
                "recording.view",
                actor=user.username,
                subject=f"{camera_id}/{day}/{name}",
                detail={"start": segment.start, "end": segment.end},
                client=client_of(request),
            )
        )
    try:
        stream = await anyio.to_thread.run_sync(path.open, "rb")
    except FileNotFoundError:  # deleted by retention since it was read: gone, not a fault
        raise NotFound("recorded segment", f"{camera_id}/{day}/{name}") from None
    return stream_range(stream, segment.size, range_header, "video/mp4", filename=name)


_EXPORT_MAX_SECONDS = 4 * 3600
"""Longest export: bounds the disk and the time one request may take (a day is ~20 GB at 2 Mb/s)."""

_HEADER_GAPS = 20
"""Most gaps listed in ``X-Safewatch-Gaps`` (~30 bytes each), then ``,...(+N more)``: a 4 h export
of a flapping camera listed >3.5 KB of them, and nginx's default ``proxy_buffer_size`` (4 KB for
all the headers) answered 502. The audit entry and the MP4's ``comment`` tag keep them all."""


@router.get(
    "/recordings/{camera_id}/export",
    response_class=FileResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"video/mp4": {}}}},
    summary="A range of a camera's recording as one MP4 (admin, logged)",
)
async def export_recording(
    camera_id: Annotated[str, Path(pattern=_CAMERA)],
    since: Annotated[float, Query(description="Epoch seconds of the range's start.")],
    until: Annotated[float, Query(description="Epoch seconds of the range's end.")],
    request: Request,
    user: Admin,
    dashboard: DashboardDep,
) -> FileResponse:
    """The camera's footage of ``[since, until]`` across its segments, by packet copy
    (:mod:`safewatch.recording.export`): bit-exact, heads not hidden, starting on the keyframe at
    or before ``since``. Written to the audit log (``recording.export``) before it is sent.

    Named ``<camera>-<start>-<end>.mp4`` by the footage it holds, not by the range asked (one
    starting in an outage starts at the next footage, and was named as if it held ``since``);
    the outages inside it are in the ``X-Safewatch-Gaps`` header (``<start>-<end>,...``, epoch
    seconds; the first 20, then ``,...(+N more)``), the audit entry and the MP4's ``comment`` tag
    (all of them)."""
    if not until > since:
        raise ApiError(422, "invalid_request", f"until ({until}) must be after since ({since})")
    if until - since > _EXPORT_MAX_SECONDS:
        raise ApiError(
            422,
            "invalid_request",
            f"at most {_EXPORT_MAX_SECONDS // 3600} h per export; "
            f"got {(until - since) / 3600:.1f} h",
        )
    root = recordings_root(dashboard.site())
    found = await anyio.to_thread.run_sync(segments_between, root, camera_id, since, until)
    if not found:
        raise NotFound("recording", f"{camera_id} from {since} to {until}")
    folder = await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="safewatch-export-"))
    target = FsPath(folder) / "export.mp4"
    try:
        try:
            stats = await anyio.to_thread.run_sync(export_range, found, since, until, target)
        except ValueError as error:
            raise NotFound("recording", f"{camera_id} from {since} to {until}: {error}") from None
        except FileNotFoundError:
            # A segment deleted by retention since it was listed (PyAV's error is a
            # FileNotFoundError too): the footage is gone, which is no server fault.
            raise NotFound(
                "recording", f"{camera_id} from {since} to {until}: deleted meanwhile"
            ) from None
        await anyio.to_thread.run_sync(
            lambda: dashboard.auth.audit(
                "recording.export",
                actor=user.username,
                subject=camera_id,
                detail={
                    "since": since,
                    "until": until,
                    "start": stats.start,
                    "end": stats.end,
                    "gaps": [list(gap) for gap in stats.gaps],
                    "segments": stats.segments,
                    "bytes": target.stat().st_size,
                },
                client=client_of(request),
            )
        )
    except BaseException:
        # Whatever ends the export (no footage, an unreadable segment, a full disk, the audit
        # log refusing it, the request cancelled), its folder goes: the partial file may be GBs
        # and nothing else would ever remove it. Shielded, so a cancellation still cleans up.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
        raise
    return FileResponse(
        target,
        media_type="video/mp4",
        filename=f"{camera_id}-{round(stats.start)}-{round(stats.end)}.mp4",
        headers={"X-Safewatch-Gaps": format_gaps(stats.gaps, _HEADER_GAPS)},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
