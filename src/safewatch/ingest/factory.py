"""Choose and build the right source for a camera from its site-file entry."""

from __future__ import annotations

from pathlib import Path

from safewatch.config.site import CameraConfig
from safewatch.errors import ModelError, SourceError
from safewatch.ingest.av_options import source_kind
from safewatch.ingest.file_source import FileSource
from safewatch.ingest.live_source import LiveSource
from safewatch.ingest.redact import redact_url
from safewatch.ingest.source import Source
from safewatch.ingest.state import StateListener

__all__ = ["file_source_path", "open_source"]


def file_source_path(camera_id: str, source: str, base_dir: Path) -> Path:
    """The file a camera's ``source`` names: a path (``file://`` accepted), or a catalogue video.

    A relative path is relative to ``base_dir`` (the site file's folder). A name such as
    ``construction_cctv`` that is not a file there but a demo video of the model catalogue
    (``safewatch models list``) means its downloaded copy, so the example site needs no footage
    of its own.

    Raises:
        SourceError: A catalogue video that has not been downloaded yet (the message says how).
    """
    from safewatch.detect.catalogue import resolve_video  # the catalogue reads no files at import

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

    Returns:
        The source, not yet iterated.

    Raises:
        SourceError: The file is missing or unreadable, or the URL scheme is unsupported.
    """
    source = config.source.strip()
    kind = source_kind(source)
    if kind != "file":
        return LiveSource(
            camera_id,
            source,
            fps=config.fps,
            rtsp_transport=config.rtsp_transport,
            on_state=on_state,
        )
    if "://" in source and not source.lower().startswith("file://"):
        raise SourceError(
            f"camera {camera_id!r}: unsupported source {redact_url(source)!r} "
            "(expected a file path, rtsp://, rtsps://, http(s):// or /dev/videoN)"
        )
    path = file_source_path(camera_id, source, base_dir)
    return FileSource(camera_id, path, fps=config.fps, origin=origin, on_state=on_state)
