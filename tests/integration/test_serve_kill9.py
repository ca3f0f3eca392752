"""``kill -9`` of ``safewatch serve`` mid-incident: the next start closes the incident once.

A dead process cannot close its incidents and the engine that starts next knows nothing of them,
so before this start-up step they stayed open forever and their "closed" alert never left. Here a
real server process (a looped video file, a signature-checking webhook receiver) is killed while
an incident is open; a fresh server must close that incident at the last moment it was known to
hold, with the reason in its chain entry, announce the close exactly once, and the chain must
still verify.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rtsp_server import free_port
from serve_support import readyz, wait_for, write_site
from sqlalchemy import select

from alert_servers import WebhookReceiver
from assets import asset
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.storage.tables import IncidentRow

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SAFEWATCH = Path(sys.executable).with_name("safewatch")


def start_server(site: Path, folder: Path) -> subprocess.Popen[str]:
    log = (folder / f"serve-{len(list(folder.glob('serve-*.log')))}.log").open("w")
    return subprocess.Popen(
        [str(SAFEWATCH), "serve", "--config", str(site)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SAFEWATCH_DEBUG": "0"},
    )


def events_for(receiver: WebhookReceiver, incident_id: str) -> list[str]:
    bodies: list[dict[str, Any]] = [r.json() for r in receiver.accepted()]
    return [b["event"] for b in bodies if b["incident"]["id"] == incident_id]


def held_until(repository: IncidentRepository, incident_id: str) -> float | None:
    with repository.engine.connect() as connection:
        value = connection.execute(
            select(IncidentRow.held_until).where(IncidentRow.id == incident_id)
        ).scalar_one()
    return None if value is None else float(value)


def test_kill_9_mid_incident_then_restart_closes_it_with_one_closed_alert(
    tmp_path: Path,
) -> None:
    receiver = WebhookReceiver(b"kill-secret").start()
    alerts = {
        "channels": {
            "hook": {"type": "webhook", "url": f"{receiver.url}/in", "secret": "kill-secret"}
        },
        "routes": [{"id": "all", "channels": ["hook"], "events": ["opened", "closed"]}],
    }
    port = free_port()
    video = asset("video/construction_cctv_640x352_24s.mp4")
    site = write_site(tmp_path, {"yard": str(video)}, port=port, extra={"alerts": alerts})
    config = yaml.safe_load(site.read_text())
    config["cameras"]["yard"]["loop"] = True
    site.write_text(yaml.safe_dump(config, sort_keys=False))
    # One long episode (anyone in view, no track in the id) rather than many short per-track ones.
    (tmp_path / "rules" / "view.yaml").write_text(
        "version: 1\n"
        "zones:\n"
        "  everywhere: {camera: yard, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}\n"
        "rules:\n"
        "  - {id: nobody-in-view, kind: occupancy, zone: everywhere, objects: [person],\n"
        "     max_count: 0, min_duration: 0s, grace: 10s, severity: low}\n"
    )
    base = f"http://127.0.0.1:{port}"
    engine = create_engine_for("sqlite:///data/safewatch.db", tmp_path)
    repository = IncidentRepository(engine)
    first = start_server(site, tmp_path)
    try:
        victim = wait_for(
            lambda: next((i for i in repository.list() if i.ended_at is None), None),
            90,
            "an open incident",
        )
        # Let the manager note that it still holds (every 2 s of an open episode).
        wait_for(lambda: held_until(repository, victim.id), 30, "the incident marked as holding")
        wait_for(lambda: "opened" in events_for(receiver, victim.id), 30, "its opened alert")
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
        held = held_until(repository, victim.id)
        assert held is not None
        assert repository.get(victim.id).ended_at is None, "the kill should leave it open"
        assert events_for(receiver, victim.id) == ["opened"]

        second = start_server(site, tmp_path)
        try:
            wait_for(lambda: readyz(base)["cameras"]["yard"]["ready"], 60, "the restart")
            closed = repository.get(victim.id)
            assert closed.ended_at == held, "closed at the last moment it was known to hold"
            wait_for(lambda: "closed" in events_for(receiver, victim.id), 30, "its closed alert")
            closing = [e for e in repository.timeline(victim.id) if e.kind == "incident.closed"]
            assert len(closing) == 1
            assert closing[0].detail["abandoned"] is True
            assert "process died" in closing[0].detail["reason"]
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        receiver.stop()
    assert events_for(receiver, victim.id) == ["opened", "closed"], "announced closed once"
    assert all(i.ended_at is not None for i in repository.list()), "SIGTERM closes the rest"
    engine.dispose()
    verify = subprocess.run(
        [str(SAFEWATCH), "verify", "--config", str(site)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
