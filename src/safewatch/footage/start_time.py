"""The wall-clock time a user gives for a video's first frame (``--start``, the API's ``start``).

Footage without ``creation_time`` is otherwise dated from 1970-01-01: its incidents cannot be
compared with reviewed ones, and schedules apply at the wrong hours. One parser serves the CLI and
the API, so both read a time without a zone in the site's time zone and refuse the same values.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from safewatch.errors import ConfigError

__all__ = ["LAST_START", "parse_start"]

LAST_START = 253_370_764_800.0
"""9999-01-01T00:00:00Z: a video starting before it still ends within the dates Python knows."""


def parse_start(text: str, timezone: str, *, name: str = "start") -> float:
    """ISO 8601 to Unix seconds; a time without a zone is read in ``timezone`` (the site's).

    Raises:
        ConfigError: Not ISO 8601, or outside 1970-01-01 to 9998-12-31 UTC (evidence folders
            and reports are dated; 0001-01-01 in a zone east of UTC was a traceback from the
            evidence thread); its field is ``name``.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not an ISO 8601 time ({exc})", field=name) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    try:
        seconds = moment.timestamp()
    except (OverflowError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < LAST_START:
        raise ConfigError(
            f"{text!r} is out of range (between 1970-01-01 and 9998-12-31 UTC)", field=name
        )
    return seconds
