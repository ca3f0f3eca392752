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
