"""Is a rule active at a frame's time? Schedules read in the site's local time.

A schedule is written in local wall time (``06:00`` is when the shift starts, whatever the UTC
offset or daylight saving), so the frame's UTC timestamp is converted with ``zoneinfo`` before the
comparison. Overnight windows (``22:00`` to ``06:00``) belong to the day they start on.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from safewatch.config.rules import WEEKDAYS, ScheduleConfig

__all__ = ["schedule_allows"]


def schedule_allows(schedule: ScheduleConfig | None, timestamp: float, tz: ZoneInfo) -> bool:
    """Whether ``timestamp`` (UTC epoch seconds) falls inside ``schedule`` in time zone ``tz``.

    ``None`` means always. The window's start is inclusive and its end exclusive, so
    ``["06:00", "22:00"]`` covers 06:00:00 up to, not including, 22:00:00.
    """
    if schedule is None:
        return True
    local = datetime.fromtimestamp(timestamp, tz)
    weekday = local.weekday()
    days = {WEEKDAYS.index(day) for day in schedule.days}
    window = schedule.window_seconds()
    if window is None:
        return weekday in days
    start, end = window
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    if start < end:
        return weekday in days and start <= seconds < end
    # Overnight: the evening part belongs to today, the early-morning part to yesterday.
    return (weekday in days and seconds >= start) or ((weekday - 1) % 7 in days and seconds < end)
