"""The API process of ``safewatch serve`` (issue 13): a real spawned process on a real socket,
fed by :class:`~safewatch.runtime.api_link.ApiLink` from a recording stand-in for the runtime.

It must answer what the runtime knows (health, readiness, metrics, rules and their reload), show
the live frames and incident changes the runtime pushes, read incidents from the database itself,
run at a lower priority than the analysis, and come back on the same port when it dies.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import websockets

from api_support import FakeOps, incident, wait_until, write_site
from safewatch.api.auth import AuthStore
from safewatch.api.dashboard import StandaloneRules
from safewatch.config.loader import LoadedSite, load_site
from safewatch.domain import Track, TrackedFrame
from safewatch.incidents.manager import ChangeKind, IncidentChange
from safewatch.incidents.site_storage import open_site_storage
from safewatch.rules.reload import ReloadStatus, RuleGeneration
from safewatch.runtime.api_link import ApiLink, ApiProcessSpec
from safewatch.runtime.api_messages import RulesPush
from safewatch.runtime.health import Liveness, Readiness
from safewatch.runtime.http_server import bind_listener

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


class RecordingRuntime(FakeOps):
    """The runtime's side of the link: fixed health answers, real rules, reloads counted."""

    def __init__(self, rules: StandaloneRules) -> None:
        self.rules = rules
        self.reloads = 0
        self.asked: list[str] = []

    def liveness(self) -> Liveness:
        self.asked.append("liveness")
        return Liveness(status="alive", uptime_seconds=42.0)

    def readiness(self) -> Readiness:
        self.asked.append("readiness")
        return super().readiness()

    def metrics(self) -> bytes:
        return b"# from the analysis process\nsafewatch_test_metric 7\n"

    def reload_rules(self) -> ReloadStatus:
        self.reloads += 1
        return self.rules.reload_rules()

    def rule_generation(self) -> RuleGeneration:
        return self.rules.rule_generation()

    def rule_status(self) -> ReloadStatus:
        return self.rules.rule_status()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ApiLink, RecordingRuntime, str, str, LoadedSite]]:
    site = load_site(write_site(tmp_path))
    storage = open_site_storage(site)
    store = AuthStore(storage.engine)
    store.add_user("admin", "correct horse battery", "admin")
    token = store.create_token("admin", "test").token
    storage.repository.upsert(incident(1))
    storage.close()
    rules = StandaloneRules(tmp_path / "rules", lambda: site)
    runtime = RecordingRuntime(rules)
    listener = bind_listener("127.0.0.1", 0)
    spec = ApiProcessSpec(
        site=site,
        rules_path=tmp_path / "rules",
        rules=RulesPush(rules.rule_generation(), rules.rule_status()),
        nice=5,
    )
    link = ApiLink(spec, listener, runtime)
    link.start()
    port = listener.getsockname()[1]
    try:
        yield link, runtime, f"http://127.0.0.1:{port}", token, site
    finally:
        link.stop()
        listener.close()


def _frame(seq: int) -> tuple[SimpleNamespace, TrackedFrame]:
    image = np.full((72, 128, 3), 40 + seq, np.uint8)
    person = Track(3, "person", (10.0, 10.0, 40.0, 70.0), 0.9)
    tracked = TrackedFrame("yard", seq, seq / 5, 1_750_000_000.0 + seq / 5, 128, 72, (person,))
    return SimpleNamespace(image=image, published_at=tracked.timestamp), tracked


def test_the_api_process_serves_what_the_runtime_knows(
    served: tuple[ApiLink, RecordingRuntime, str, str, LoadedSite],
) -> None:
    link, runtime, base, token, _site = served
    auth = {"Authorization": f"Bearer {token}"}
    api = psutil.Process(link.pid)
    assert link.pid != os.getpid()
    assert api.nice() == psutil.Process().nice() + 5  # the analysis goes first

    live = httpx.get(f"{base}/healthz", timeout=10)
    assert live.status_code == 200 and live.json()["uptime_seconds"] == 42.0
    assert httpx.get(f"{base}/readyz", headers=auth, timeout=10).json()["status"] == "ready"
    metrics = httpx.get(f"{base}/metrics", headers=auth, timeout=10).text
    assert "safewatch_test_metric 7" in metrics
    assert {"liveness", "readiness"} <= set(runtime.asked)

    # incidents come from the database, read by the API process itself
    page = httpx.get(f"{base}/api/v1/incidents", headers=auth, timeout=10).json()
    assert page["total"] == 1

    # a rule reload runs in the runtime; the API sees its outcome when the request returns
    reloaded = httpx.post(f"{base}/api/v1/rules/reload", headers=auth, timeout=30)
    assert reloaded.status_code == 200, reloaded.text
    assert runtime.reloads == 1
    assert reloaded.json()["attempts"] == runtime.rule_status().attempts
    status = httpx.get(f"{base}/api/v1/rules/status", headers=auth, timeout=10).json()
    assert status["attempts"] == runtime.rule_status().attempts


async def _next(socket: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    """The next JSON message of ``kind`` (camera state and pings are skipped)."""
    while True:
        raw = await asyncio.wait_for(socket.recv(), 30)
        message: dict[str, Any] = json.loads(raw)
        if message["type"] == kind:
            return message
        assert message["type"] in ("state", "ping"), message


def test_live_frames_and_incident_changes_reach_the_browser(
    served: tuple[ApiLink, RecordingRuntime, str, str, LoadedSite],
) -> None:
    link, _runtime, base, token, _site = served
    auth = {"Authorization": f"Bearer {token}"}
    ws_base = base.replace("http://", "ws://")
    opened = incident(2)

    async def watch() -> tuple[dict[str, Any], dict[str, Any], bytes | str]:
        async with (
            websockets.connect(
                f"{ws_base}/api/v1/ws/cameras/yard?video=jpeg", additional_headers=auth
            ) as camera,
            websockets.connect(f"{ws_base}/api/v1/ws/incidents", additional_headers=auth) as feed,
        ):
            await _next(camera, "geometry")
            analysed, tracked = _frame(1)
            change = IncidentChange(opened, ChangeKind.OPENED)
            await asyncio.sleep(0.5)  # the incident feed subscribes after its handshake
            link.on_frame(analysed, tracked, [], [change])
            frame = await _next(camera, "frame")
            jpeg = await asyncio.wait_for(camera.recv(), 30)
            notice = await _next(feed, "incident")
            return frame, notice, jpeg

    frame, notice, jpeg = asyncio.run(watch())
    assert isinstance(jpeg, bytes)
    assert frame["type"] == "frame" and frame["frame_seq"] == 1
    assert frame["tracks"][0]["id"] == 3
    assert jpeg[:2] == b"\xff\xd8"
    assert notice["kind"] == "opened"
    assert notice["incident"]["id"] == opened.id
    still = httpx.get(f"{base}/api/v1/cameras/yard/frame.jpg", headers=auth, timeout=10)
    assert still.status_code == 200 and still.headers["content-type"] == "image/jpeg"


def test_a_killed_api_process_is_restarted_on_the_same_socket(
    served: tuple[ApiLink, RecordingRuntime, str, str, LoadedSite],
) -> None:
    link, _runtime, base, _token, _site = served
    first = link.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie")
    assert wait_until(link.check, timeout=30)
    assert link.pid != first
    # the port stayed bound in the server: the first request waits in the backlog, then works
    assert httpx.get(f"{base}/healthz", timeout=60).status_code == 200
    assert link.restarts == 1


def test_a_stopped_api_process_is_killed_restarted_and_counted(tmp_path: Path) -> None:
    """SIGSTOP: the process lives, the socket accepts, nobody answers. The liveness ping goes
    unanswered, the server kills and restarts it on the same socket (margins of seconds)."""
    site = load_site(write_site(tmp_path))
    rules = StandaloneRules(tmp_path / "rules", lambda: site)
    listener = bind_listener("127.0.0.1", 0)
    spec = ApiProcessSpec(
        site=site,
        rules_path=tmp_path / "rules",
        rules=RulesPush(rules.rule_generation(), rules.rule_status()),
        nice=5,
    )
    reasons: list[str] = []
    link = ApiLink(
        spec,
        listener,
        RecordingRuntime(rules),
        restarted=reasons.append,
        ping_seconds=0.5,
        hang_seconds=10.0,
    )
    link.start()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        first = link.pid
        assert first is not None
        for _ in range(4):  # answered pings: no restart while it serves
            assert link.check() is False
            assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
        assert link.restarts == 0 and reasons == []
        os.kill(first, signal.SIGSTOP)
        assert wait_until(link.check, timeout=90, step=0.5)
        assert reasons == ["hung"] and link.hangs == 1
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
        assert link.pid != first
        assert httpx.get(f"{base}/healthz", timeout=60).status_code == 200
    finally:
        link.stop()
        listener.close()


def test_signals_from_the_terminal_do_not_stop_the_api_process(
    served: tuple[ApiLink, RecordingRuntime, str, str, LoadedSite],
) -> None:
    """Ctrl-C reaches every process of the group; the server decides when the API ends."""
    link, _runtime, base, _token, _site = served
    assert link.pid is not None
    os.kill(link.pid, signal.SIGINT)
    os.kill(link.pid, signal.SIGTERM)
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
    assert psutil.Process(link.pid).is_running()
