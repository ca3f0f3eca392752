"""Reports: the filtered incident view and its analytics as a PDF (:mod:`safewatch.reports`).

The filter is the incident list's (same query parameters), the counts are the analytics page's
SQL aggregates, and the stills are the evidence stills of the newest incidents that have one
(heads hidden). A report contains evidence, so exporting one is written to the audit log with its
filter. Operators and admins may export.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
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

__all__ = ["MAX_BARS", "build_report", "over_time", "router"]

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


MAX_BARS = 366
"""Most bars of the report's chart over time: a year, day by day. A longer period is drawn in
weeks, then months, then years (:func:`over_time`)."""

_UNITS = ("day", "week", "month", "year")


def _floor(day: date, unit: str) -> date:
    """The first day of the ``unit`` (a Monday for a week) that holds ``day``."""
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "year":
        return day.replace(month=1, day=1)
    return day


def _next(day: date, unit: str) -> date:
    """The first day of the ``unit`` after the one that starts on ``day``."""
    if unit == "day":
        return day + timedelta(days=1)
    if unit == "week":
        return day + timedelta(days=7)
    if unit == "month":
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day.replace(year=day.year + 1)


def _bars(first: date, last: date, unit: str) -> int:
    """How many ``unit`` bars cover ``first`` to ``last`` (inclusive)."""
    if unit == "day":
        return (last - first).days + 1
    if unit == "week":
        return (_floor(last, unit) - _floor(first, unit)).days // 7 + 1
    if unit == "month":
        return (last.year - first.year) * 12 + last.month - first.month + 1
    return last.year - first.year + 1


def over_time(
    buckets: Sequence[Bucket], where: IncidentFilter, zone: ZoneInfo, now: float
) -> tuple[str, list[Bucket]]:
    """The per-day counts as the chart's bars, every bar of the period, quiet ones at zero.

    The aggregate returns only days with incidents, so the chart drew a quiet week as nothing
    at all and two busy days a week apart side by side. The period is the filter's ``since``
    (else the first incident's day) to its ``until`` (exclusive; else now), but never past now
    (or the last incident, for a clock that runs behind a camera's): a day still to come has
    no incidents yet, and is no quiet day.

    The period is bounded by the data, not only by the filter: the filter accepts any
    ``since``/``until`` up to the year 5138, and ``since=0&until=1e11`` once made 1.16 M daily
    buckets (5 s) and a PDF of 1.16 M bars in an API worker. A period longer than
    :data:`MAX_BARS` days starts at its first incident (the quiet decades before it say
    nothing); one still longer is drawn in weeks, then months, then years, so the chart has at
    most :data:`MAX_BARS` bars (a year-long report stays day by day). Without incidents there
    are no bars (the chart says so).

    Returns:
        The unit of the bars (``day``, ``week``, ``month`` or ``year``) and the bars, each
        starting at the local midnight its unit begins.
    """
    counts: dict[date, int] = {}
    for bucket in buckets:
        if bucket.start is not None:
            day = datetime.fromtimestamp(bucket.start, zone).date()
            counts[day] = counts.get(day, 0) + bucket.count
    if not counts:
        return "day", []
    today = datetime.fromtimestamp(now, zone).date()
    first = datetime.fromtimestamp(where.since, zone).date() if where.since is not None else None
    last = max(today, *counts)
    if where.until is not None:
        last = min(last, datetime.fromtimestamp(where.until - 1e-3, zone).date())
    if first is None or _bars(first, last, "day") > MAX_BARS:
        first = min(counts)  # the data lies inside the filter's period
    unit = next((u for u in _UNITS if _bars(first, last, u) <= MAX_BARS), "year")
    bars: dict[date, int] = {}
    day = _floor(first, unit)
    while day <= last:
        bars[day] = 0
        day = _next(day, unit)
    for day, count in counts.items():
        bars[_floor(day, unit)] = bars.get(_floor(day, unit), 0) + count
    return unit, [
        Bucket(count=count, start=datetime(d.year, d.month, d.day, tzinfo=zone).timestamp())
        for d, count in sorted(bars.items())
    ]


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
    unit, by_day = over_time(days, where, zone, now)
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
                ReportStill(
                    incident,
                    dashboard.storage.evidence.read_bytes(incident.snapshot),
                    # The camera's setting now: a still is hidden as its camera was configured
                    # when it was written, and the site file does not keep older settings.
                    heads_hidden=site.privacy_for(incident.camera_id).mode != "off",
                )
            )
        except SafewatchError:
            # Retention clears the incident's pointer when it removes the still, but the file
            # can still be gone or unreadable: removed since this page was read, removed by a
            # retention run older than that clearing, deleted outside safewatch (verify names
            # it), or the evidence store is down. The report goes out without that still.
            continue
    return ReportData(
        site=site.site.name,
        timezone=timezone,
        filters=_describe(where, zone),
        generated_by=actor,
        generated_at=now,
        total=page.total,
        incidents=page.items,
        by_day=by_day,
        by_day_unit=unit,
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
