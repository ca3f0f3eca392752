"""One frame path: the same clip through ``safewatch audit`` and through ``safewatch serve`` (a
file camera replayed without drops, ``realtime: false``) gives the same incidents: ids, start and
end times, tracks.

Both read the file on its own clock (its creation time) and run the same source factory, detector
code, per-camera step (tracker, rule engine, incident manager) and end-of-footage handling. The
site turns the motion gate off (a live-only saving that re-uses detections on still frames) and
the audit detects one frame per call, as the live server does for a single camera.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from backtest_support import CLIP, EXAMPLE_RULES
from rtsp_server import free_port
from serve_support import SAFEWATCH, readyz, serving, stop, wait_for, write_site

from assets import ASSETS, asset
from safewatch.domain import Incident
from safewatch.storage import IncidentRepository, create_engine_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _key(incident: Incident) -> tuple[object, ...]:
    return (
        incident.id,
        incident.rule_id,
        incident.track_ids,
        incident.started_at,
        incident.ended_at,
        incident.zone_id,
    )


def _incidents(database: Path) -> list[tuple[object, ...]]:
    engine = create_engine_for(f"sqlite:///{database}", database.parent)
    try:
        return sorted(_key(i) for i in IncidentRepository(engine).list(limit=10_000))
    finally:
        engine.dispose()


def test_audit_and_serve_raise_identical_incidents_on_the_same_clip(tmp_path: Path) -> None:
    clip = asset(CLIP)
    port = free_port()
    site = write_site(
        tmp_path,
        {"yard": str(clip)},
        port=port,
        extra={
            "models": {
                "coco": {
                    "path": str(asset("models/yolox_nano_coco.onnx")),
                    "format": "yolox",
                    "labels": {"person": "person", "car": "vehicle", "truck": "vehicle"},
                },
                "ppe": {
                    "path": str(ASSETS / "models/ppe14_yolov8n.onnx"),
                    "format": "yolov8",
                    "labels": {"Hardhat": "hardhat", "NO-Hardhat": "no_hardhat"},
                },
            },
            "cameras": {
                "yard": {
                    "source": str(clip),
                    "fps": 5,
                    "models": ["coco", "ppe"],
                    "realtime": False,
                }
            },
            "evidence": {"clips": False},
            "runtime": {
                "motion": {"enabled": False},
                "http": {"host": "127.0.0.1", "port": port},
            },
        },
    )
    rules = tmp_path / "rules"
    shutil.rmtree(rules)
    shutil.copytree(EXAMPLE_RULES, rules)

    audit = subprocess.run(
        [str(SAFEWATCH), "audit", str(clip), "-c", str(site), "-r", str(rules),
         "-o", str(tmp_path / "audit"), "--batch", "1", "--no-progress"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert audit.returncode == 0, audit.stderr
    audited = _incidents(tmp_path / "audit" / "audit.db")
    assert len(audited) >= 3  # the example clip's intrusions and occupancy

    base = f"http://127.0.0.1:{port}"
    database = tmp_path / "data" / "safewatch.db"
    with serving(site, "--rules", str(rules)) as server:
        wait_for(
            lambda: readyz(base)["cameras"]["yard"]["worker"] == "ended", 600, "the file to end"
        )
        # Ended means decoded; the episodes close once the last frame has been judged.
        served = wait_for(
            lambda: (
                (found := _incidents(database))
                and all(row[4] is not None for row in found)
                and len(found) >= len(audited)
                and found
            ),
            300,
            "every incident to close",
        )
        output = stop(server)
    assert server.returncode == 0, output
    assert served == audited, json.dumps({"audit": audited, "serve": served}, default=str)
