"""The logging safety net: credentials in any URL of any log line are masked."""

from __future__ import annotations

import logging

import pytest

from safewatch.config.log_redaction import RedactingFilter, install_redaction, redact_urls_in


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cannot open rtsp://admin:hunter2@10.0.0.5/s1 (timeout)",
            "cannot open rtsp://***:***@10.0.0.5/s1 (timeout)",
        ),
        (
            "a http://cam/x?token=abc&ch=1 and rtsps://u:p@h/y",
            "a http://cam/x?token=***&ch=1 and rtsps://***:***@h/y",
        ),
        ("file /data/clip.mp4 ended", "file /data/clip.mp4 ended"),
        ("url='rtsp://u:pw1@h/'", "url='rtsp://***:***@h/'"),
    ],
)
def test_redact_urls_in(text: str, expected: str) -> None:
    assert redact_urls_in(text) == expected


def test_filter_formats_then_redacts(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("safewatch.test.redaction")
    redacting = RedactingFilter()
    caplog.handler.addFilter(redacting)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("camera %s stalled", "rtsp://admin:hunter2@cam/1")
            logger.info("nothing secret %d", 5)
    finally:
        caplog.handler.removeFilter(redacting)
    assert caplog.messages == ["camera rtsp://***:***@cam/1 stalled", "nothing secret 5"]
    assert "hunter2" not in caplog.text


def test_filter_redacts_the_logged_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """``log.exception`` prints the exception's text again below the message, in the traceback."""
    logger = logging.getLogger("safewatch.test.redaction")
    redacting = RedactingFilter()
    caplog.handler.addFilter(redacting)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            try:
                raise ValueError("cannot open rtsp://admin:hunter2@cam/1")
            except ValueError:
                logger.exception("camera failed")
    finally:
        caplog.handler.removeFilter(redacting)
    assert "Traceback" in caplog.text and "rtsp://***:***@cam/1" in caplog.text
    assert "hunter2" not in caplog.text


def test_install_is_idempotent() -> None:
    logger = logging.getLogger("safewatch.test.install")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        install_redaction(logger)
        install_redaction(logger)
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)
