"""A logging filter that masks credentials in any URL a log line mentions.

Call sites are asked to log ``redact_url(source)``, but one forgotten call (or a third-party
library that logs the URL it was given) would leak a camera password into a log that ends up in a
ticket. Installing :class:`RedactingFilter` on the root handlers is the safety net: every URL in
every formatted message passes through :func:`safewatch.ingest.redact.redact_url`.
"""

from __future__ import annotations

import logging
import re

from safewatch.ingest.redact import redact_url

__all__ = ["RedactingFilter", "install_redaction", "redact_urls_in"]

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_urls_in(text: str) -> str:
    """Replace every URL in ``text`` by its redacted form (user info and secret query values)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with credentials masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Format the message once, redact it, and store it back without arguments."""
        message = record.getMessage()
        redacted = redact_urls_in(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def install_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach one :class:`RedactingFilter` to every handler of ``logger`` (default: root).

    Handler filters, not logger filters, because a logger's filters do not see records that
    propagate from child loggers. Idempotent: handlers that already have one are skipped.
    """
    target = logger or logging.getLogger()
    redacting = RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)
    return redacting
