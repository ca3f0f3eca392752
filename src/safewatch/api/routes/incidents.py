"""Incidents: filtered, paginated lists; detail with timeline; operator actions and notes.

List queries run in SQL over indexed columns (:mod:`safewatch.storage.incident_queries`), so a page
of a site with 100,000 incidents costs milliseconds (``bench/dashboard.py``). Status changes go
through :class:`~safewatch.incidents.lifecycle.IncidentLifecycle` (``open -> acknowledged ->
resolved | false_positive``, checked inside the write transaction) and land in the incident's
timeline with the user's name; they are also pushed to the live incident feed.

A flood (one incident per person walking through a zone) is closed in one decision with
``POST /api/v1/incidents/transitions``: each incident still changes in its own checked transaction
and timeline entry, and the decision as a whole goes to the security audit log with its counts.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from safewatch.api.deps import DashboardDep, Operator, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES
from safewatch.api.query_cache import cached_answer
from safewatch.api.schemas import (
    BulkFailureOut,
    BulkTransitionIn,
    BulkTransitionOut,
    IncidentDetailOut,
    IncidentOut,
    IncidentPageOut,
    NoteIn,
    TimelineEventOut,
    TransitionIn,
)
from safewatch.domain import IncidentStatus, Severity
from safewatch.errors import NotFound
from safewatch.incidents.lifecycle import ALLOWED, InvalidTransition
from safewatch.storage import IncidentFilter

__all__ = ["incident_filter", "router"]

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"], responses=ERROR_RESPONSES)

_ID = r"^[A-Za-z0-9_-]{1,64}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_EPOCH_MAX = 1e11


async def incident_filter(
    camera: Annotated[
        list[Annotated[str, Query(pattern=_NAME)]] | None,
        Query(description="Camera id(s); repeat for several."),
    ] = None,
    rule: Annotated[
        list[Annotated[str, Query(pattern=_NAME)]] | None, Query(description="Rule id(s).")
    ] = None,
    kind: Annotated[
        list[Annotated[str, Query(pattern=_NAME)]] | None, Query(description="Rule kind(s).")
    ] = None,
    severity: Annotated[list[Severity] | None, Query(description="Severities.")] = None,
    status: Annotated[list[IncidentStatus] | None, Query(description="Statuses.")] = None,
    since: Annotated[
        float | None, Query(ge=0, le=_EPOCH_MAX, description="Started at or after (epoch s).")
    ] = None,
    until: Annotated[
        float | None, Query(ge=0, le=_EPOCH_MAX, description="Started before (epoch s).")
    ] = None,
) -> IncidentFilter:
    """The incident filter shared by lists, statistics and reports (query parameters).

    A coroutine, so FastAPI resolves it on the event loop: a plain function (or a class) as a
    dependency costs a worker-thread round trip on every request (issue 13).
    """
    return IncidentFilter(
        camera=camera or None,
        rule=rule or None,
        kind=kind or None,
        severity=[str(s) for s in severity] if severity else None,
        status=[str(s) for s in status] if status else None,
        since=since,
        until=until,
    )


FilterDep = Annotated[IncidentFilter, Depends(incident_filter)]
IncidentId = Annotated[str, Path(pattern=_ID, description="Incident id.")]


@router.get("", response_model=IncidentPageOut, summary="List incidents")
async def list_incidents(
    request: Request,
    _user: Viewer,
    dashboard: DashboardDep,
    where: FilterDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    count: Annotated[bool, Query(description="Count all matches (for the pager).")] = True,
) -> Response:
    """Incidents matching every filter, newest first.

    Answered from :attr:`Dashboard.queries <safewatch.api.dashboard.Dashboard.queries>` while no
    incident changed (see :mod:`safewatch.api.query_cache`).
    """

    def answer() -> bytes:
        page = dashboard.storage.repository.page(where, limit=limit, offset=offset, count=count)
        out = IncidentPageOut(
            items=[IncidentOut.of(i) for i in page.items],
            total=page.total,
            limit=page.limit,
            offset=page.offset,
            has_more=page.has_more if count else len(page.items) == limit,
        )
        return out.model_dump_json(by_alias=True).encode()

    return await cached_answer(dashboard.queries, request, answer)


def _detail(dashboard: DashboardDep, incident_id: str) -> IncidentDetailOut:
    incident = dashboard.storage.repository.get(incident_id)
    timeline = dashboard.lifecycle.timeline(incident_id)
    return IncidentDetailOut(
        incident=IncidentOut.of(incident),
        timeline=[
            TimelineEventOut(seq=e.seq, at=e.at, kind=e.kind, actor=e.actor, summary=e.summary)
            for e in timeline
        ],
        allowed=sorted(str(s) for s in ALLOWED[incident.status]),
    )


@router.get("/{incident_id}", response_model=IncidentDetailOut, summary="One incident")
async def get_incident(
    incident_id: IncidentId, _user: Viewer, dashboard: DashboardDep
) -> IncidentDetailOut:
    """The incident, its timeline and the statuses it may move to."""
    return await anyio.to_thread.run_sync(_detail, dashboard, incident_id)


@router.post("/{incident_id}/transition", response_model=IncidentDetailOut, summary="Change status")
async def transition(
    incident_id: IncidentId, body: TransitionIn, user: Operator, dashboard: DashboardDep
) -> IncidentDetailOut:
    """Acknowledge, resolve or mark as false positive (409 if the lifecycle forbids it)."""

    def act() -> IncidentDetailOut:
        incident = dashboard.lifecycle.transition(
            incident_id, IncidentStatus(body.status), actor=user.username, note=body.note
        )
        dashboard.live.publish_incident("status", incident, actor=user.username)
        return _detail(dashboard, incident_id)

    return await anyio.to_thread.run_sync(act)


@router.post("/transitions", response_model=BulkTransitionOut, summary="Change many statuses")
async def transition_many(
    body: BulkTransitionIn, user: Operator, dashboard: DashboardDep, request: Request
) -> BulkTransitionOut:
    """Acknowledge, resolve or mark as false positive several incidents at once.

    Incidents that cannot change (unknown, or a status the lifecycle forbids) are listed under
    ``failed`` while the others change: an operator closing a grouped row should not be stopped
    by one incident a colleague closed a second earlier. Always 200; the audit log records the
    decision with what changed and what did not.
    """
    target = IncidentStatus(body.status)
    ids = list(dict.fromkeys(body.ids))

    def act() -> BulkTransitionOut:
        changed: list[IncidentOut] = []
        failed: list[BulkFailureOut] = []
        for incident_id in ids:
            try:
                current = dashboard.storage.repository.get(incident_id)
                if (
                    body.take_open
                    and current.status is IncidentStatus.OPEN
                    and target is not IncidentStatus.ACKNOWLEDGED
                ):
                    try:
                        taken = dashboard.lifecycle.transition(
                            incident_id, IncidentStatus.ACKNOWLEDGED, actor=user.username
                        )
                    except InvalidTransition as race:
                        # The status was read outside the transaction: a colleague may have
                        # acknowledged it since. Taking it is then already done, so go on to
                        # the target rather than fail with "acknowledged, cannot become
                        # acknowledged"; any other status still fails below.
                        if race.current is not IncidentStatus.ACKNOWLEDGED:
                            raise
                    else:
                        dashboard.live.publish_incident("status", taken, actor=user.username)
                incident = dashboard.lifecycle.transition(
                    incident_id, target, actor=user.username, note=body.note
                )
            except NotFound as error:
                failed.append(BulkFailureOut(id=incident_id, error="not_found", message=str(error)))
                continue
            except InvalidTransition as error:
                failed.append(
                    BulkFailureOut(id=incident_id, error="invalid_transition", message=str(error))
                )
                continue
            dashboard.live.publish_incident("status", incident, actor=user.username)
            changed.append(IncidentOut.of(incident))
        dashboard.auth.audit(
            "incidents.transition",
            actor=user.username,
            subject=f"{len(ids)} incidents",
            detail={
                "status": body.status,
                "changed": [i.id for i in changed],
                "failed": {f.id: f.error for f in failed},
                "note": body.note,
            },
            client=client_of(request),
        )
        return BulkTransitionOut(changed=changed, failed=failed)

    return await anyio.to_thread.run_sync(act)


@router.post("/{incident_id}/notes", response_model=TimelineEventOut, summary="Add a note")
async def add_note(
    incident_id: IncidentId, body: NoteIn, user: Operator, dashboard: DashboardDep
) -> TimelineEventOut:
    """Add a note to the incident's timeline (any status)."""
    event = await anyio.to_thread.run_sync(
        lambda: dashboard.lifecycle.add_note(incident_id, body.text.strip(), actor=user.username)
    )
    return TimelineEventOut(
        seq=event.seq, at=event.at, kind=event.kind, actor=event.actor, summary=event.summary
    )
