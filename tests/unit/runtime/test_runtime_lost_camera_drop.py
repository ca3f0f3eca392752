"""A camera lost under ``serve --cluster`` stays stopping until the rules stage dropped its run."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from runtime_fakes import RecordingDetector

from api_support import write_site
from safewatch.config.loader import load_site
from safewatch.runtime.camera_worker import WorkerSpec
from safewatch.runtime.service import RuntimeService, ServeOptions
from safewatch.runtime.supervisor import ReloadPlan


class _Supervisor:
    """Runs what it is asked to; a camera no longer asked for is stopped (the service told)."""

    def __init__(self, service: RuntimeService) -> None:
        self._service = service
        self._running: set[str] = set()

    def apply(self, specs: Mapping[str, WorkerSpec], restart: Collection[str] = ()) -> ReloadPlan:
        removed = sorted(self._running - set(specs))
        self._running = set(specs)
        for camera in removed:
            self._service._camera_stopped(camera)
        return ReloadPlan(removed=tuple(removed), unchanged=tuple(sorted(specs)))


class _BusyRules:
    """A rules stage whose queue stays full for ``busy`` calls of ``drop_camera`` (each would
    have waited its timeout), then has processed the drop."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls: list[str] = []

    def drop_camera(self, camera_id: str, timeout: float = 10.0) -> bool:
        self.calls.append(camera_id)
        return len(self.calls) > self.busy


def test_a_lost_camera_is_not_released_before_the_rules_stage_dropped_its_run(
    tmp_path: Path,
) -> None:
    """``drop_camera``'s result was ignored: after 10 s of a full queue (the marker never
    queued) or of a busy stage, ``disown_camera`` returned, the member could claim the camera
    again at epoch + 1, and the old run's episodes went on (or the late marker dropped the new
    run). Now the stop waits until the drop was done."""
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    service = RuntimeService(
        load_site(path),
        ServeOptions(rules=tmp_path / "rules", cluster=True, http=False),
        detector_factory=lambda *_: RecordingDetector(),
    )
    service._supervisor = _Supervisor(service)  # type: ignore[assignment]
    rules = _BusyRules(busy=2)
    service._rules = rules  # type: ignore[assignment]
    service.own_camera("yard")
    service.disown_camera("yard", write=False)
    assert rules.calls == ["yard"] * 3, "returned before the drop was done"
    assert service.owned_cameras() == frozenset()
    assert not service._ownership.is_lost("yard")  # the stop is over
