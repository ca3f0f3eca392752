"""Incident filters, pages and aggregates, computed in SQL on SQLite and PostgreSQL alike.

The dashboard and reports ask two kinds of questions: "which incidents" (a filtered, paginated
list with the total count for the pager) and "how many" (counts per hour or day, camera, rule, kind,
severity or status). Both are single SQL statements over indexed columns; no incident is loaded to
count it.

Hours and days are the site's local ones, and days are not always 24 h (daylight saving time), so
SQL counts per 15-minute UTC slot and the slots are folded into local hours or days here. Every
time zone in use today is a whole number of 15 minutes from UTC, so a slot never straddles a local
hour boundary, and the result is exact across DST changes. The rows SQL returns are bounded by the
number of non-empty slots (for a year, at most 35,040 per category combination).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, ColumnElement, Integer, Select, cast, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from safewatch.domain import Incident
from safewatch.storage.tables import IncidentRow

__all__ = [
    "MAX_LIMIT",
    "Bucket",
    "Dimension",
    "IncidentFilter",
    "Page",
    "aggregate_statement",
    "fold_buckets",
]

MAX_LIMIT = 10_000
"""Largest page size."""

SLOT_SECONDS = 900
"""SQL counts per 15-minute UTC slot; see the module docstring."""

Dimension = Literal["hour", "day", "camera", "rule", "kind", "severity", "status"]
"""What :meth:`IncidentRepository.aggregate` can group by."""

_TIME: frozenset[str] = frozenset({"hour", "day"})
_COLUMNS: dict[str, InstrumentedAttribute[str]] = {
    "camera": IncidentRow.camera_id,
    "rule": IncidentRow.rule_id,
    "kind": IncidentRow.rule_kind,
    "severity": IncidentRow.severity,
    "status": IncidentRow.status,
}

OneOrMany = str | StrEnum | Collection[str] | None
"""A filter value: one value, several (any of them), or ``None`` for no filter."""


def _values(value: OneOrMany) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # StrEnum is a str
        return [str(value)]
    return [str(v) for v in value]


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """Which incidents: every given criterion must hold; a collection means "any of these".

    Attributes:
        camera: Camera id(s).
        rule: Rule id(s).
        kind: Rule kind(s) (``ppe``, ``zone_intrusion``, ...).
        severity: Severity (or severities).
        status: Operator status(es).
        since: Started at or after (epoch seconds).
        until: Started before (epoch seconds).
        ended_since: Ended at or after (epoch seconds), or still open. With ``until``, the
            incidents that overlap a time range, however long before it they started (a
            backtest scores a reviewed incident already running when its footage begins).
    """

    camera: OneOrMany = None
    rule: OneOrMany = None
    kind: OneOrMany = None
    severity: OneOrMany = None
    status: OneOrMany = None
    since: float | None = None
    until: float | None = None
    ended_since: float | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        """The SQL conditions for this filter."""
        clauses: list[ColumnElement[bool]] = []
        for name, column in _COLUMNS.items():
            values = _values(getattr(self, name))
            if values is not None:
                clauses.append(column.in_(values) if len(values) != 1 else column == values[0])
        if self.since is not None:
            clauses.append(IncidentRow.started_at >= self.since)
        if self.until is not None:
            clauses.append(IncidentRow.started_at < self.until)
        if self.ended_since is not None:
            clauses.append(
                or_(IncidentRow.ended_at.is_(None), IncidentRow.ended_at >= self.ended_since)
            )
        return clauses


@dataclass(frozen=True, slots=True)
class Page:
    """One page of incidents and what a pager needs.

    Attributes:
        items: The incidents on this page, newest first.
        total: How many incidents match the filter in all.
        limit: Page size asked for.
        offset: Incidents skipped before this page.
    """

    items: list[Incident]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        """Whether a later page has incidents."""
        return self.offset + len(self.items) < self.total


@dataclass(frozen=True, slots=True)
class Bucket:
    """One aggregate row: a count and the group it counts.

    Only the fields grouped by are set. ``start`` is the epoch second at which the local hour or
    day begins (format it in the site's time zone for labels).
    """

    count: int
    start: float | None = None
    camera: str | None = None
    rule: str | None = None
    kind: str | None = None
    severity: str | None = None
    status: str | None = None


def check_paging(limit: int, offset: int) -> None:
    """Raise ``ValueError`` for a page size or offset out of range."""
    if not 0 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 0 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")


def check_dimensions(by: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``by`` names known dimensions, at most one of them a time."""
    known = _TIME | set(_COLUMNS)
    unknown = [d for d in by if d not in known]
    if unknown or not by:
        raise ValueError(
            f"group by one or more of {', '.join(sorted(known))}; got {', '.join(by) or 'nothing'}"
        )
    if len(set(by)) != len(by):
        raise ValueError(f"group by names a dimension twice: {', '.join(by)}")
    if len(_TIME.intersection(by)) > 1:
        raise ValueError("group by hour or by day, not both")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ``ValueError`` naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _slot(dialect: str) -> ColumnElement[Any]:
    scaled = IncidentRow.started_at / SLOT_SECONDS
    if dialect == "sqlite":
        # SQLite has no floor() unless built with math functions; CAST truncates, which is floor
        # for the positive epoch times incidents have.
        return cast(scaled, Integer)
    return cast(func.floor(scaled), BigInteger)


def aggregate_statement(by: Sequence[str], where: IncidentFilter, dialect: str) -> Select[Any]:
    """``SELECT [slot,] <columns>, count(*) ... GROUP BY ...`` for :func:`fold_buckets`."""
    check_dimensions(by)
    groups: list[ColumnElement[Any]] = []
    if _TIME.intersection(by):
        groups.append(_slot(dialect).label("slot"))
    groups += [_COLUMNS[d].label(d) for d in by if d in _COLUMNS]
    statement = select(*groups, func.count().label("n")).where(*where.clauses())
    return statement.group_by(*groups)


def _bucket_start(slot: int, unit: str, tz: ZoneInfo) -> float:
    local = datetime.fromtimestamp(slot * SLOT_SECONDS, UTC).astimezone(tz)
    if unit == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
    else:
        # A new datetime, not local.replace(hour=0): replace keeps fold=1 from the second pass of
        # a repeated midnight hour (America/Havana, 2024-11-03), which would split that day into
        # two buckets. A day starts at its first midnight (fold 0).
        start = datetime(local.year, local.month, local.day, tzinfo=tz)
    return start.timestamp()


def fold_buckets(rows: Sequence[Any], by: Sequence[str], tz: ZoneInfo) -> list[Bucket]:
    """Turn the statement's rows into buckets, merging 15-minute slots into local hours or days.

    Buckets come sorted by start, then by the other keys in the order of ``by``.
    """
    unit = next((d for d in by if d in _TIME), None)
    names = [d for d in by if d in _COLUMNS]
    counts: dict[tuple[Any, ...], int] = defaultdict(int)
    for row in rows:
        mapping = row._mapping
        start = _bucket_start(int(mapping["slot"]), unit, tz) if unit is not None else None
        counts[(start, *(mapping[name] for name in names))] += int(mapping["n"])
    buckets = []
    for key in sorted(counts, key=lambda k: tuple("" if v is None else v for v in k)):
        fields = dict(zip(names, key[1:], strict=True))
        buckets.append(Bucket(count=counts[key], start=key[0], **fields))
    return buckets
