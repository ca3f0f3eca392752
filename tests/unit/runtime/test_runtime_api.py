"""The operations endpoints and the readiness rules behind them."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from safewatch.api import ApiSettings, create_app
from safewatch.recording.service import RecordingState
from safewatch.runtime.health import (
    ComponentHealth,
    Liveness,
    Readiness,
    camera_readiness,
    overall,
    stale_after,
)
from safewatch.runtime.metrics import CameraStatus, RuntimeMetrics, RuntimeSnapshot

NOW = 1_800_000_000.0


def status(camera: str = "yard", **changes: object) -> CameraStatus:
    base = CameraStatus(
        camera_id=camera,
        name=camera.title(),
        worker_state="running",
        source_state="streaming",
        message="receiving rtsp://***:***@cam/1",
        pid=4242,
        incarnation=1,
        restarts=0,
        fps_target=5.0,
        decoded=250,
        sampled=50,
        reconnects=0,
        bad_packets=0,
        source_dropped=0,
        mailbox_dropped=3,
        torn_dropped=0,
        stale_dropped=0,
        inferred=40,
        motion_skipped=7,
        analysed=47,
        decode_fps=24.7,
        analysed_fps=5.0,
        last_decoded_at=NOW - 0.05,
        last_inferred_at=NOW - 0.2,
        last_evaluated_at=NOW - 0.1,
        memory_bytes=90_000_000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


OK = ComponentHealth(ok=True, message="fine")


class FakeServices:
    def __init__(self, cameras: list[CameraStatus], database_ok: bool = True) -> None:
        self.cameras = cameras
        self.database_ok = database_ok
        self.hung = False
        self.metrics_registry = RuntimeMetrics()
        self.metrics_registry.watch(lambda: RuntimeSnapshot(self.cameras, 1, 0, 123_456_789, NOW))

    def liveness(self) -> Liveness:
        if self.hung:
            return Liveness(status="hung", uptime_seconds=9.0, problems=["inference thread hung"])
        return Liveness(status="alive", uptime_seconds=9.0)

    def readiness(self) -> Readiness:
        cameras = {s.camera_id: camera_readiness(s, NOW) for s in self.cameras}
        database = ComponentHealth(ok=self.database_ok, message="sqlite")
        return Readiness(
            status=overall(cameras, (database, OK, OK)),
            database=database,
            inference=OK,
            rules=OK,
            site=OK,
            cameras=cameras,
        )

    def metrics(self) -> bytes:
        return self.metrics_registry.render()


def client(services: FakeServices) -> TestClient:
    return TestClient(create_app(ApiSettings(site_name="North yard"), services))


def test_readyz_reports_every_camera_as_plain_json() -> None:
    response = client(FakeServices([status("yard"), status("dock")])).get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"]["ok"] is True
    yard = body["cameras"]["yard"]
    assert yard["ready"] is True
    assert yard["seconds_since_decoded"] == pytest.approx(0.05, abs=1e-3)
    assert yard["seconds_since_inferred"] == pytest.approx(0.2, abs=1e-3)
    assert yard["seconds_since_evaluated"] == pytest.approx(0.1, abs=1e-3)
    assert yard["frames"]["dropped"] == {
        "source": 0,
        "frozen": 0,
        "mailbox": 3,
        "torn": 0,
        "stale": 0,
    }
    assert yard["pid"] == 4242


def test_a_camera_down_degrades_but_the_database_down_is_not_ready() -> None:
    down = status("dock", source_state="reconnecting", message="connection refused")
    services = FakeServices([status("yard"), down])
    response = client(services).get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["cameras"]["dock"]["ready"] is False
    one = client(services).get("/readyz", params={"camera": "dock"})
    assert one.status_code == 503
    assert one.json()["source"] == "reconnecting"
    assert client(services).get("/readyz", params={"camera": "yard"}).status_code == 200
    missing = client(services).get("/readyz", params={"camera": "gate"})
    assert missing.status_code == 404
    assert "gate" in missing.json()["message"] and "dock, yard" in missing.json()["message"]
    services.database_ok = False
    assert client(services).get("/readyz").status_code == 503


def test_a_camera_whose_frames_are_not_evaluated_any_more_is_not_ready() -> None:
    stale = status(last_evaluated_at=NOW - stale_after(5.0) - 1)
    assert camera_readiness(stale, NOW).ready is False
    ended = camera_readiness(status(worker_state="ended", source_state="ended"), NOW)
    assert overall({"clip": ended}, (OK,)) == "ready"  # a finished file is not a failure
    assert overall({"clip": ended}, (OK,), stopping=True) == "stopping"


def test_a_frozen_camera_is_down_for_readiness_and_metrics() -> None:
    """Frames arrive but the picture is frozen: not ready, not up, its withheld frames counted
    (SafewatchCameraDown fires on safewatch_camera_up == 0)."""
    frozen = status(
        "dock",
        source_state="frozen",
        message="the picture has not changed for 60 s",
        frozen_dropped=12,
    )
    services = FakeServices([status("yard"), frozen])
    one = client(services).get("/readyz", params={"camera": "dock"})
    assert one.status_code == 503
    assert one.json()["frames"]["dropped"]["frozen"] == 12
    text = client(services).get("/metrics").text
    assert 'safewatch_camera_up{camera="dock"} 0.0' in text
    assert 'safewatch_camera_state{camera="dock",state="frozen"} 1.0' in text
    assert 'safewatch_camera_dropped_frames_total{camera="dock",stage="frozen"} 12.0' in text


def test_healthz_is_liveness_only() -> None:
    services = FakeServices([status(source_state="failed")])
    response = client(services).get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "alive"  # a dead camera is no reason to restart
    services.hung = True
    hung = client(services).get("/healthz")
    assert hung.status_code == 503
    assert hung.json()["problems"] == ["inference thread hung"]


def test_metrics_are_prometheus_text_with_camera_series() -> None:
    response = client(FakeServices([status("yard")])).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'safewatch_camera_decoded_frames_total{camera="yard"} 250.0' in text
    assert 'safewatch_camera_dropped_frames_total{camera="yard",stage="mailbox"} 3.0' in text
    assert 'safewatch_camera_state{camera="yard",state="streaming"} 1.0' in text
    assert 'safewatch_resident_memory_bytes{process="decode:yard"} 9e+07' in text
    assert 'safewatch_queue_depth{queue="mailbox"} 1.0' in text
    assert "safewatch_inference_latency_seconds" in text
    assert "process_resident_memory_bytes" in text  # the server's own, from the default registry


def test_a_file_camera_that_ended_has_no_camera_down_series() -> None:
    """/readyz leaves an ended camera out; its up 0 and growing seconds since frame fired
    SafewatchCameraDown and SafewatchCameraStale for good."""
    ended = status("clip", worker_state="ended", source_state="ended", message="end of file")
    services = FakeServices([status("yard"), ended])
    text = client(services).get("/metrics").text
    assert 'safewatch_camera_up{camera="yard"} 1.0' in text
    assert 'safewatch_camera_seconds_since_frame{camera="yard",stage="decoded"}' in text
    assert 'safewatch_camera_up{camera="clip"}' not in text
    assert 'safewatch_camera_seconds_since_frame{camera="clip"' not in text
    assert 'safewatch_camera_decoded_frames_total{camera="clip"} 250.0' in text  # what it did
    assert 'safewatch_camera_state{camera="clip",state="ended"} 1.0' in text
    assert services.readiness().status == "ready"


def test_every_metric_of_the_server_is_documented() -> None:
    """docs/serve.md's metrics table missed bad packets, PPE person-seconds and the inference
    worker's up gauge."""
    from pathlib import Path

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    doc = (Path(__file__).resolve().parents[3] / "docs" / "serve.md").read_text()
    registry = FakeServices([status("yard")]).metrics_registry.registry  # this server's own
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        if family.name.startswith("safewatch_") and not family.name.endswith("_created")
    }
    assert len(exported) >= 20  # the scan finds what it must
    assert sorted(name for name in exported if f"`{name}`" not in doc) == []


def test_each_runtime_error_stage_is_at_zero_before_its_first_error() -> None:
    # increase() reads nothing of a series born at 1 by its first failure
    registry = RuntimeMetrics().registry
    for stage in ("inference", "rules", "storage", "inference-thread", "rules-thread"):
        assert registry.get_sample_value("safewatch_runtime_errors_total", {"stage": stage}) == 0


def test_a_recording_disk_something_else_fills_is_a_recording_warning() -> None:
    """The free-space guard cannot be met: only the newest hour of footage stays, which the
    log said once an hour and /readyz not at all."""
    full = RecordingState(True, 30, "writing", "1.50 GB free ...: something else fills the disk")
    services = FakeServices([status("yard", recording=full)])
    body = client(services).get("/readyz").json()
    assert body["status"] == "degraded"
    assert body["cameras"]["yard"]["ready"] is True
    assert body["cameras"]["yard"]["warnings"] == [f"recording: {full.warning}"]


def test_a_camera_that_should_record_and_does_not_is_a_warning_not_a_failure() -> None:
    """The analysis still protects people there, so the camera stays ready; but footage that
    operators count on is not being kept, which only a log line said (and nothing at all for
    a recorder thread that had died)."""
    failing = RecordingState(False, 12, "cannot start: [Errno 5] Input/output error; ...")
    services = FakeServices(
        [
            status("yard", recording=failing),
            status("dock", recording=RecordingState(True, 30, "writing")),
            status("gate"),  # records nothing
        ]
    )
    body = client(services).get("/readyz").json()
    assert body["status"] == "degraded"
    yard = body["cameras"]["yard"]
    assert yard["ready"] is True
    assert yard["warnings"] == [f"not recording: {failing.message}"]
    assert body["cameras"]["dock"]["warnings"] == body["cameras"]["gate"]["warnings"] == []
    assert client(services).get("/readyz", params={"camera": "yard"}).status_code == 200
    text = client(services).get("/metrics").text
    assert 'safewatch_recording_up{camera="yard"} 0.0' in text
    assert 'safewatch_recording_up{camera="dock"} 1.0' in text
    assert 'safewatch_recording_segments_total{camera="yard"} 12.0' in text
    assert 'safewatch_recording_segments_total{camera="dock"} 30.0' in text
    assert not any(
        line.startswith("safewatch_recording") and 'camera="gate"' in line
        for line in text.splitlines()
    )
