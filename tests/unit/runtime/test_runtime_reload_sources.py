"""A site reload to a file camera source that does not open is refused; the running one stays."""

from __future__ import annotations

from pathlib import Path

import yaml
from runtime_fakes import moving_square_video, service_without_workers

from api_support import write_site


def _point(path: Path, camera: str, source: str, *, enabled: bool = True) -> None:
    site = yaml.safe_load(path.read_text())
    site["cameras"][camera].update(source=source, enabled=enabled)
    path.write_text(yaml.safe_dump(site))


def test_a_reload_to_a_file_that_is_not_a_video_keeps_the_working_camera(tmp_path: Path) -> None:
    """The reload was accepted and the camera's worker then failed on the empty file, so an
    edit of a working camera's source replaced it with none until a restart."""
    moving_square_video(tmp_path / "yard.mp4")
    path = write_site(tmp_path)
    service, supervisor = service_without_workers(path)

    (tmp_path / "empty.mp4").write_bytes(b"")
    _point(path, "yard", "empty.mp4")
    assert service.reload_site() is None
    health = service.status.site_health
    assert not health.ok
    assert f"camera 'yard': source 'empty.mp4': cannot open video file {tmp_path / 'empty.mp4'}" \
        in health.message  # fmt: skip
    assert service.site.config.cameras["yard"].source == "yard.mp4"
    assert supervisor.applied == []

    # switching on a camera whose file is not a video is refused the same way
    (tmp_path / "dock.mp4").write_bytes(b"not a video")
    _point(path, "yard", "yard.mp4")
    _point(path, "dock", "dock.mp4")
    assert service.reload_site() is None
    assert "camera 'dock': source 'dock.mp4': cannot open" in service.status.site_health.message

    moving_square_video(tmp_path / "dock.mp4")
    assert service.reload_site() is not None
    assert service.status.site_health.ok
    assert service.site.config.cameras["dock"].enabled


def test_a_cluster_node_does_not_open_the_files_of_cameras_it_does_not_run(
    tmp_path: Path,
) -> None:
    """Under serve --cluster every node reloads the whole site: an API node, or an analyzer
    without the host mount of another's file camera, refused the whole site file (its other
    changes with it) for a file only the camera's owner can open."""
    moving_square_video(tmp_path / "yard.mp4")
    path = write_site(tmp_path)
    service, _ = service_without_workers(path, cluster=True)
    _point(path, "yard", "elsewhere.mp4")  # on another host's mount only
    assert service.reload_site() is not None
    assert service.status.site_health.ok, service.status.site_health.message
    assert service.site.config.cameras["yard"].source == "elsewhere.mp4"
