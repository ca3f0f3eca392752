"""Incident queries on SQLite and PostgreSQL: filters, pages with totals, and aggregates per local
hour/day (across a daylight-saving change and a half-hour zone), camera, rule, kind, severity."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from safewatch.domain import Incident, IncidentStatus, Severity, incident_id
from safewatch.storage import IncidentFilter, IncidentRepository

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, tz: ZoneInfo = BERLIN, fold: int = 0) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold).timestamp()


def make(
    started_at: float,
    *,
    camera: str = "yard",
    rule: str = "hardhat",
    kind: str = "ppe",
    severity: Severity = Severity.HIGH,
    track: int = 1,
) -> Incident:
    return Incident(
        id=incident_id(camera, rule, track, started_at),
        camera_id=camera,
        rule_id=rule,
        rule_kind=kind,
        severity=severity,
        track_ids=(track,),
        started_at=started_at,
        ended_at=started_at + 4,
        peak_confidence=0.7,
        message="m",
    )


# Berlin leaves summer time on 2023-10-29: 03:00 CEST becomes 02:00 CET, so that day has 25 hours
# and 02:30 happens twice.
DST_INCIDENTS = [
    make(at("2023-10-28T23:30:00"), track=1),
    make(at("2023-10-29T00:10:00"), camera="dock", track=2),
    make(at("2023-10-29T01:59:00"), rule="no-entry", kind="zone_intrusion", track=3),
    make(at("2023-10-29T02:30:00", fold=0), severity=Severity.LOW, track=4),
    make(at("2023-10-29T02:30:00", fold=1), camera="dock", track=5),
    make(at("2023-10-29T23:50:00"), severity=Severity.LOW, track=6),
    make(at("2023-10-30T00:05:00"), camera="dock", rule="no-entry", kind="zone_intrusion", track=7),
]


@pytest.fixture
def repo(db_engine: Engine) -> IncidentRepository:
    repo = IncidentRepository(db_engine)
    for incident in DST_INCIDENTS:
        repo.upsert(incident)
    return repo


def local(start: float | None, fmt: str) -> str:
    assert start is not None
    return datetime.fromtimestamp(start, BERLIN).strftime(fmt)


def test_days_follow_the_site_time_zone_across_dst(repo: IncidentRepository) -> None:
    days = repo.aggregate(["day"], tz="Europe/Berlin")
    assert [(local(b.start, "%Y-%m-%d %H:%M"), b.count) for b in days] == [
        ("2023-10-28 00:00", 1),
        ("2023-10-29 00:00", 5),
        ("2023-10-30 00:00", 1),
    ]


def test_hours_tell_the_repeated_hour_apart(repo: IncidentRepository) -> None:
    hours = repo.aggregate(["hour"], tz="Europe/Berlin")
    labels = [(local(b.start, "%d %H:%M %Z"), b.count) for b in hours]
    assert labels == [
        ("28 23:00 CEST", 1),
        ("29 00:00 CEST", 1),
        ("29 01:00 CEST", 1),
        ("29 02:00 CEST", 1),
        ("29 02:00 CET", 1),
        ("29 23:00 CET", 1),
        ("30 00:00 CET", 1),
    ]


def test_days_in_a_half_hour_zone(db_engine: Engine) -> None:
    """India is UTC+5:30: local midnight is 18:30 UTC, inside a UTC hour."""
    utc = ZoneInfo("UTC")
    repo = IncidentRepository(db_engine)
    repo.upsert(make(at("2024-03-01T18:29:00", utc), track=1))  # 23:59 IST on 1 March
    repo.upsert(make(at("2024-03-01T18:31:00", utc), track=2))  # 00:01 IST on 2 March
    repo.upsert(make(at("2024-03-01T18:44:00", utc), track=3))
    days = repo.aggregate(["day"], tz="Asia/Kolkata")
    kolkata = ZoneInfo("Asia/Kolkata")
    assert [
        (datetime.fromtimestamp(b.start or 0, kolkata).strftime("%m-%d %H:%M"), b.count)
        for b in days
    ] == [("03-01 00:00", 1), ("03-02 00:00", 2)]


def test_a_repeated_midnight_is_one_day(db_engine: Engine) -> None:
    """Havana leaves summer time at 01:00 on 2024-11-03, back to 00:00: that day's midnight hour
    happens twice, and an incident in its second pass is still that one day."""
    havana = ZoneInfo("America/Havana")
    repo = IncidentRepository(db_engine)
    repo.upsert(make(at("2024-11-03T00:20:00", havana, fold=0), track=1))
    repo.upsert(make(at("2024-11-03T00:40:00", havana, fold=1), track=2))
    repo.upsert(make(at("2024-11-03T12:00:00", havana), track=3))
    days = repo.aggregate(["day"], tz="America/Havana")
    assert [(b.start, b.count) for b in days] == [(at("2024-11-03T00:00:00", havana), 3)]


def test_utc_days_by_default(repo: IncidentRepository) -> None:
    days = repo.aggregate(["day"])
    # In UTC: 23:30, 00:10, 01:59 CEST are 21:30, 22:10, 23:59 on the 28th; 02:30 CEST/CET,
    # 23:50 CET and 00:05 CET are 00:30, 01:30, 22:50 and 23:05 on the 29th.
    assert [(datetime.fromtimestamp(b.start or 0, ZoneInfo("UTC")).day, b.count) for b in days] == [
        (28, 3),
        (29, 4),
    ]


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        (["camera"], [("dock", 3), ("yard", 4)]),
        (["rule"], [("hardhat", 5), ("no-entry", 2)]),
        (["kind"], [("ppe", 5), ("zone_intrusion", 2)]),
        (["severity"], [("high", 5), ("low", 2)]),
        (["status"], [("open", 7)]),
    ],
)
def test_counts_per_category(
    repo: IncidentRepository, by: list[str], expected: list[tuple[str, int]]
) -> None:
    buckets = repo.aggregate(by)  # type: ignore[arg-type]
    assert [(getattr(b, by[0]), b.count) for b in buckets] == expected
    assert all(b.start is None for b in buckets)


def test_day_by_camera_with_a_filter(repo: IncidentRepository) -> None:
    where = IncidentFilter(kind="ppe")
    buckets = repo.aggregate(["day", "camera"], where, tz="Europe/Berlin")
    assert [(local(b.start, "%m-%d"), b.camera, b.count) for b in buckets] == [
        ("10-28", "yard", 1),
        ("10-29", "dock", 2),
        ("10-29", "yard", 2),
    ]


@pytest.mark.parametrize(
    ("by", "message"),
    [
        ([], "group by one or more"),
        (["week"], "group by one or more"),
        (["hour", "day"], "not both"),
        (["camera", "camera"], "twice"),
    ],
)
def test_bad_grouping_is_refused(repo: IncidentRepository, by: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        repo.aggregate(by)  # type: ignore[arg-type]


def test_unknown_time_zone_is_refused(repo: IncidentRepository) -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        repo.aggregate(["day"], tz="Mars/Olympus")


@pytest.mark.parametrize(
    ("where", "tracks"),
    [
        (IncidentFilter(kind="zone_intrusion"), [7, 3]),
        (IncidentFilter(severity=Severity.LOW), [6, 4]),
        (IncidentFilter(severity=[Severity.LOW, Severity.HIGH], camera="dock"), [7, 5, 2]),
        (IncidentFilter(camera=["dock", "yard"], rule="no-entry"), [7, 3]),
        (
            IncidentFilter(status=[IncidentStatus.OPEN, IncidentStatus.RESOLVED]),
            [7, 6, 5, 4, 3, 2, 1],
        ),
        (
            IncidentFilter(
                since=at("2023-10-29T02:00:00", fold=1), until=at("2023-10-30T00:00:00")
            ),
            [6, 5],
        ),
        (IncidentFilter(kind="ppe", severity="low", camera="dock"), []),
    ],
)
def test_filters(repo: IncidentRepository, where: IncidentFilter, tracks: list[int]) -> None:
    page = repo.page(where)
    assert [i.track_ids[0] for i in page.items] == tracks
    assert page.total == len(tracks)


def test_pages_carry_the_total(repo: IncidentRepository) -> None:
    first = repo.page(limit=3)
    second = repo.page(limit=3, offset=3)
    last = repo.page(limit=3, offset=6)
    assert (first.total, second.total, last.total) == (7, 7, 7)
    assert (first.has_more, second.has_more, last.has_more) == (True, True, False)
    ids = [i.id for p in (first, second, last) for i in p.items]
    assert len(ids) == len(set(ids)) == 7


def test_list_accepts_the_new_filters(repo: IncidentRepository) -> None:
    assert [i.track_ids[0] for i in repo.list(kind="zone_intrusion", camera="dock")] == [7]
    assert [i.track_ids[0] for i in repo.list(severity="low", limit=1)] == [6]


def test_a_snapshot_does_not_see_what_is_stored_during_it(repo: IncidentRepository) -> None:
    """A report's total, charts and table come from separate queries; a camera storing an
    incident (or an operator closing one) between them made them disagree. Reads in one snapshot
    see the table as the first read found it, on SQLite and PostgreSQL alike."""
    late = make(at("2023-10-30T09:00:00"), camera="dock", track=8)
    with repo.snapshot("read a report") as reads:
        before = reads.page()
        repo.upsert(late)  # committed by another connection meanwhile
        repo.set_status(DST_INCIDENTS[0].id, IncidentStatus.ACKNOWLEDGED, actor="op")
        assert reads.page().total == before.total == 7
        assert sum(b.count for b in reads.aggregate(["camera"])) == 7
        statuses = {b.status: b.count for b in reads.aggregate(["status"])}
        assert statuses == {IncidentStatus.OPEN.value: 7}
    assert repo.page().total == 8  # outside the snapshot the new state is seen
