"""Reports: the filtered incident view and its analytics as a PDF (:mod:`safewatch.reports`).

The filter is the incident list's (same query parameters), the counts are the analytics page's
SQL aggregates, and the stills are the evidence stills of the newest incidents that have one
(heads hidden). A report contains evidence, so exporting one is written to the audit log with its
filter. Operators and admins may export.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from safewatch.api.dashboard import Dashboard
from safewatch.api.deps import DashboardDep, Operator, client_of
from safewatch.api.errors import ERROR_RESPONSES
from safewatch.api.routes.incidents import FilterDep
from safewatch.errors import SafewatchError
from safewatch.reports import ReportData, ReportStill, render_incident_report
from safewatch.storage import Bucket, IncidentFilter

__all__ = ["build_report", "every_day", "router"]

router = APIRouter(prefix="/api/v1/reports", tags=["reports"], responses=ERROR_RESPONSES)


def _describe(where: IncidentFilter, zone: ZoneInfo) -> list[str]:
    lines = []
    for name in ("camera", "rule", "kind", "severity", "status"):
        value = getattr(where, name)
        if value:
            shown = value if isinstance(value, str) else ", ".join(str(v) for v in value)
            lines.append(f"{name}: {shown}")
    for name in ("since", "until"):
        value = getattr(where, name)
        if value is not None:
            when = datetime.fromtimestamp(value, UTC).astimezone(zone)
            lines.append(f"{name}: {when:%Y-%m-%d %H:%M}")
    return lines


def every_day(
    buckets: Sequence[Bucket], where: IncidentFilter, zone: ZoneInfo, now: float
) -> list[Bucket]:
    """The per-day counts with every day of the period, quiet ones at zero.

    The aggregate returns only days with incidents, so the chart drew a quiet week as nothing
    at all and two busy days a week apart side by side. The period is the filter's ``since``
    (else the first incident's day) to its ``until`` (exclusive; else now).
    """
    counts = {b.start: b.count for b in buckets if b.start is not None}
    if where.since is None and not counts:
        return list(buckets)
    first = where.since if where.since is not None else min(counts)
    last = where.until - 1e-3 if where.until is not None else max([now, *counts])
    day = datetime.fromtimestamp(first, zone).date()
    end = datetime.fromtimestamp(last, zone).date()
    days: dict[float, int] = {}
    while day <= end:
        days[datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()] = 0
        day += timedelta(days=1)
    days.update(counts)
    return [Bucket(count=count, start=start) for start, count in sorted(days.items())]


def build_report(
    dashboard: Dashboard, where: IncidentFilter, actor: str, stills: int, rows: int = 500
) -> ReportData:
    """Gather the report's data for ``where``."""
    site = dashboard.site().config
    timezone = site.site.timezone
    zone = ZoneInfo(timezone)
    now = time.time()
    # One snapshot for every query, so that the total, the charts and the table agree while
    # cameras keep storing incidents and operators keep closing them.
    with dashboard.storage.repository.snapshot("read the report's incidents") as reads:
        page = reads.page(where, limit=rows)
        days = reads.aggregate(["day"], where, tz=timezone)
        hour_buckets = reads.aggregate(["hour"], where, tz=timezone)
        by: dict[str, list[tuple[str, int]]] = {}
        for name in ("camera", "rule", "kind", "severity", "status"):
            buckets = reads.aggregate([name], where, tz=timezone)
            by[name] = [(str(getattr(b, name)), b.count) for b in buckets]
    by_day = every_day(days, where, zone, now)
    hours = [0] * 24
    for bucket in hour_buckets:
        if bucket.start is not None:
            hours[datetime.fromtimestamp(bucket.start, UTC).astimezone(zone).hour] += bucket.count
    chosen: list[ReportStill] = []
    for incident in page.items:
        if len(chosen) >= stills:
            break
        if incident.snapshot is None:
            continue
        try:
            chosen.append(
                ReportStill(incident, dashboard.storage.evidence.read_bytes(incident.snapshot))
            )
        except SafewatchError:
            continue  # removed by retention: the table still lists it
    return ReportData(
        site=site.site.name,
        timezone=timezone,
        filters=_describe(where, zone),
        generated_by=actor,
        generated_at=now,
        total=page.total,
        incidents=page.items,
        by_day=by_day,
        by_hour=hours,
        by=by,
        stills=chosen,
    )


@router.get(
    "/incidents.pdf",
    response_class=Response,
    responses={**ERROR_RESPONSES, 200: {"content": {"application/pdf": {}}}},
    summary="Incident report (PDF)",
)
async def incident_report(
    request: Request,
    user: Operator,
    dashboard: DashboardDep,
    where: FilterDep,
    stills: Annotated[int, Query(ge=0, le=24, description="Evidence stills to include.")] = 6,
    rows: Annotated[int, Query(ge=1, le=5000, description="Incidents listed at most.")] = 500,
) -> Response:
    """The filtered incidents, their counts and charts, and evidence stills, as a PDF."""

    def run() -> bytes:
        data = build_report(dashboard, where, user.username, stills, rows)
        dashboard.auth.audit(
            "report.export",
            actor=user.username,
            detail={
                "filters": list(data.filters),
                "incidents": data.total,
                "stills": len(data.stills),
            },
            client=client_of(request),
        )
        return render_incident_report(data, max_rows=rows)

    pdf = await anyio.to_thread.run_sync(run)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="safewatch-incidents-{stamp}.pdf"'},
    )
