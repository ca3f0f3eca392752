"""Editing the site file while serving: a camera is added and removed, the other is untouched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from rtsp_server import RtspCamera
from serve_support import readyz, wait_for, write_site

from safewatch.config.loader import load_site
from safewatch.incidents import verify_chain
from safewatch.incidents.site_storage import open_evidence_backend, open_site_storage
from safewatch.runtime.service import RuntimeService, ServeOptions

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(120)]

DOCK_RULES = (
    "version: 1\n"
    "rules:\n"
    "  - {id: anyone-on-dock, kind: zone_intrusion, zone: everywhere_dock, objects: [person]}\n"
    "zones:\n"
    "  everywhere_dock: {camera: dock, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}\n"
)


def test_site_edits_add_and_remove_a_camera_without_restarting_the_other(
    rtsp_camera_factory: Callable[..., RtspCamera], tmp_path: Path
) -> None:
    yard, dock = rtsp_camera_factory(), rtsp_camera_factory()
    path = write_site(tmp_path, {"yard": yard.url})
    service = RuntimeService(
        load_site(path), ServeOptions(rules=tmp_path / "rules", site_poll_seconds=0.2)
    )
    service.start()
    try:
        base = service.http_url
        assert base is not None
        wait_for(lambda: readyz(base)["cameras"]["yard"]["ready"], 30, "yard streaming")
        pid = readyz(base)["cameras"]["yard"]["pid"]

        site = yaml.safe_load(path.read_text())
        site["cameras"]["dock"] = {"source": dock.url, "fps": 5, "models": ["coco"]}
        path.write_text(yaml.safe_dump(site, sort_keys=False))
        # a camera no rule watches is not ready (issue 13): the dock gets its rule too
        (tmp_path / "rules" / "dock.yaml").write_text(DOCK_RULES)
        body = wait_for(
            lambda: (b := readyz(base))["cameras"]["dock"]["ready"] and b["site"]["ok"] and b,
            30,
            "dock added and streaming",
        )
        assert body["cameras"]["yard"]["pid"] == pid
        assert body["cameras"]["yard"]["restarts"] == 0
        assert "added ['dock']" in body["site"]["message"]
        assert body["cameras"]["dock"]["pid"] not in (None, pid)

        path.write_text("cameras: [this is not a site file")  # a bad save is refused ...
        wait_for(lambda: not readyz(base)["site"]["ok"], 10, "the bad site file refused")
        assert set(readyz(base)["cameras"]) == {"yard", "dock"}  # ... and nothing changes

        (tmp_path / "rules" / "dock.yaml").unlink()  # its rule first: it names the camera
        del site["cameras"]["dock"]
        path.write_text(yaml.safe_dump(site, sort_keys=False))
        body = wait_for(
            lambda: (b := readyz(base))["site"]["ok"] and "dock" not in b["cameras"] and b,
            30,
            "dock removed",
        )
        assert "removed ['dock']" in body["site"]["message"]
        assert body["cameras"]["yard"]["pid"] == pid
        assert body["cameras"]["yard"]["ready"] is True
        assert body["status"] == "ready"
    finally:
        service.stop()


def test_a_camera_disabled_while_running_closes_its_incidents_with_the_reason(
    rtsp_camera_factory: Callable[..., RtspCamera], tmp_path: Path
) -> None:
    """Issue 13: the incident.closed chain entry says why the camera's incident ended."""
    yard, dock = rtsp_camera_factory(), rtsp_camera_factory()
    path = write_site(tmp_path, {"yard": yard.url, "dock": dock.url})
    site = load_site(path)
    service = RuntimeService(site, ServeOptions(rules=tmp_path / "rules", site_poll_seconds=0.2))
    service.start()
    storage = open_site_storage(site)
    try:
        repo = storage.repository

        def open_dock() -> list[str]:
            return [i for i, camera in repo.open_ids() if camera == "dock"]

        (opened, *_) = wait_for(open_dock, 60, "an open incident on the dock camera")
        data = yaml.safe_load(path.read_text())
        data["cameras"]["dock"]["enabled"] = False
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        wait_for(lambda: repo.get(opened).ended_at is not None, 60, "the dock incident closed")
        closed = [e for e in repo.timeline(opened) if e.kind == "incident.closed"]
        assert [e.detail.get("reason") for e in closed] == [
            "camera disabled in the site file while it ran"
        ]
        assert "abandoned" not in closed[0].detail  # closed by its own process, at its end
        assert [i for i, camera in repo.open_ids() if camera == "yard"]  # the yard goes on
        service.stop()
        evidence = open_evidence_backend(site.config.storage, site.base_dir)
        assert verify_chain(storage.engine, evidence).ok
    finally:
        service.stop()
        storage.close()
