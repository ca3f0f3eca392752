"""Recordings around an incident: which segments of its camera's continuous recording hold the
minutes before and after it, and the segment files themselves (range requests, for seeking).

Segments are the camera's own stream, copied without re-encoding (:mod:`safewatch.recording`), so
heads are **not** hidden in them. Listing them is a viewer's right (it says footage exists);
playing one is an admin's, and every first request of a file is written to the audit log
(``recording.view``) before a byte is sent, as revealing an original is.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from safewatch.api.deps import Admin, DashboardDep, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES
from safewatch.api.ranges import stream_range
from safewatch.api.routes.incidents import IncidentId
from safewatch.errors import NotFound
from safewatch.recording.segments import read_segment, segments_between
from safewatch.recording.service import recordings_root

__all__ = ["RecordingOut", "SegmentOut", "router"]

router = APIRouter(prefix="/api/v1", tags=["recordings"], responses=ERROR_RESPONSES)

_CAMERA = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class SegmentOut(BaseModel):
    """One recorded segment."""

    start: float = Field(description="Epoch seconds of its first frame.")
    end: float
    size: int
    url: str = Field(description="The MP4 file (admin; range requests; logged).")


class RecordingOut(BaseModel):
    """The recording of an incident's camera around it."""

    camera_id: str
    since: float
    until: float
    segments: list[SegmentOut]


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
        until = (incident.ended_at or incident.started_at) + after
        root = recordings_root(dashboard.site())
        found = segments_between(root, incident.camera_id, since, until)
        return RecordingOut(
            camera_id=incident.camera_id,
            since=since,
            until=until,
            segments=[
                SegmentOut(
                    start=s.start,
                    end=s.end,
                    size=s.size,
                    url=f"/api/v1/recordings/{incident.camera_id}/{s.path.parent.name}/{s.path.name}",
                )
                for s in found
            ],
        )

    return await anyio.to_thread.run_sync(find)


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
    if range_header is None or range_header.replace(" ", "").startswith("bytes=0-"):
        await anyio.to_thread.run_sync(
            lambda: dashboard.auth.audit(
                "recording.view",
                actor=user.username,
                subject=f"{camera_id}/{day}/{name}",
                detail={"start": segment.start, "end": segment.end},
                client=client_of(request),
            )
        )
    stream = await anyio.to_thread.run_sync(path.open, "rb")
    return stream_range(stream, segment.size, range_header, "video/mp4", filename=name)
