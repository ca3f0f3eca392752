"""A camera that stops takes its series of the camera-labelled instruments with it."""

from __future__ import annotations

from pathlib import Path

from api_support import write_site
from safewatch.config.loader import load_site
from safewatch.runtime.service import RuntimeService, ServeOptions


def test_a_stopped_cameras_frame_ages_and_person_seconds_are_no_longer_exported(
    tmp_path: Path,
) -> None:
    """They were exported for as long as the server ran: a removed camera's, and under
    ``serve --cluster`` those of every camera the node ever held."""
    path = write_site(tmp_path)
    service = RuntimeService(load_site(path), ServeOptions(rules=tmp_path / "rules", http=False))
    metrics = service.runtime_metrics
    for camera in ("yard", "dock"):
        for stage in ("inference", "evaluated"):
            metrics.frame_age.labels(camera=camera, stage=stage).observe(0.1)
        for state in ("present", "unknown"):
            metrics.ppe_person_seconds.labels(camera=camera, item="hardhat", state=state).inc(2)

    service._camera_stopped("yard")  # the supervisor's callback: removed, released, disabled

    def exported(camera: str) -> list[str]:
        text = metrics.render().decode()
        return [
            line
            for line in text.splitlines()
            if f'camera="{camera}"' in line
            and line.startswith(("safewatch_frame_age_seconds", "safewatch_camera_ppe_"))
        ]

    assert exported("yard") == []
    dock = "\n".join(exported("dock"))  # the other camera's stay
    for label in ('stage="inference"', 'stage="evaluated"', 'state="present"', 'state="unknown"'):
        assert label in dock
