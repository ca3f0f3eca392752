"""Statistics: incident counts grouped by hour or day, camera, rule, kind, severity or status,
counted in SQL, with hours and days in the site's time zone (DST-exact, see
:mod:`safewatch.storage.incident_queries`). The analytics page and the PDF report use the same
endpoint and filter as the incident list.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from safewatch.api.deps import DashboardDep, Viewer
from safewatch.api.errors import ERROR_RESPONSES, ApiError
from safewatch.api.query_cache import cached_answer
from safewatch.api.routes.incidents import FilterDep
from safewatch.api.schemas import BucketOut

__all__ = ["StatsOut", "router"]

router = APIRouter(prefix="/api/v1/stats", tags=["statistics"], responses=ERROR_RESPONSES)

Dimension = Literal["hour", "day", "camera", "rule", "kind", "severity", "status"]


class StatsOut(BaseModel):
    """Counts per group."""

    by: list[str]
    timezone: str
    total: int
    buckets: list[BucketOut]


@router.get("", response_model=StatsOut, summary="Incident counts per group")
async def stats(
    request: Request,
    _user: Viewer,
    dashboard: DashboardDep,
    where: FilterDep,
    by: Annotated[
        list[Dimension],
        Query(description="Group by these (repeat); at most one of hour and day."),
    ],
) -> Response:
    """Count incidents matching the filter, per group (cached like the incident list)."""
    timezone = dashboard.site().config.site.timezone
    if len(set(by)) != len(by) or {"hour", "day"} <= set(by):
        raise ApiError(400, "bad_request", "group by each dimension once, and by hour or by day")

    def answer() -> bytes:
        buckets = dashboard.storage.repository.aggregate(list(by), where, tz=timezone)
        out = StatsOut(
            by=list(by),
            timezone=timezone,
            total=sum(b.count for b in buckets),
            buckets=[
                BucketOut(
                    count=b.count,
                    start=b.start,
                    camera=b.camera,
                    rule=b.rule,
                    kind=b.kind,
                    severity=b.severity,
                    status=b.status,
                )
                for b in buckets
            ],
        )
        return out.model_dump_json(by_alias=True).encode()

    return await cached_answer(dashboard.queries, request, answer)
