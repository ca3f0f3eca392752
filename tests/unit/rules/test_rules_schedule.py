"""Schedules in local time: day windows, overnight windows, time zones and DST."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from safewatch.config.rules import ScheduleConfig
from safewatch.rules.schedule import schedule_allows

WEEKDAYS_DAY = ScheduleConfig(days=("mon", "tue", "wed", "thu", "fri"), between=("06:00", "22:00"))
MONDAY_NIGHT = ScheduleConfig(days=("mon",), between=("22:00", "06:00"))
WEEKEND = ScheduleConfig(days=("sat", "sun"))
EVENINGS = ScheduleConfig(between=("18:00", "24:00"))

# 2024-03-04 is a Monday.
CASES = [
    (WEEKDAYS_DAY, "2024-03-04 06:00:00", True),
    (WEEKDAYS_DAY, "2024-03-04 05:59:59", False),
    (WEEKDAYS_DAY, "2024-03-04 21:59:59", True),
    (WEEKDAYS_DAY, "2024-03-04 22:00:00", False),
    (WEEKDAYS_DAY, "2024-03-09 12:00:00", False),  # Saturday
    (MONDAY_NIGHT, "2024-03-04 22:00:00", True),
    (MONDAY_NIGHT, "2024-03-04 23:59:59", True),
    (MONDAY_NIGHT, "2024-03-05 00:00:00", True),  # Tuesday morning belongs to Monday night
    (MONDAY_NIGHT, "2024-03-05 05:59:59", True),
    (MONDAY_NIGHT, "2024-03-05 06:00:00", False),
    (MONDAY_NIGHT, "2024-03-04 05:00:00", False),  # Monday morning is Sunday's night
    (MONDAY_NIGHT, "2024-03-05 22:30:00", False),  # Tuesday night is not scheduled
    (MONDAY_NIGHT, "2024-03-04 12:00:00", False),
    (WEEKEND, "2024-03-09 00:00:00", True),
    (WEEKEND, "2024-03-10 23:59:59", True),
    (WEEKEND, "2024-03-11 00:00:00", False),
    (EVENINGS, "2024-03-06 23:59:59", True),
    (EVENINGS, "2024-03-06 17:59:59", False),
    (None, "2024-03-06 03:00:00", True),
]


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize(("schedule", "local", "expected"), CASES)
def test_local_time_windows(
    schedule: ScheduleConfig | None, local: str, expected: bool, tz: str
) -> None:
    zone = ZoneInfo(tz)
    timestamp = datetime.fromisoformat(local).replace(tzinfo=zone).timestamp()
    assert schedule_allows(schedule, timestamp, zone) is expected


def test_the_same_instant_differs_by_site_time_zone() -> None:
    instant = datetime.fromisoformat("2024-03-04T05:30:00+00:00").timestamp()
    assert not schedule_allows(WEEKDAYS_DAY, instant, ZoneInfo("UTC"))
    assert schedule_allows(WEEKDAYS_DAY, instant, ZoneInfo("Europe/Berlin"))  # 06:30 local


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        ("2024-03-31T03:59:00+00:00", True),  # 05:59 CEST: clocks went forward at 02:00
        ("2024-03-31T04:00:00+00:00", False),  # 06:00 CEST
        ("2024-03-31T00:30:00+00:00", True),  # 01:30 CET
    ],
)
def test_daylight_saving_day_uses_wall_time(utc: str, expected: bool) -> None:
    night = ScheduleConfig(days=("sat",), between=("22:00", "06:00"))
    timestamp = datetime.fromisoformat(utc).timestamp()
    assert schedule_allows(night, timestamp, ZoneInfo("Europe/Berlin")) is expected
