"""What kind of camera a site file's ``source`` names, read from its scheme or device path.

In ``config`` so the site file's own checks can use it (``loop`` and ``realtime: false`` apply to
video files only); the ingest layer opens each kind (``safewatch.ingest.av_options``).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["SourceKind", "source_kind"]

SourceKind = Literal["file", "rtsp", "http", "usb"]

_RTSP_SCHEMES = ("rtsp://", "rtsps://")
_HTTP_SCHEMES = ("http://", "https://")


def source_kind(source: str) -> SourceKind:
    """Classify a site-file ``source`` string by its scheme or device path.

    Args:
        source: Path, URL or device.

    Returns:
        ``"rtsp"`` for rtsp(s)://, ``"http"`` for http(s)://, ``"usb"`` for ``/dev/video*`` (or
        ``v4l2://``), ``"file"`` for anything else (including ``file://``).
    """
    lowered = source.lower()
    if lowered.startswith(_RTSP_SCHEMES):
        return "rtsp"
    if lowered.startswith(_HTTP_SCHEMES):
        return "http"
    if lowered.startswith("v4l2://") or lowered.startswith("/dev/video"):
        return "usb"
    return "file"
