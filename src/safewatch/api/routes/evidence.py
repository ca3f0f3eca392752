"""Evidence: an incident's still and clip (heads hidden), streamed with range requests, and the
logged reveal of a sealed, unblurred original.

Every view is written to the audit log (who, which incident, which file, from where): evidence
shows people at work, and a site must be able to say who looked at it. A clip is played in many
range requests; one record is written per playback (the request that starts at byte 0), not per
piece. A reveal needs the admin role and a reason, and goes through
:func:`safewatch.incidents.sealed.reveal`, which appends to the reveal log
(:func:`safewatch.incidents.site_storage.reveal_log`) before decrypting; it is also recorded in the
audit log with its outcome (revealed, or refused and why), and the plaintext is withheld if that
record cannot be written.
"""

from __future__ import annotations

import shutil
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from safewatch.api.deps import Admin, DashboardDep, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES, ApiError
from safewatch.api.ranges import reads_from_start, stream_range
from safewatch.api.routes.incidents import IncidentId
from safewatch.errors import NotFound, SafewatchError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/incidents", tags=["evidence"], responses=ERROR_RESPONSES)

_MEDIA = {"still": "image/jpeg", "clip": "video/mp4"}


def _open(dashboard: DashboardDep, incident_id: str, which: str) -> tuple[str, int]:
    incident = dashboard.storage.repository.get(incident_id)
    key = incident.snapshot if which == "still" else incident.clip
    if key is None:
        raise NotFound(f"{which} of incident", incident_id)
    info = dashboard.storage.evidence.backend.stat(key)
    if info is None:
        raise NotFound(f"{which} file of incident", incident_id)
    return key, info.size


async def _serve(
    which: str,
    incident_id: str,
    request: Request,
    range_header: str | None,
    user: Viewer,
    dashboard: DashboardDep,
) -> Response:
    key, size = await anyio.to_thread.run_sync(_open, dashboard, incident_id, which)
    if reads_from_start(range_header, size):
        await anyio.to_thread.run_sync(
            lambda: dashboard.auth.audit(
                "evidence.view",
                actor=user.username,
                subject=key,
                detail={"incident": incident_id, "file": which},
                client=client_of(request),
            )
        )
    # The size of the file opened, not the one looked up: a running incident's still is
    # replaced (atomically) when a clearer frame comes, and a replacement in between gave the
    # browser the old file's Content-Length for the new file's bytes, a broken image.
    stream, size = await anyio.to_thread.run_sync(dashboard.storage.evidence.open_sized, key)
    return stream_range(
        stream,
        size,
        range_header,
        _MEDIA[which],
        filename=f"{incident_id}.{key.rsplit('.', 1)[-1]}",
    )


_FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    **ERROR_RESPONSES,
    206: {"description": "Part of the file (range request)."},
    416: {"description": "Range outside the file."},
}


@router.get(
    "/{incident_id}/still",
    response_class=Response,
    responses={**_FILE_RESPONSES, 200: {"content": {"image/jpeg": {}}}},
    summary="Evidence still (JPEG)",
)
async def still(
    incident_id: IncidentId,
    request: Request,
    user: Viewer,
    dashboard: DashboardDep,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """The annotated still, heads hidden. Logged in the audit log."""
    return await _serve("still", incident_id, request, range_header, user, dashboard)


@router.get(
    "/{incident_id}/clip",
    response_class=Response,
    responses={**_FILE_RESPONSES, 200: {"content": {"video/mp4": {}}}},
    summary="Evidence clip (MP4, range requests)",
)
async def clip(
    incident_id: IncidentId,
    request: Request,
    user: Viewer,
    dashboard: DashboardDep,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """The H.264 clip around the incident, heads hidden; supports ``Range``. Logged."""
    return await _serve("clip", incident_id, request, range_header, user, dashboard)


class RevealIn(BaseModel):
    """Why an original is revealed (a case or request number); recorded."""

    reason: str = Field(min_length=3, max_length=500, pattern=r"\S")
    file: str = Field("still", pattern="^(still|clip)$")


@router.post(
    "/{incident_id}/reveal",
    response_class=Response,
    responses={**ERROR_RESPONSES, 200: {"content": {"image/jpeg": {}, "video/mp4": {}}}},
    summary="Reveal the unblurred original (admin, logged)",
)
async def reveal_original(
    incident_id: IncidentId, body: RevealIn, request: Request, user: Admin, dashboard: DashboardDep
) -> Response:
    """Decrypt the incident's sealed original still or clip; every attempt is logged."""
    from safewatch.incidents.recorder import ORIGINAL_CLIP_SUFFIX, ORIGINAL_STILL_SUFFIX
    from safewatch.incidents.sealed import EvidenceKey, reveal
    from safewatch.incidents.site_storage import reveal_log

    site = dashboard.site().config
    if not site.evidence.keep_originals:
        raise ApiError(
            409, "no_originals", "this site does not keep originals (evidence.keep_originals)"
        )
    store = dashboard.storage.evidence

    def run() -> tuple[str, str]:
        incident = dashboard.storage.repository.get(incident_id)
        suffix = ORIGINAL_STILL_SUFFIX if body.file == "still" else ORIGINAL_CLIP_SUFFIX
        name = store.key_for(
            incident.id, camera_id=incident.camera_id, at=incident.started_at, suffix=suffix
        )
        journal = reveal_log(dashboard.site(), store)

        def record(outcome: str) -> None:
            dashboard.auth.audit(
                "evidence.reveal",
                actor=user.username,
                subject=name,
                detail={"incident": incident_id, "reason": body.reason, "outcome": outcome},
                client=client_of(request),
            )

        # The record says what happened: written before the plaintext leaves this function
        # (refused, with the plaintext removed, if it cannot be), and for a refusal too.
        try:
            key = EvidenceKey.from_env(site.evidence.key_env)
            path = reveal(
                store, name, key=key, actor=user.username, reason=body.reason, log_path=journal
            )
        except SafewatchError as refused:
            record(f"refused: {refused}")
            raise
        try:
            record("revealed")
        except BaseException:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        return str(path), name

    path, _name = await anyio.to_thread.run_sync(run)
    media = _MEDIA[body.file]
    folder = str(anyio.Path(path).parent)
    return FileResponse(
        path,
        media_type=media,
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
