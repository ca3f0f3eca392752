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
