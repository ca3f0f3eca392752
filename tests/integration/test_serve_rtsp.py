"""``safewatch serve`` on a real RTSP camera: incidents, an outage and recovery, a killed worker."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rtsp_server import RtspCamera
from serve_support import metric, readyz, wait_for, write_site

from safewatch.config.loader import load_site
from safewatch.runtime.service import RuntimeService, ServeOptions
from safewatch.storage import IncidentRepository, create_engine_for

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[IncidentRepository]:
    engine = create_engine_for("sqlite:///data/safewatch.db", tmp_path)
    yield IncidentRepository(engine)
    engine.dispose()


def camera_state(base: str, camera: str) -> dict[str, object]:
    state: dict[str, object] = readyz(base)["cameras"][camera]
    return state


def test_serve_a_live_camera_through_an_outage_and_a_killed_worker(
    rtsp_camera: RtspCamera, tmp_path: Path, repository: IncidentRepository
) -> None:
    site = load_site(write_site(tmp_path, {"yard": rtsp_camera.url}))
    service = RuntimeService(site, ServeOptions(rules=tmp_path / "rules"))
    service.start()
    try:
        base = service.http_url
        assert base is not None
        # Live: frames flow, the camera is ready, incidents reach the database.
        wait_for(lambda: camera_state(base, "yard")["ready"], 30, "the camera to be ready")
        assert httpx.get(f"{base}/healthz").json()["status"] == "alive"
        wait_for(repository.list, 30, "an incident in the database")
        body = readyz(base)
        assert body["status"] == "ready" and body["database"]["ok"] is True
        assert metric(base, "safewatch_camera_analysed_frames_total", camera="yard") > 0
        assert metric(base, "safewatch_inference_batch_size_count") > 0

        # Outage: the camera goes away, the worker reconnects, readiness says so.
        rtsp_camera.kill()
        down = wait_for(
            lambda: (
                (s := camera_state(base, "yard"))["source"] in ("stalled", "reconnecting") and s
            ),
            15,
            "the outage to show in /readyz",
        )
        assert down["ready"] is False
        assert readyz(base)["status"] == "degraded"
        rtsp_camera.start()
        wait_for(lambda: camera_state(base, "yard")["ready"], 30, "recovery after the outage")
        assert metric(base, "safewatch_camera_reconnects_total", camera="yard") >= 1
        assert camera_state(base, "yard")["restarts"] == 0  # the worker itself never died

        # A killed decode worker is restarted by the supervisor with a new process.
        pid = camera_state(base, "yard")["pid"]
        assert isinstance(pid, int) and pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: (s := camera_state(base, "yard"))["pid"] not in (None, pid) and s["ready"],
            30,
            "a new worker streaming again",
        )
        assert metric(base, "safewatch_camera_worker_restarts_total", camera="yard") == 1
        assert metric(base, "safewatch_resident_memory_bytes", process="decode:yard") > 0
    finally:
        report = service.stop()
    assert all(incident.ended_at is not None for incident in repository.list())
    assert report.seconds < 20
