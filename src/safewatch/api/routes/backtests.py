"""Backtest jobs: the Rules page's "Test this change" (:mod:`safewatch.api.jobs`).

An operator sends the edited, unsaved rule files and names footage the server may read; the job
judges that footage with the rules in force and with the edit, detecting and tracking once, and
its result says, per rule, which incidents the edit would remove, add or change, with stills.
The job's progress and state are those of any audit job (``/api/v1/audit-jobs/{id}``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from safewatch.api.deps import DashboardDep, Operator, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES, ApiError
from safewatch.api.routes.audit_jobs import START_HELP, JobId, JobOut, jobs_of

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/backtests", tags=["backtests"], responses=ERROR_RESPONSES)


class BacktestIn(BaseModel):
    """Edited rule files to try on footage the server may read."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096, description="A video in an allowed folder.")
    camera: str | None = Field(None, max_length=128, description="Whose settings apply.")
    files: dict[str, Annotated[str, Field(max_length=1 << 20)]] = Field(
        min_length=1, max_length=64, description="Rule file name -> its edited text."
    )
    start: str | None = Field(None, max_length=64, description=START_HELP)


@router.post("", response_model=JobOut, status_code=202, summary="Test a rule change")
async def submit_backtest(
    body: BacktestIn, request: Request, user: Operator, dashboard: DashboardDep
) -> JobOut:
    """Queue a backtest of the edited rule files against the rules in force.

    The edited set is validated whole first: an invalid one is answered with every
    ``file:line`` error and nothing is queued.
    """
    job = await anyio.to_thread.run_sync(
        lambda: jobs_of(dashboard).submit_backtest(
            body.path, body.camera, body.files, user.username, start=body.start
        )
    )
    dashboard.auth.audit(
        "backtest.submit",
        actor=user.username,
        subject=body.path,
        detail={"files": sorted(body.files)},
        client=client_of(request),
    )
    return JobOut.of(job)


@router.post(
    "/upload", response_model=JobOut, status_code=202, summary="Test a rule change on an upload"
)
async def submit_backtest_upload(
    request: Request,
    user: Operator,
    dashboard: DashboardDep,
    video: Annotated[UploadFile, File(description="The video file.")],
    files: Annotated[str, Form(description="JSON object: rule file name -> its edited text.")],
    camera: Annotated[str | None, Form(max_length=128)] = None,
    start: Annotated[str | None, Form(max_length=64, description=START_HELP)] = None,
) -> JobOut:
    """Upload footage and queue a backtest of the edited rule files on it (validated first)."""
    try:
        edited = json.loads(files)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"files is not JSON: {exc}") from None
    if not isinstance(edited, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in edited.items()
    ):
        raise ApiError(422, "invalid_request", "files maps rule file names to their text")
    name = video.filename or "upload.mp4"
    job = await anyio.to_thread.run_sync(
        lambda: jobs_of(dashboard).submit_backtest(
            None, camera or None, edited, user.username, upload=(video.file, name), start=start
        )
    )
    dashboard.auth.audit(
        "backtest.upload",
        actor=user.username,
        subject=name,
        detail={"files": sorted(edited)},
        client=client_of(request),
    )
    return JobOut.of(job)


@router.get("/{job_id}/result", summary="A backtest's differences")
async def backtest_result(job_id: JobId, _user: Viewer, dashboard: DashboardDep) -> dict[str, Any]:
    """The finished job's document: per rule, unchanged / changed / removed / added incidents,
    each difference with its incidents (and stills), and scores against reviewed incidents."""
    return await anyio.to_thread.run_sync(jobs_of(dashboard).backtest_result, job_id)


@router.get(
    "/{job_id}/files/{relative:path}",
    response_class=FileResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"image/jpeg": {}}}},
    summary="A still of a backtest",
)
async def backtest_file(
    job_id: JobId,
    relative: Annotated[str, Path(max_length=512)],
    request: Request,
    user: Viewer,
    dashboard: DashboardDep,
) -> FileResponse:
    """An evidence still named in the job's document (heads hidden per the site). Logged."""
    path = await anyio.to_thread.run_sync(jobs_of(dashboard).backtest_file, job_id, relative)
    dashboard.auth.audit(
        "evidence.view",
        actor=user.username,
        subject=f"backtest/{job_id}/{path.name}",
        client=client_of(request),
    )
    return FileResponse(path, media_type="image/jpeg")
