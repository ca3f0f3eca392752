"""The wall-clock time a user gives for a video's first frame (``--start``, the API's ``start``).

Footage without ``creation_time`` is otherwise dated from 1970-01-01: its incidents cannot be
compared with reviewed ones, and schedules apply at the wrong hours. One parser serves the CLI and
the API, so both read a time without a zone in the site's time zone and refuse the same values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from safewatch.errors import ConfigError

__all__ = ["LAST_START", "parse_start"]

LAST_START = 253_370_764_800.0
"""9999-01-01T00:00:00Z: a video starting before it still ends within the dates Python knows."""


def parse_start(text: str, timezone: str, *, name: str = "start") -> float:
    """ISO 8601 to Unix seconds; a time without a zone is read in ``timezone`` (the site's).

    Raises:
        ConfigError: Not ISO 8601; without a zone and skipped or repeated by the site's clocks
            (a daylight-saving change: :func:`_check_local`); or outside 1970-01-01 to
            9998-12-31 UTC (evidence folders and reports are dated; 0001-01-01 in a zone east
            of UTC was a traceback from the evidence thread). Its field is ``name``.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        reason = str(exc)
        if reason.startswith("offset must be a timedelta"):
            # Python's own words are its timedelta reprs ("not datetime.timedelta(days=1, ...)").
            reason = "the UTC offset must be less than ±24:00"
        raise ConfigError(f"{text!r} is not an ISO 8601 time ({reason})", field=name) from exc
    local = moment.tzinfo is None
    if local:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    try:
        seconds = moment.timestamp()
    except (OverflowError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < LAST_START:
        raise ConfigError(
            f"{text!r} is out of range (between 1970-01-01 and 9998-12-31 UTC)", field=name
        )
    if local:
        _check_local(text, moment, timezone, name)
    return seconds


def _check_local(text: str, moment: datetime, timezone: str, name: str) -> None:
    """Refuse a zone-less time that the site's clocks skip or show twice.

    Python reads 02:30 on a spring-forward night as if the clocks had not changed, and the first
    of the two 02:30s of an autumn night: either way the footage was dated an hour off without
    a word, and its incidents could not be matched with reviewed ones. Only the user knows which
    was meant, so they are asked for the UTC offset.

    Raises:
        ConfigError: ``moment`` does not exist, or exists twice, in ``timezone``.
    """
    offsets = [moment.replace(fold=fold).utcoffset() for fold in (0, 1)]
    wall = moment.replace(tzinfo=None)
    if offsets[0] == offsets[1]:
        return
    shown = [_offset_text(o) for o in offsets]
    back = moment.astimezone(UTC).astimezone(moment.tzinfo).replace(tzinfo=None)
    if back != wall:
        raise ConfigError(
            f"{text!r} does not exist in {timezone} (the clocks go forward there then); give "
            f"the UTC offset the camera's clock used, e.g. {wall.isoformat()}{shown[0]} for "
            "a clock not yet changed",
            field=name,
        )
    raise ConfigError(
        f"{text!r} happens twice in {timezone} (the clocks go back there then); give its UTC "
        f"offset: {wall.isoformat()}{shown[0]} (the first) or {wall.isoformat()}{shown[1]} "
        "(the second)",
        field=name,
    )


def _offset_text(offset: timedelta | None) -> str:
    """``+01:00`` for one hour east of UTC."""
    minutes = int((offset or timedelta()).total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
