"""A site reload hands the rule engine the cameras' new floor calibrations, between frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from runtime_fakes import RecordingSupervisor, moving_square_video, service_without_workers

from api_support import write_site
from safewatch.domain.events import Phase, RuleEvent
from safewatch.domain.tracks import Track, TrackedFrame
from safewatch.rules import calibrations_from_site, load_rules
from safewatch.rules.reload import ReloadingEngine, RuleSetHolder
from safewatch.runtime.service import RuntimeService

W, H = 1000, 500
FPS = 5.0
SQUARE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
CM_PER_PX = {"image": SQUARE, "floor": [[0, 0], [10, 0], [10, 5], [0, 5]]}
"""1 px = 1 cm on the floor of a 1000 x 500 px frame: 60 px a frame at 5 fps is 10.8 km/h."""
HALF_CM_PER_PX = {"image": SQUARE, "floor": [[0, 0], [5, 0], [5, 2.5], [0, 2.5]]}
"""The same floor measured again, half as large: the same motion is 5.4 km/h."""
RULES = """\
version: 1
rules:
  - {id: yard-speed, kind: speed, cameras: [yard], objects: [person], max_speed: 10km/h,
     min_duration: 0}
  - {id: dock-speed, kind: speed, cameras: [dock], objects: [person], max_speed: 10km/h,
     min_duration: 0}
"""


def _frame(camera: str, index: int) -> TrackedFrame:
    """A person walking right 60 px a frame."""
    x, y = 100.0 + 60.0 * index, 400.0
    track = Track(track_id=1, label="person", xyxy=(x - 20, y - 100, x + 20, y), confidence=0.9)
    t = index / FPS
    return TrackedFrame(
        camera_id=camera, seq=index, pts=t, timestamp=t, width=W, height=H, tracks=(track,)
    )


def _phases(events: list[RuleEvent]) -> list[tuple[str, str, Phase]]:
    return [(e.camera_id, e.rule_id, e.phase) for e in events]


def _served(tmp_path: Path) -> tuple[Path, dict[str, Any], RuntimeService, RecordingSupervisor]:
    """A service over a site whose yard is calibrated (1 px = 1 cm) with :data:`RULES`, its
    supervisor a fake; the site file's path and its document, to edit and reload."""
    path = write_site(tmp_path)
    site: dict[str, Any] = yaml.safe_load(path.read_text())
    site["cameras"]["yard"]["calibration"] = CM_PER_PX
    path.write_text(yaml.safe_dump(site))
    (tmp_path / "rules" / "yard.yaml").write_text(RULES)
    moving_square_video(tmp_path / "yard.mp4")  # a camera a reload enables must open
    service, supervisor = service_without_workers(path)
    return path, site, service, supervisor


def test_a_reload_measures_with_the_new_calibration_and_runs_rules_of_a_new_camera(
    tmp_path: Path,
) -> None:
    """Calibrations were solved once at start-up: a calibration corrected in the site file
    while serving never reached the engine (speeds stayed wrong until a restart), and a camera
    enabled live with a calibration had its speed rule skipped ("measures in metres but camera
    dock has no calibration") although /readyz counted it as watched."""
    path, site, service, supervisor = _served(tmp_path)
    # What start() wires: the engine follows the rule holder, with the site's calibrations.
    holder = RuleSetHolder(load_rules(tmp_path / "rules"))
    engine = ReloadingEngine(holder, "UTC", calibrations_from_site(service.site.config))
    service._engine = engine

    events = [e for i in range(5) for e in engine.evaluate(_frame("yard", i))]
    assert ("yard", "yard-speed", Phase.STARTED) in _phases(events)  # 10.8 km/h
    assert engine.evaluate(_frame("dock", 0)) == []  # disabled, uncalibrated: skipped

    before = service._specs(service.site)
    site["cameras"]["yard"]["calibration"] = HALF_CM_PER_PX  # remeasured: half as large
    site["cameras"]["dock"].update(enabled=True, calibration=CM_PER_PX)  # added live
    path.write_text(yaml.safe_dump(site))
    assert service.reload_site() is not None
    assert service.status.site_health.ok

    # The yard's episode measured with the old calibration ends; at 5.4 km/h none opens again.
    ended = engine.evaluate(_frame("yard", 5))
    assert _phases(ended) == [("yard", "yard-speed", Phase.ENDED)]
    assert [e for i in range(6, 12) for e in engine.evaluate(_frame("yard", i))] == []
    # The dock's rule in metres runs with its calibration from its next frame.
    events = [e for i in range(5) for e in engine.evaluate(_frame("dock", i))]
    assert ("dock", "dock-speed", Phase.STARTED) in _phases(events)
    assert "10.8 km/h" in events[0].message
    # A calibration is the rule engine's: the yard's decode worker is not restarted for it.
    assert supervisor.applied[-1]["yard"] == before["yard"]


def test_a_reload_that_removes_a_calibration_running_rules_need_is_refused(
    tmp_path: Path,
) -> None:
    """Re-review: the engine got the new calibrations (none for the yard) at once, so the yard's
    speed rule ended its incident and was skipped from then on, while the rule reload the new
    site triggered was refused ("uncalibrated camera") and /readyz stayed ready."""
    path, site, service, _ = _served(tmp_path)
    holder = service._rule_files.hold(load_rules(tmp_path / "rules"))
    engine = ReloadingEngine(holder, "UTC", calibrations_from_site(service.site.config))
    service._engine = engine
    events = [e for i in range(5) for e in engine.evaluate(_frame("yard", i))]
    assert ("yard", "yard-speed", Phase.STARTED) in _phases(events)

    del site["cameras"]["yard"]["calibration"]
    path.write_text(yaml.safe_dump(site))
    assert service.reload_site() is None
    health = service.status.site_health
    assert not health.ok
    assert "calibration of camera 'yard' (rules yard-speed) is removed" in health.message
    registry = service.runtime_metrics.registry
    assert registry.get_sample_value("safewatch_site_reload_failing") == 1
    # The previous site runs: the rule keeps measuring, its incident stays open.
    assert service.site.config.cameras["yard"].calibration is not None
    assert _phases(engine.evaluate(_frame("yard", 5))) == [("yard", "yard-speed", Phase.ONGOING)]
