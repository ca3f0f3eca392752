"""Continuous recording beside the analysis: a recording that fails never keeps a camera from
being analysed nor a site reload from being reported."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from runtime_fakes import RecordingDetector

from api_support import write_site
from safewatch.config.loader import load_site
from safewatch.runtime.camera_worker import WorkerSpec
from safewatch.runtime.service import RuntimeService, ServeOptions
from safewatch.runtime.supervisor import ReloadPlan


class _Supervisor:
    """Records what the analysis was asked to run."""

    def __init__(self, order: list[str]) -> None:
        self.applied: list[list[str]] = []
        self._order = order

    def apply(self, specs: Mapping[str, WorkerSpec], restart: Collection[str] = ()) -> ReloadPlan:
        self._order.append("analysis")
        self.applied.append(sorted(specs))
        return ReloadPlan(unchanged=tuple(sorted(specs)))


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
    finally:
        links.stop()
