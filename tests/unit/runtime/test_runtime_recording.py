"""Continuous recording beside the analysis: a recording that fails never keeps a camera from
being analysed nor a site reload from being reported; it is reported itself (``/readyz``
warning, ``safewatch_recording_up``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from runtime_fakes import RecordingDetector

from api_support import write_site
from safewatch.config.loader import load_site
from safewatch.ingest.state import SourceInfo, SourceStats
from safewatch.runtime.camera_worker import WorkerSpec
from safewatch.runtime.service import RuntimeService, ServeOptions
from safewatch.runtime.status import RuntimeParts
from safewatch.runtime.supervisor import ReloadPlan, WorkerState, WorkerStatus


class _Supervisor:
    """Records what the analysis was asked to run; its cameras stream."""

    def __init__(self, order: list[str]) -> None:
        self.applied: list[list[str]] = []
        self._order = order

    def apply(self, specs: Mapping[str, WorkerSpec], restart: Collection[str] = ()) -> ReloadPlan:
        self._order.append("analysis")
        self.applied.append(sorted(specs))
        return ReloadPlan(unchanged=tuple(sorted(specs)))

    def statuses(self) -> list[WorkerStatus]:
        cameras = self.applied[-1] if self.applied else []
        return [
            WorkerStatus(
                camera_id=key,
                name=key,
                state=WorkerState.RUNNING,
                source_state="streaming",
                message="receiving",
                pid=None,
                incarnation=1,
                restarts=0,
                fps_target=5.0,
                stats=SourceStats(),
                info=SourceInfo(640, 352, 25.0),
                decode_fps=5.0,
                last_frame_at=None,
                memory_bytes=None,
            )
            for key in cameras
        ]


def test_a_camera_is_analysed_and_a_reload_reported_whatever_its_recording_does(
    tmp_path: Path,
) -> None:
    """A handover ran the recorder's launch first, and an unwritable recording folder (an NFS
    error, a folder that cannot be created) raised out of it: the new owner never analysed the
    camera it held the lease for (it retried forever). A site reload raised after the analysis
    had changed, and ``/readyz`` kept the previous reload's message."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    site = yaml.safe_load(path.read_text())
    site["cameras"]["yard"]["recording"] = {}
    site["storage"]["recordings_dir"] = "rec"
    path.write_text(yaml.safe_dump(site))
    (tmp_path / "rec").write_text("not a folder")  # cannot be created
    for model in ("model.onnx", "ppe.onnx"):  # the reload resolves them (a fake detects)
        (tmp_path / model).write_bytes(b"")
    loaded = load_site(path)
    service = RuntimeService(
        loaded,
        ServeOptions(rules=tmp_path / "rules", cluster=True, http=False),
        detector_factory=lambda *_: RecordingDetector(),
    )
    order: list[str] = []
    supervisor = _Supervisor(order)
    service._supervisor = supervisor  # type: ignore[assignment]
    links: Any = service._recordings
    links.start(loaded, repository=None)
    recordings = links._service
    apply = recordings.apply
    recordings.apply = lambda site: order.append("recording") or apply(site)
    try:
        service.own_camera("yard")
        assert supervisor.applied == [["yard"]]
        # the analysis first: a recording folder that hangs (NFS) cannot hold it up either
        assert order == ["analysis", "recording"]

        site["cameras"]["yard"]["recording"] = {"segment_seconds": 30}  # restarts the recorder
        path.write_text(yaml.safe_dump(site))
        assert service.reload_site() is not None
        health = service.status.site_health
        assert health.ok and "could not start ['yard']" in health.message, health.message

        service.status.parts = RuntimeParts(supervisor, recordings=links)  # type: ignore[arg-type]
        service.runtime_metrics.watch(service.status.snapshot)
        yard = service.readiness().cameras["yard"]
        (warning,) = yard.warnings
        assert warning.startswith("not recording: cannot start: [Errno 17] File exists")
        text = service.metrics().decode()
        assert 'safewatch_recording_up{camera="yard"} 0.0' in text
        assert 'safewatch_recording_segments_total{camera="yard"} 0.0' in text
    finally:
        links.stop()
