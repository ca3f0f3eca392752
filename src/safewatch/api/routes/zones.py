"""Zones and lines: read them per camera; draw and edit them on a camera still; saved into the rule
files (the zone stays in the file that defines it) through the rule set's full validation, so a
zone that a rule needs cannot be deleted and a polygon without area is refused with the rule
file's own message.
"""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from safewatch.api.deps import Admin, DashboardDep, Operator, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES
from safewatch.api.routes.rules import SaveOut, recorder, rule_files, saved
from safewatch.config.ruleset import rule_line_ids, rule_zone_ids

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["zones"], responses=ERROR_RESPONSES)

GeometryId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Coordinate = Annotated[float, Field(ge=0.0, le=1.0)]


class GeometryOut(BaseModel):
    """A zone (polygon) or a line (tripwire), normalised to the frame (0-1, top-left origin)."""

    id: str
    kind: Literal["zone", "line"]
    camera: str
    points: list[list[float]]
    rules: list[str] = Field(description="Rules that refer to it.")


class ZoneIn(BaseModel):
    """A polygon drawn on a camera."""

    model_config = ConfigDict(extra="forbid")
    camera: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    points: list[tuple[Coordinate, Coordinate]] = Field(min_length=3, max_length=200)
    description: str | None = Field(None, max_length=200)
    file: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}\.ya?ml$",
        description="Rule file for a new zone (default: the first).",
    )


class LineIn(ZoneIn):
    """A tripwire: two points, first to second gives its direction."""

    points: list[tuple[Coordinate, Coordinate]] = Field(min_length=2, max_length=2)


@router.get("/zones", response_model=list[GeometryOut], summary="Zones and lines")
async def geometry(
    _user: Viewer,
    dashboard: DashboardDep,
    camera: Annotated[str | None, Query(max_length=128)] = None,
) -> list[GeometryOut]:
    """Zones and lines in force (of one camera, if given), with the rules using them."""
    rules = dashboard.rules.rule_generation().rules
    # Zone ids and line ids are separate namespaces (a zone and a line may share an id): keyed
    # by id alone, each listed the other's rules as its own.
    users_of: dict[tuple[str, str], list[str]] = {}
    for rule in rules.rules:
        refs = [("zone", z) for z in rule_zone_ids(rule)]
        refs += [("line", line_id) for line_id in rule_line_ids(rule)]
        for ref in refs:
            users_of.setdefault(ref, []).append(rule.id)
    out = [
        GeometryOut(
            id=z.id,
            kind="zone",
            camera=z.camera_id,
            points=[list(p) for p in z.polygon],
            rules=users_of.get(("zone", z.id), []),
        )
        for z in rules.zones
    ]
    out += [
        GeometryOut(
            id=line.id,
            kind="line",
            camera=line.camera_id,
            points=[list(line.a), list(line.b)],
            rules=users_of.get(("line", line.id), []),
        )
        for line in rules.lines
    ]
    return [g for g in out if camera is None or g.camera == camera]


async def _put(
    section: str, key: str, body: ZoneIn, request: Request, user: Admin, dashboard: DashboardDep
) -> SaveOut:
    def run() -> SaveOut:
        result = rule_files(dashboard).put_geometry(
            section,
            key,
            body.camera,
            [list(p) for p in body.points],
            description=body.description,
            file=body.file,
            record=recorder(dashboard, user.username, client_of(request), f"{section}.save"),
        )
        return saved(dashboard, result)

    return await anyio.to_thread.run_sync(run)


async def _delete(
    section: str, key: str, request: Request, user: Admin, dashboard: DashboardDep
) -> SaveOut:
    def run() -> SaveOut:
        record = recorder(dashboard, user.username, client_of(request), f"{section}.delete")
        return saved(dashboard, rule_files(dashboard).delete_geometry(section, key, record=record))

    return await anyio.to_thread.run_sync(run)


class PreviewOut(BaseModel):
    """The rule file an unsaved zone or line edit would change, as it would read."""

    file: str
    text: str


async def _preview(section: str, key: str, body: ZoneIn, dashboard: DashboardDep) -> PreviewOut:
    def run() -> PreviewOut:
        name, text = rule_files(dashboard).geometry_edit(
            section,
            key,
            body.camera,
            [list(p) for p in body.points],
            description=body.description,
            file=body.file,
        )
        return PreviewOut(file=name, text=text)

    return await anyio.to_thread.run_sync(run)


@router.post("/zones/{zone_id}/preview", response_model=PreviewOut, summary="A zone edit, unsaved")
async def preview_zone(
    zone_id: GeometryId, body: ZoneIn, _user: Operator, dashboard: DashboardDep
) -> PreviewOut:
    """The rule file with this zone as drawn, not saved (for "Test this change")."""
    return await _preview("zones", zone_id, body, dashboard)


@router.post("/lines/{line_id}/preview", response_model=PreviewOut, summary="A line edit, unsaved")
async def preview_line(
    line_id: GeometryId, body: LineIn, _user: Operator, dashboard: DashboardDep
) -> PreviewOut:
    """The rule file with this line as drawn, not saved (for "Test this change")."""
    return await _preview("lines", line_id, body, dashboard)


@router.put("/zones/{zone_id}", response_model=SaveOut, summary="Create or change a zone")
async def put_zone(
    zone_id: GeometryId, body: ZoneIn, request: Request, user: Admin, dashboard: DashboardDep
) -> SaveOut:
    """Save a polygon into the rule files (validated whole, then reloaded)."""
    return await _put("zones", zone_id, body, request, user, dashboard)


@router.delete("/zones/{zone_id}", response_model=SaveOut, summary="Remove a zone")
async def delete_zone(
    zone_id: GeometryId, request: Request, user: Admin, dashboard: DashboardDep
) -> SaveOut:
    """Remove a zone (409 while a rule uses it: the message names each rule and its line)."""
    return await _delete("zones", zone_id, request, user, dashboard)


@router.put("/lines/{line_id}", response_model=SaveOut, summary="Create or change a line")
async def put_line(
    line_id: GeometryId, body: LineIn, request: Request, user: Admin, dashboard: DashboardDep
) -> SaveOut:
    """Save a tripwire into the rule files."""
    return await _put("lines", line_id, body, request, user, dashboard)


@router.delete("/lines/{line_id}", response_model=SaveOut, summary="Remove a line")
async def delete_line(
    line_id: GeometryId, request: Request, user: Admin, dashboard: DashboardDep
) -> SaveOut:
    """Remove a line (409 while a rule uses it: the message names each rule and its line)."""
    return await _delete("lines", line_id, request, user, dashboard)
