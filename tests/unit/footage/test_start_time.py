"""One parser of a video's start time for the CLI (--start) and the API (start)."""

from __future__ import annotations

import pytest

from safewatch.errors import ConfigError
from safewatch.footage.start_time import parse_start


def test_a_time_without_a_zone_is_the_sites() -> None:
    assert parse_start("2017-02-22T13:07:16", "UTC") == 1487768836.0
    assert parse_start("2017-02-22T14:07:16", "Europe/Berlin") == 1487768836.0
    assert parse_start("2017-02-22T13:07:16+00:00", "Asia/Tokyo") == 1487768836.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "--start: 'yesterday' is not an ISO 8601 time"),
        ("1960-01-01", "--start: '1960-01-01' is out of range"),
        ("0001-01-01T00:00:00", "--start: '0001-01-01T00:00:00' is out of range"),
    ],
)
def test_errors_name_the_option_once(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_start(text, "Asia/Tokyo", name="--start")
    assert str(caught.value).startswith(message)


def test_an_offset_beyond_a_day_is_said_in_words() -> None:
    """Python's reason was its repr: "... not datetime.timedelta(days=1, seconds=3600)."."""
    with pytest.raises(ConfigError) as caught:
        parse_start("2026-01-01T00:00:00+25:00", "UTC", name="--start")
    assert str(caught.value) == (
        "--start: '2026-01-01T00:00:00+25:00' is not an ISO 8601 time (the UTC offset must be "
        "less than ±24:00)"
    )


def test_a_local_time_the_clocks_skip_is_refused_with_an_offset_to_give() -> None:
    """02:30 on a spring-forward night was read as if the clocks had not changed, silently."""
    with pytest.raises(ConfigError) as caught:
        parse_start("2026-03-29T02:30", "Europe/Berlin", name="--start")
    assert "does not exist in Europe/Berlin" in str(caught.value)
    assert "2026-03-29T02:30:00+01:00" in str(caught.value)
    assert parse_start("2026-03-29T02:30+01:00", "Europe/Berlin") == 1774747800.0


def test_a_local_time_the_clocks_show_twice_is_refused_with_both_offsets() -> None:
    """02:30 on an autumn night was silently the first of the two."""
    with pytest.raises(ConfigError) as caught:
        parse_start("2026-10-25T02:30", "Europe/Berlin", name="--start")
    message = str(caught.value)
    assert "happens twice in Europe/Berlin" in message
    assert "2026-10-25T02:30:00+02:00" in message and "2026-10-25T02:30:00+01:00" in message
    assert parse_start("2026-10-25T02:30+01:00", "Europe/Berlin") == 1792891800.0
    assert parse_start("2026-10-25T03:30", "Europe/Berlin") == 1792891800.0 + 3600
