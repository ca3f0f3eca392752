"""Turn PyAV/FFmpeg exceptions into one-line messages fit for a user and a log."""

from __future__ import annotations

import av

from safewatch.ingest.redact import redact_text

__all__ = ["describe_error"]


def describe_error(error: BaseException, source: str) -> str:
    """Describe ``error`` in one line without the secrets of ``source``.

    FFmpeg errors carry the failing URL as their ``filename``; the message keeps FFmpeg's reason
    (``Connection refused``, ``Invalid data found when processing input``) and drops the URL,
    which the caller names in redacted form itself.

    Args:
        error: What PyAV or the OS raised.
        source: The URL or path being read, whose credentials must not leak.

    Returns:
        E.g. ``"Connection refused (ConnectionRefusedError)"``.
    """
    if isinstance(error, av.FFmpegError | OSError) and error.strerror:
        reason = str(error.strerror)
    else:
        reason = str(error) or "no details"
    return redact_text(f"{reason} ({type(error).__name__})", source)
