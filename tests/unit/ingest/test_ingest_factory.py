"""open_source picks the source kind from the camera's ``source`` string."""

from __future__ import annotations

from pathlib import Path

import pytest

from assets import asset
from safewatch.config.site import CameraConfig
from safewatch.errors import SourceError
from safewatch.ingest import FileSource, LiveSource, Source, open_source


def camera(source: str, **extra: object) -> CameraConfig:
    return CameraConfig(source=source, models=["m"], **extra)  # type: ignore[arg-type]


def test_relative_file_resolves_against_the_site_folder() -> None:
    clip = asset("video/construction_cctv_640x352_24s.mp4")
    source = open_source("yard", camera(clip.name, fps=2), base_dir=clip.parent, origin=5.0)
    assert isinstance(source, FileSource)
    assert isinstance(source, Source)
    assert source.path == clip
    assert source.origin == 5.0
    source.close()


def test_file_url_is_a_file() -> None:
    clip = asset("video/construction_cctv_640x352_24s.mp4")
    source = open_source("yard", camera(f"file://{clip}"), base_dir=Path("/"))
    assert isinstance(source, FileSource)
    source.close()


@pytest.mark.parametrize(
    "url",
    ["rtsp://u:pw@cam/s", "rtsps://cam/s", "http://cam/mjpg", "https://cam/x.m3u8", "/dev/video0"],
)
def test_live_urls_make_live_sources_without_connecting(url: str) -> None:
    source = open_source("cam", camera(url, rtsp_transport="udp"), base_dir=Path("."))
    assert isinstance(source, LiveSource)
    assert isinstance(source, Source)
    assert "pw" not in source.redacted_url
    source.close()


def test_missing_file_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        open_source("yard", camera("missing.mp4"), base_dir=tmp_path)


def test_unsupported_scheme_is_redacted(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unsupported source") as caught:
        open_source("cam", camera("ftp://bob:secret99@host/clip.mp4"), base_dir=tmp_path)
    assert "secret99" not in str(caught.value)


def test_live_timing_plays_a_file_in_real_time_unless_realtime_is_off() -> None:
    from safewatch.ingest.factory import LiveTiming
    from safewatch.ingest.paced_file_source import PacedFileSource

    clip = asset("video/construction_cctv_640x352_24s.mp4")
    live = LiveTiming()
    paced = open_source("c", camera(str(clip)), base_dir=Path("/"), live=live)
    replay = open_source("c", camera(str(clip), realtime=False), base_dir=Path("/"), live=live)
    try:
        assert isinstance(paced, PacedFileSource)
        assert isinstance(replay, FileSource)  # the audit's reader: own clock, as fast as taken
    finally:
        paced.close()
        replay.close()


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("rtsp://cam/s", {"realtime": False}, r"realtime applies to video files only"),
        ("rtsp://cam/s", {"loop": True}, r"loop applies to video files only"),
        ("clip.mp4", {"loop": True, "realtime": False}, r"loop needs realtime playback"),
    ],
)
def test_live_options_that_cannot_apply_are_refused(
    source: str, extra: dict[str, object], message: str
) -> None:
    from safewatch.errors import ConfigError
    from safewatch.ingest.factory import LiveTiming

    clip = asset("video/construction_cctv_640x352_24s.mp4")
    path = str(clip) if source == "clip.mp4" else source
    # A live camera's flags are refused when its config is made (the site file loads, so
    # check-config says so); a file's contradictory pair when its source opens.
    with pytest.raises(ValueError if source.startswith("rtsp") else ConfigError, match=message):
        open_source("c", camera(path, **extra), base_dir=Path("/"), live=LiveTiming())
