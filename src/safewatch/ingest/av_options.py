"""What to tell FFmpeg when opening each kind of source.

Kept apart from the decode loop so the choices (transport, socket timeouts, the v4l2 demuxer for
USB cameras) are unit-tested without a camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from safewatch.config.sources import SourceKind, source_kind

__all__ = ["OpenSpec", "SourceKind", "build_open_spec", "source_kind"]


@dataclass(frozen=True, slots=True)
class OpenSpec:
    """Arguments for ``av.open``: the target, the demuxer to force, and its options.

    Attributes:
        target: What ``av.open`` opens (URL or device path).
        format: Demuxer to force (``"v4l2"`` for USB), ``None`` to let FFmpeg probe.
        options: FFmpeg AVOptions, all strings.
    """

    target: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def build_open_spec(
    source: str,
    *,
    rtsp_transport: Literal["tcp", "udp"] = "tcp",
    io_timeout: float = 5.0,
) -> OpenSpec:
    """Build the ``av.open`` arguments for a live source.

    The socket ``timeout`` option (microseconds; RTSP and HTTP both read it) makes a read on a dead
    connection fail instead of blocking the decode thread forever. RTSP gets its transport and
    sets up the video tracks only (``allowed_media_types``): every reader here takes the video
    stream alone, and with a camera's audio or metadata track set up too, a camera whose video
    hung while its audio flowed kept the demuxer (and the socket timeout) busy, so it never
    stalled and stayed ``streaming``; it saves their bandwidth too. HTTP
    turns off FFmpeg's own reconnect, because :class:`~safewatch.ingest.live_source.LiveSource`
    reconnects with backoff and reports it. ``rtsps://`` always uses TCP: FFmpeg has no SRTP, so
    UDP media would travel unencrypted beside the TLS control channel. USB cameras use the
    ``v4l2`` demuxer at the driver's default mode.

    Args:
        source: ``rtsp(s)://``, ``http(s)://``, ``/dev/videoN`` or ``v4l2:///dev/videoN``.
        rtsp_transport: ``"tcp"`` (robust through NAT and Wi-Fi) or ``"udp"``.
        io_timeout: Seconds a network read may block.

    Returns:
        The open specification.

    Raises:
        ValueError: ``source`` is a file, or ``io_timeout`` is not positive.
    """
    if not io_timeout > 0:
        raise ValueError(f"io_timeout must be positive, got {io_timeout}")
    kind = source_kind(source)
    timeout_us = str(round(io_timeout * 1_000_000))
    if kind == "rtsp":
        transport = "tcp" if source.lower().startswith("rtsps://") else rtsp_transport
        return OpenSpec(
            source,
            options={
                "rtsp_transport": transport,
                "timeout": timeout_us,
                "allowed_media_types": "video",
            },
        )
    if kind == "http":
        return OpenSpec(source, options={"timeout": timeout_us, "reconnect": "0"})
    if kind == "usb":
        device = source[len("v4l2://") :] if source.lower().startswith("v4l2://") else source
        return OpenSpec(device, format="v4l2")
    raise ValueError(f"{source!r} is a file, not a live source")
