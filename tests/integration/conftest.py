"""Integration fixtures: a real RTSP camera (GStreamer RTSP server) that tests can kill and revive.

Usage::

    def test_x(rtsp_camera: RtspCamera) -> None:
        source = LiveSource("cam", rtsp_camera.url, fps=5)
        ...
        rtsp_camera.kill()      # outage
        rtsp_camera.start()     # back on the same port

``rtsp_camera_factory(credentials=("user", "pw"))`` gives a camera that demands authentication.
Tests skip, saying why, when the server's Debian packages or the shared clip are missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rtsp_server import RtspCamera, looped_clip, rtsp_unavailable

CameraFactory = Callable[..., RtspCamera]


@pytest.fixture(scope="session")
def rtsp_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by the session's RTSP tests, for media made on the fly."""
    return tmp_path_factory.mktemp("rtsp")


@pytest.fixture
def rtsp_clip(assets_dir: Path, rtsp_workdir: Path) -> Path:
    """The construction clip repeated ten times (4 minutes), so no test reaches its end.

    Skips when the GStreamer RTSP server cannot run here or the shared clip is absent.
    """
    reason = rtsp_unavailable()
    if reason is not None:
        pytest.skip(reason)
    looped = rtsp_workdir / "construction_x10.mp4"
    if not looped.exists():
        clip = assets_dir / "video" / "construction_cctv_640x352_24s.mp4"
        if not clip.exists():
            pytest.skip(f"needs {clip} (the team's shared assets)")
        looped = looped_clip(clip, looped)
    return looped


@pytest.fixture
def rtsp_camera_factory(rtsp_clip: Path) -> Iterator[CameraFactory]:
    """Make started RTSP cameras (optionally with credentials); all are killed after the test."""
    cameras: list[RtspCamera] = []

    def make(credentials: tuple[str, str] | None = None) -> RtspCamera:
        camera = RtspCamera(rtsp_clip, credentials=credentials)
        cameras.append(camera)
        camera.start()
        return camera

    yield make
    for camera in cameras:
        camera.kill()


@pytest.fixture
def rtsp_camera(rtsp_camera_factory: CameraFactory) -> RtspCamera:
    """One started RTSP camera at ``rtsp_camera.url`` serving the construction clip."""
    return rtsp_camera_factory()
