"""A logging filter that masks credentials in any log line.

Call sites are asked to log ``redact_url(source)``, but one forgotten call (or a third-party
library that logs the URL it was given, or a password quoted alone) would leak a secret into a log
that ends up in a ticket. Installing :class:`RedactingFilter` on the root handlers is the safety
net: every formatted message passes through :func:`safewatch.config.secrets.redact_secrets`
(every URL by shape, every configured secret by value), and so does the formatted traceback of a
record logged with ``exc_info`` (``log.exception``): an exception's text quotes whatever it was
given (``http.client.InvalidURL`` quotes the URL's path and query, a token included), and the
traceback is printed below the message, where cleaning the message alone leaves it untouched.
"""

from __future__ import annotations

import logging

from safewatch.config.secrets import redact_secrets, redact_urls_in

__all__ = ["RedactingFilter", "install_redaction", "redact_urls_in"]


_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Rewrites each record's message, traceback and stack with credentials masked; never drops a
    record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Format the message once, redact it, and store it back without arguments.

        The traceback is formatted here too and kept, redacted, in ``record.exc_text``: that is
        the cache :meth:`logging.Formatter.format` prints instead of formatting ``exc_info``
        again. One already there (another handler formatted the record first) is redacted too.
        """
        message = record.getMessage()
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
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
