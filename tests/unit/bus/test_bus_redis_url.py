"""A malformed Redis URL is refused without its password in the message (it reaches the
log and the terminal)."""

from __future__ import annotations

import pytest

from safewatch.errors import ConfigError

pytest.importorskip("redis", reason="the redis client is the 'cluster' extra")


@pytest.mark.parametrize(
    ("url", "shown", "reason"),
    [
        (
            "redis://ops:Hunter2-pw@redis.local:port/0",
            "'redis://***:***@redis.local:port/0'",
            "Port could not be cast to integer value as 'port'",
        ),
        # Pasted unencoded: the parser cuts the password at "#" and quotes its first piece.
        (
            "redis://ops:Hunt#er2-pw@redis.local/0",
            "'redis://***:***@redis.local/0'",
            "Port could not be cast to integer value as '***'",
        ),
    ],
)
def test_a_malformed_redis_url_is_named_without_its_password(
    url: str, shown: str, reason: str
) -> None:
    from safewatch.bus.redis_streams import connect

    with pytest.raises(ConfigError) as refused:
        connect(url)
    message = str(refused.value)
    assert message == f"bad Redis URL {shown}: {reason}"
    assert "Hunt" not in message and "er2-pw" not in message
