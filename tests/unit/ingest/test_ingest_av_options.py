"""What FFmpeg is told for each kind of source, checked without a camera."""

from __future__ import annotations

import pytest

from safewatch.ingest.av_options import OpenSpec, build_open_spec, source_kind


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("rtsp://cam/s", "rtsp"),
        ("RTSPS://cam/s", "rtsp"),
        ("http://cam/mjpg", "http"),
        ("https://cam/live.m3u8", "http"),
        ("/dev/video0", "usb"),
        ("v4l2:///dev/video2", "usb"),
        ("clips/yard.mp4", "file"),
        ("file:///clips/yard.mp4", "file"),
        ("C:/clips/yard.mp4", "file"),
    ],
)
def test_source_kind(source: str, kind: str) -> None:
    assert source_kind(source) == kind


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_transport_and_socket_timeout_in_microseconds(transport: str) -> None:
    spec = build_open_spec("rtsp://cam/s", rtsp_transport=transport, io_timeout=2.5)  # type: ignore[arg-type]
    assert spec == OpenSpec(
        "rtsp://cam/s",
        options={"rtsp_transport": transport, "timeout": "2500000", "allowed_media_types": "video"},
    )


@pytest.mark.parametrize("source", ["rtsp://cam/s", "rtsps://cam/s"])
def test_rtsp_sets_up_video_tracks_only(source: str) -> None:
    # With audio set up too, a camera whose video hung while its audio flowed never stalled.
    assert build_open_spec(source).options["allowed_media_types"] == "video"


def test_rtsps_always_uses_tcp() -> None:
    spec = build_open_spec("rtsps://cam/s", rtsp_transport="udp")
    assert spec.options["rtsp_transport"] == "tcp"


def test_http_sets_timeout_and_leaves_reconnects_to_safewatch() -> None:
    spec = build_open_spec("http://cam/video.mjpg", io_timeout=1.0)
    assert spec.format is None
    assert spec.options == {"timeout": "1000000", "reconnect": "0"}


@pytest.mark.parametrize("source", ["/dev/video0", "v4l2:///dev/video0"])
def test_usb_uses_the_v4l2_demuxer_on_the_device(source: str) -> None:
    assert build_open_spec(source) == OpenSpec("/dev/video0", format="v4l2")


def test_a_file_is_not_a_live_source() -> None:
    with pytest.raises(ValueError, match="is a file"):
        build_open_spec("clip.mp4")


def test_rejects_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="io_timeout"):
        build_open_spec("rtsp://cam/s", io_timeout=0)
