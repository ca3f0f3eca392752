"""The dashboard's site-time helpers (``static/js/api.js``) run under Node.js: wall times typed in
the site's zone, presets and chart axes around daylight-saving changes, checked against Python's
``zoneinfo`` (the server's reading of the same wall time).

The module is imported as the browser would, with a stub ``document`` that carries the site's zone;
Node's own zone is set to another one, so nothing may depend on the machine's zone. Skipped where
Node.js is missing (``.ci/run`` installs it with npm).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from node_js import needs_node, run_api_js

pytestmark = needs_node


def run_js(timezone: str, body: str) -> Any:
    """Run ``body`` (an async function body with ``site``, the imported ``api.js``, in scope) for
    a site in ``timezone``; what it returns, through JSON."""
    prelude = (
        "globalThis.document = {querySelector: () => null,"
        f" body: {{dataset: {{timezone: {json.dumps(timezone)}}}}}}};"
    )
    return run_api_js(prelude, body, env={"TZ": "Asia/Kathmandu"})


def wall(text: str, zone: str) -> float:
    """Python's reading of a wall time in ``zone`` (fold 0: the first of a repeated time, and a
    skipped time with the offset before the change), as the server reads it."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("zone", "typed", "expected"),
    [
        # The hour after New York's change to summer time (02:00 -> 03:00 on 2024-03-10).
        ("America/New_York", "2024-03-10T03:30", "2024-03-10T07:30"),
        # The hour before Berlin's change (02:00 -> 03:00 CEST on 2024-03-31).
        ("Europe/Berlin", "2024-03-31T01:30", "2024-03-31T00:30"),
        # A time the change skips: read with the offset before it, so it is 03:30 after it.
        ("America/New_York", "2024-03-10T02:30", "2024-03-10T07:30"),
        # A time that happens twice (back to standard time on 2024-11-03): the first one.
        ("America/New_York", "2024-11-03T01:30", "2024-11-03T05:30"),
        ("Asia/Kathmandu", "2024-06-01T00:00", "2024-05-31T18:15"),
        ("Europe/Berlin", "2024-10-27T03:30", "2024-10-27T02:30"),
    ],
)
def test_a_typed_wall_time_is_read_in_the_site_zone(zone: str, typed: str, expected: str) -> None:
    got = run_js(
        zone, f"const s = site.parseLocal({json.dumps(typed)}); return [s, site.toLocalInput(s)];"
    )
    assert got[0] == utc(expected) == wall(typed, zone)
    skipped = typed == "2024-03-10T02:30"
    assert got[1] == ("2024-03-10T03:30" if skipped else typed)


SHIFT_STARTS = [6, 14, 22]  # incidents.js's SHIFT_STARTS


@pytest.mark.parametrize(
    ("zone", "now", "shift", "today"),
    [
        # 06:30 EDT on the 23-hour day New York changes to summer time: the 06:00 shift.
        ("America/New_York", "2024-03-10T06:30", "2024-03-10T06:00", "2024-03-10T00:00"),
        # 13:30 EST on the 25-hour day it changes back: still the 06:00 shift, not the 14:00 one.
        ("America/New_York", "2024-11-03T13:30", "2024-11-03T06:00", "2024-11-03T00:00"),
        ("Europe/Berlin", "2024-03-31T06:30", "2024-03-31T06:00", "2024-03-31T00:00"),
        # Before 06:00 the night shift began yesterday at 22:00 (the day before had 23 hours).
        ("America/New_York", "2024-03-11T04:30", "2024-03-10T22:00", "2024-03-11T00:00"),
        ("Asia/Kathmandu", "2024-06-01T14:00", "2024-06-01T14:00", "2024-06-01T00:00"),
    ],
)
def test_shift_and_today_start_on_the_site_clock(
    zone: str, now: str, shift: str, today: str
) -> None:
    got = run_js(
        zone,
        f"const now = {wall(now, zone)};"
        f" return [site.latestLocalHour(now, {SHIFT_STARTS}), site.latestLocalHour(now, [0])];",
    )
    assert got == [wall(shift, zone), wall(today, zone)]


def test_today_starts_at_the_first_of_a_repeated_midnight() -> None:
    """Havana goes back from 01:00 to 00:00 on 2024-11-03: at 00:40 of the second pass, today
    began at the first 00:00."""
    zone = "America/Havana"
    now = datetime(2024, 11, 3, 0, 40, tzinfo=ZoneInfo(zone), fold=1).timestamp()
    got = run_js(zone, f"return site.latestLocalHour({now}, [0]);")
    assert got == wall("2024-11-03T00:00", zone) == now - 6000


@pytest.mark.parametrize(
    ("zone", "unit", "since", "until", "buckets", "axis"),
    [
        # West of UTC a local midnight is a UTC morning: each day's count stays under its date.
        (
            "America/New_York",
            "day",
            "2024-03-08T15:00",
            "2024-03-12T09:00",
            {"2024-03-09T00:00": 2, "2024-03-11T00:00": 5},
            [
                "2024-03-08T00:00",
                "2024-03-09T00:00",
                "2024-03-10T00:00",
                "2024-03-11T00:00",
                "2024-03-12T00:00",
            ],
        ),
        # Berlin's 25-hour day (back to standard time on 2023-10-29).
        (
            "Europe/Berlin",
            "day",
            "2023-10-28T12:00",
            "2023-10-30T01:00",
            {"2023-10-29T00:00": 3, "2023-10-30T00:00": 1},
            ["2023-10-28T00:00", "2023-10-29T00:00", "2023-10-30T00:00"],
        ),
        # Nepal is UTC+5:45: a local hour starts at 15 minutes past the UTC hour.
        (
            "Asia/Kathmandu",
            "hour",
            "2024-06-01T10:40",
            "2024-06-01T13:05",
            {"2024-06-01T12:00": 4},
            ["2024-06-01T10:00", "2024-06-01T11:00", "2024-06-01T12:00", "2024-06-01T13:00"],
        ),
        # Lord Howe goes back 30 minutes (02:00 +11 is 01:30 +10:30): whole hours only, once.
        (
            "Australia/Lord_Howe",
            "hour",
            "2024-04-07T00:10",
            "2024-04-07T04:10",
            {"2024-04-07T00:00": 1, "2024-04-07T02:00": 4, "2024-04-07T03:00": 4},
            [
                "2024-04-07T00:00",
                "2024-04-07T01:00",
                "2024-04-07T02:00",
                "2024-04-07T03:00",
                "2024-04-07T04:00",
            ],
        ),
        # New York's skipped 02:00 hour is no bar.
        (
            "America/New_York",
            "hour",
            "2024-03-10T00:30",
            "2024-03-10T04:10",
            {"2024-03-10T01:00": 1, "2024-03-10T03:00": 2},
            ["2024-03-10T00:00", "2024-03-10T01:00", "2024-03-10T03:00", "2024-03-10T04:00"],
        ),
    ],
)
def test_the_time_chart_puts_each_count_under_its_own_local_start(
    zone: str,
    unit: str,
    since: str,
    until: str,
    buckets: dict[str, int],
    axis: list[str],
) -> None:
    """The buckets are what /api/v1/stats answers: starts at the site's local midnights/hours."""
    stats = [{"start": wall(start, zone), "count": count} for start, count in buckets.items()]
    got = run_js(
        zone,
        f"return site.timeAxis({json.dumps(stats)}, {wall(since, zone)}, {wall(until, zone)},"
        f" {json.dumps(unit)});",
    )
    assert got == [[wall(start, zone), buckets.get(start, 0)] for start in axis]
