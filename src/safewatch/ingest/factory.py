"""Choose and build the right source for a camera from its site-file entry.

The one source factory: ``safewatch audit`` and ``backtest`` read a file as fast as they can
(:class:`FileSource`), the live server plays the same file in real time, optionally looping
(:class:`PacedFileSource`), and both get a reconnecting :class:`LiveSource` for a camera URL. The
``live`` argument is the only difference, so a camera is parsed, resolved and refused (unsupported
schemes, missing files, catalogue videos not yet fetched) the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safewatch.config.site import CameraConfig
from safewatch.errors import ConfigError, ModelError, SourceError
from safewatch.ingest.av_options import source_kind
from safewatch.ingest.backoff import Backoff
from safewatch.ingest.file_source import FileSource
from safewatch.ingest.live_source import LiveSource
from safewatch.ingest.paced_file_source import PacedFileSource
from safewatch.ingest.redact import redact_url
from safewatch.ingest.source import Source
from safewatch.ingest.state import StateListener

__all__ = ["LiveTiming", "file_source_path", "open_source", "source_problem"]


@dataclass(frozen=True, slots=True)
class LiveTiming:
    """How the live server runs a camera: timeouts and reconnects, files played in real time.

    Attributes:
        io_timeout: Seconds a network read may block.
        stall_seconds: No frame for this long: reconnect.
        reconnect_cap: Longest delay between reconnect attempts, seconds.
        freeze_seconds: The same picture for this long: the camera is ``frozen`` (0: never).
    """

    io_timeout: float = 5.0
    stall_seconds: float = 10.0
    reconnect_cap: float = 30.0
    freeze_seconds: float = 60.0


def file_source_path(camera_id: str, source: str, base_dir: Path) -> Path:
    """The file a camera's ``source`` names: a path (``file://`` accepted), or a catalogue video.

    A relative path is relative to ``base_dir`` (the site file's folder). A name such as
    ``construction_cctv`` that is not a file there but a demo video of the model catalogue
    (``safewatch models list``) means its downloaded copy, so the example site needs no footage
    of its own.

    Raises:
        SourceError: A catalogue video that has not been downloaded yet (the message says how), or
            a URL of a scheme no source reads (here, so ``check-config`` refuses it too).
    """
    from safewatch.detect.catalogue import resolve_video  # the catalogue reads no files at import

    if "://" in source and not source.lower().startswith("file://"):
        raise SourceError(
            f"camera {camera_id!r}: unsupported source {redact_url(source)!r} "
            "(expected a file path, rtsp://, rtsps://, http(s):// or /dev/videoN)"
        )
    if source.lower().startswith("file://"):
        source = source[len("file://") :]
    try:
        cached = resolve_video(source, base_dir)
    except ModelError as exc:
        raise SourceError(f"camera {camera_id!r}: {exc}") from exc
    if cached is not None:
        return cached
    path = Path(source).expanduser()
    return path if path.is_absolute() else base_dir / path


def open_source(
    camera_id: str,
    config: CameraConfig,
    *,
    base_dir: Path,
    origin: float | None = None,
    on_state: StateListener | None = None,
    live: LiveTiming | None = None,
) -> Source:
    """Build the source for one camera: a :class:`FileSource` or a :class:`LiveSource`.

    ``rtsp(s)://``, ``http(s)://``, ``/dev/videoN`` and ``v4l2://`` are live; anything else is a
    file path (``file://`` accepted), resolved against ``base_dir`` (the site file's folder) when
    relative. A file is opened at once, so a bad path fails here; a live source connects in the
    background when its frames are first asked for (or on ``start()``).

    Args:
        camera_id: The camera key.
        config: The camera's site-file entry (``source``, ``fps``, ``rtsp_transport``).
        base_dir: Folder that relative file paths are relative to.
        origin: Wall-clock time of a file's first frame (ignored for live sources); see
            :class:`FileSource` for the default.
        on_state: Listener for the source's state changes.
        live: Run as the live server does: a file is played in real time (and loops when the
            camera says ``loop: true``; with ``realtime: false`` it is read as fast as it is
            consumed, on its own clock, as an audit reads it), a camera URL reconnects with these
            timings. ``None`` reads a file as fast as possible (audit, backtest).

    Returns:
        The source, not yet iterated.

    Raises:
        SourceError: The file is missing or unreadable, or the URL scheme is unsupported.
        ConfigError: ``loop`` without realtime playback on a file (``loop`` or
            ``realtime: false`` on a live camera is refused when the site file loads).
    """
    source = config.source.strip()
    kind = source_kind(source)
    if kind != "file":
        if live is None:
            return LiveSource(
                camera_id,
                source,
                fps=config.fps,
                rtsp_transport=config.rtsp_transport,
                on_state=on_state,
            )
        return LiveSource(
            camera_id,
            source,
            fps=config.fps,
            rtsp_transport=config.rtsp_transport,
            io_timeout=live.io_timeout,
            stall_timeout=live.stall_seconds,
            backoff=Backoff(0.5, max(0.5, live.reconnect_cap)),
            freeze_timeout=live.freeze_seconds or None,
            on_state=on_state,
        )
    path = file_source_path(camera_id, source, base_dir)
    if live is not None and config.realtime:
        return PacedFileSource(camera_id, path, fps=config.fps, loop=config.loop, on_state=on_state)
    if live is not None and config.loop:
        raise ConfigError(
            f"camera {camera_id!r}: loop needs realtime playback (realtime: false replays the "
            "file once, on its own clock)",
            field=f"cameras.{camera_id}.loop",
        )
    return FileSource(camera_id, path, fps=config.fps, origin=origin, on_state=on_state)


def source_problem(camera_id: str, config: CameraConfig, base_dir: Path) -> str | None:
    """Why a file camera's ``source`` cannot be read, else ``None``: no such file, a catalogue
    video not downloaded, a scheme no source reads, or a file that does not open as a video.

    The file is opened and closed as ``audit`` opens each video up front
    (:func:`safewatch.footage.audit.check_videos`): an empty, truncated or non-video file
    passed ``check-config`` (which only looked for it), and ``serve`` then dropped the camera for
    good; a site reload to such a file replaced a working camera with none. A camera URL or
    device is not connected to: ``serve`` reconnects to those, and a check should not hang on a
    camera that is down. Used by ``check-config`` and the site reload.
    """
    source = config.source.strip()
    if source_kind(source) != "file":
        return None
    try:
        path = file_source_path(camera_id, source, base_dir)
    except SourceError as exc:
        return str(exc).removeprefix(f"camera {camera_id!r}: ")
    if not path.is_file():
        return f"source {source!r}: no file at {path}"
    try:
        open_source(camera_id, config, base_dir=base_dir).close()
    except SourceError as exc:
        return f"source {source!r}: {exc}"
    return None
