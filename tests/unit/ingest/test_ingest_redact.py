"""Credentials never reach a log line: the redaction table."""

from __future__ import annotations

import pytest

from safewatch.ingest.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***:***@10.0.0.5:554/stream1"),
        ("rtsps://admin:p%40ss@cam.local/live", "rtsps://***:***@cam.local/live"),
        ("rtsp://admin@10.0.0.5/s", "rtsp://***@10.0.0.5/s"),
        ("rtsp://u:p@ss@host/s", "rtsp://***:***@host/s"),
        # A port that is no number (the URL of a parse error): the password is masked all the same.
        ("redis://ops:pw1@redis.local:port/0", "redis://***:***@redis.local:port/0"),
        ("rtsp://u:p@ss:x@host:55a/s", "rtsp://***:***@host:55a/s"),
        (
            "http://cam/video.mjpg?user=bob&password=x1&fps=5",
            "http://cam/video.mjpg?user=bob&password=***&fps=5",
        ),
        (
            "https://cam/a.m3u8?TOKEN=abc&Key=k&pwd=1&passwd=2&auth=z",
            "https://cam/a.m3u8?TOKEN=***&Key=***&pwd=***&passwd=***&auth=***",
        ),
        # No host (libpq's unix socket), a port alone, an IPv6 zone id: the host was required
        # and these passwords came back whole; a key's pass phrase (sslpassword) too.
        ("postgresql://sw:pw@/sw?host=/run/pg", "postgresql://***:***@/sw?host=/run/pg"),
        ("postgresql://sw:pw@:5433/sw", "postgresql://***:***@:5433/sw"),
        ("postgresql://sw:pw@[fe80::1%25eth0]/sw", "postgresql://***:***@[fe80::1%25eth0]/sw"),
        ("postgresql:///sw?password=abc", "postgresql:///sw?password=***"),
        (
            "postgresql://h/sw?sslpassword=kp&sslmode=require",
            "postgresql://h/sw?sslpassword=***&sslmode=require",
        ),
        ("sqlite:///db.sqlite", "sqlite:///db.sqlite"),
        ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),
        ("http://cam/x?channel=1", "http://cam/x?channel=1"),
        ("/videos/site a/clip.mp4", "/videos/site a/clip.mp4"),
        ("/dev/video0", "/dev/video0"),
        ("clip.mp4", "clip.mp4"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_removes_url_and_bare_secrets() -> None:
    url = "rtsp://admin:hunter2@10.0.0.5/s?token=tok123"
    text = f"Connection refused: '{url}' (user admin, password hunter2, tok123)"
    cleaned = redact_text(text, url)
    for secret in ("hunter2", "tok123", "admin:"):
        assert secret not in cleaned
    assert "10.0.0.5" in cleaned


def test_redact_text_handles_percent_encoded_password() -> None:
    url = "rtsp://admin:p%40ssw0rd@cam/s"
    cleaned = redact_text("auth failed for p@ssw0rd and p%40ssw0rd", url)
    assert "ssw0rd" not in cleaned
