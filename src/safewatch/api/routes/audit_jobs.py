"""Audit jobs: submit a video (upload, or a path in a folder the server allows), follow its
progress, browse its incidents and their evidence (:mod:`safewatch.api.jobs`). Operators submit;
viewers can look.
"""

from __future__ import annotations

import os
from typing import Annotated

import anyio
from fastapi import APIRouter, File, Form, Header, Path, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from safewatch.api.dashboard import Dashboard
from safewatch.api.deps import DashboardDep, Operator, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES, ApiError
from safewatch.api.jobs import AuditJob, AuditJobs
from safewatch.api.ranges import reads_from_start, stream_range
from safewatch.api.schemas import IncidentOut

__all__ = ["JobId", "JobOut", "jobs_of", "router"]

router = APIRouter(prefix="/api/v1/audit-jobs", tags=["audit jobs"], responses=ERROR_RESPONSES)

JobId = Annotated[str, Path(pattern=r"^[a-z0-9]{12}$")]


class JobOut(BaseModel):
    """An audit job."""

    id: str
    video: str
    camera: str
    submitted_by: str
    submitted_at: float
    state: str = Field(
        description="queued, running, done, failed or cancelled; under serve --cluster also "
        "receiving (an API node is still storing the job's inputs)."
    )
    progress: float = Field(description="0 to 1.")
    frames_done: int
    frames_total: int | None
    started_at: float | None
    finished_at: float | None
    message: str
    incidents: int = Field(
        description="Incidents found (an audit) or incidents that differ (a backtest)."
    )
    kind: str = Field("audit", description="audit or backtest.")
    video_start: float | None = Field(
        None,
        description="Unix seconds of the video's first frame as submitted (start); null: the "
        "file's creation time.",
    )

    @classmethod
    def of(cls, job: AuditJob) -> JobOut:
        """From the job's state."""
        return cls(
            id=job.id,
            video=job.video,
            camera=job.camera,
            submitted_by=job.submitted_by,
            submitted_at=job.submitted_at,
            state=job.state,
            progress=round(job.progress, 4),
            frames_done=job.frames_done,
            frames_total=job.frames_total,
            started_at=job.started_at,
            finished_at=job.finished_at,
            message=job.message,
            incidents=job.incidents,
            kind=job.kind,
            video_start=job.start,
        )


START_HELP = (
    "Wall-clock time of the video's first frame, ISO 8601 (without a zone: the site's time "
    "zone); default: the file's creation time, else times count from 1970-01-01."
)


class PathJobIn(BaseModel):
    """A video on the server."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096)
    camera: str | None = Field(None, max_length=128)
    start: str | None = Field(None, max_length=64, description=START_HELP)


def jobs_of(dashboard: Dashboard) -> AuditJobs:
    jobs = dashboard.jobs
    assert isinstance(jobs, AuditJobs)
    return jobs


@router.get("", response_model=list[JobOut], summary="Audit jobs")
async def list_jobs(_user: Viewer, dashboard: DashboardDep) -> list[JobOut]:
    """Every job, newest first."""
    return [JobOut.of(j) for j in jobs_of(dashboard).all_jobs()]


@router.post("", response_model=JobOut, status_code=202, summary="Audit a video on the server")
async def submit_path(
    body: PathJobIn, request: Request, user: Operator, dashboard: DashboardDep
) -> JobOut:
    """Queue an audit of a video in a folder the server allows."""
    job = await anyio.to_thread.run_sync(
        jobs_of(dashboard).submit_path, body.path, body.camera, user.username, body.start
    )
    dashboard.auth.audit(
        "audit.submit", actor=user.username, subject=body.path, client=client_of(request)
    )
    return JobOut.of(job)


@router.post("/upload", response_model=JobOut, status_code=202, summary="Audit an uploaded video")
async def submit_upload(
    request: Request,
    user: Operator,
    dashboard: DashboardDep,
    video: Annotated[UploadFile, File(description="The video file.")],
    camera: Annotated[str | None, Form(max_length=128)] = None,
    start: Annotated[str | None, Form(max_length=64, description=START_HELP)] = None,
) -> JobOut:
    """Upload a video and queue its audit."""
    name = video.filename or "upload.mp4"
    job = await anyio.to_thread.run_sync(
        jobs_of(dashboard).submit_upload, video.file, name, camera or None, user.username, start
    )
    dashboard.auth.audit(
        "audit.upload", actor=user.username, subject=name, client=client_of(request)
    )
    return JobOut.of(job)


@router.get("/{job_id}", response_model=JobOut, summary="One audit job")
async def get_job(job_id: JobId, _user: Viewer, dashboard: DashboardDep) -> JobOut:
    """A job's state and progress."""
    return JobOut.of(jobs_of(dashboard).get(job_id))


@router.post("/{job_id}/cancel", response_model=JobOut, summary="Cancel an audit job")
async def cancel_job(
    job_id: JobId, request: Request, user: Operator, dashboard: DashboardDep
) -> JobOut:
    """Cancel a queued job, or stop a running one at its next frame (under ``serve --cluster``
    from any API node: the analyzer running it stops within about half a second)."""
    job = await anyio.to_thread.run_sync(jobs_of(dashboard).cancel, job_id)
    dashboard.auth.audit(
        "audit.cancel", actor=user.username, subject=job_id, client=client_of(request)
    )
    return JobOut.of(job)


@router.delete("/{job_id}", status_code=204, summary="Remove an audit job")
async def delete_job(job_id: JobId, _user: Operator, dashboard: DashboardDep) -> None:
    """Remove a finished job and its files."""
    await anyio.to_thread.run_sync(jobs_of(dashboard).delete, job_id)


@router.get("/{job_id}/incidents", response_model=list[IncidentOut], summary="A job's incidents")
async def job_incidents(job_id: JobId, _user: Viewer, dashboard: DashboardDep) -> list[IncidentOut]:
    """The incidents the audit found, in video order."""
    incidents = await anyio.to_thread.run_sync(jobs_of(dashboard).incidents, job_id)
    return [IncidentOut.of(i) for i in incidents]


@router.get(
    "/{job_id}/incidents/{incident_id}/{which}",
    response_class=Response,
    responses={**ERROR_RESPONSES, 200: {"content": {"image/jpeg": {}, "video/mp4": {}}}},
    summary="Evidence of a job's incident",
)
async def job_evidence(
    job_id: JobId,
    incident_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
    which: Annotated[str, Path(pattern="^(still|clip)$")],
    request: Request,
    user: Viewer,
    dashboard: DashboardDep,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """The still or clip (range requests) of an incident the audit found. Logged.

    Served by :func:`~safewatch.api.ranges.stream_range`, not ``FileResponse``: the ranges sent
    and the decision to audit (:func:`~safewatch.api.ranges.reads_from_start`) then come from the
    one parser, as for an incident's evidence; ``FileResponse`` parses ranges its own way (it
    serves multi-ranges, which could read from byte 0 without the view being logged).
    """
    path = await anyio.to_thread.run_sync(jobs_of(dashboard).evidence, job_id, incident_id, which)
    try:
        stream = await anyio.to_thread.run_sync(path.open, "rb")
    except FileNotFoundError:  # the job was deleted in between
        raise ApiError(404, "not_found", "evidence file not found") from None
    size = os.fstat(stream.fileno()).st_size
    if reads_from_start(range_header, size):
        try:
            await anyio.to_thread.run_sync(
                lambda: dashboard.auth.audit(
                    "evidence.view",
                    actor=user.username,
                    subject=f"audit-job/{job_id}/{path.name}",
                    client=client_of(request),
                )
            )
        except BaseException:
            stream.close()
            raise
    return stream_range(
        stream, size, range_header, "image/jpeg" if which == "still" else "video/mp4"
    )
