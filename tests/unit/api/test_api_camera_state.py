"""A live tile's state from the runtime's view of its camera (not from the WebSocket)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_support import FakeOps, add_users, login, make_app, make_dashboard
from safewatch.api.camera_state import camera_states, tile_state
from safewatch.runtime.health import CameraReadiness, ComponentHealth, FrameCounts, Readiness


def readiness(**changes: Any) -> CameraReadiness:
    base: dict[str, Any] = {
        "ready": True,
        "name": "Yard",
        "worker": "running",
        "source": "streaming",
        "message": "",
        "pid": None,
        "restarts": 0,
        "reconnects": 0,
        "seconds_since_decoded": 0.2,
        "seconds_since_inferred": 0.3,
        "seconds_since_evaluated": 0.4,
        "fps_target": 5.0,
        "fps_decoded": 25.0,
        "fps_analysed": 5.0,
        "frames": FrameCounts(
            decoded=1, sampled=1, inferred=1, motion_skipped=0, analysed=1, dropped={}
        ),
    }
    return CameraReadiness(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "streaming"),
        ({"seconds_since_decoded": 2.9}, "streaming"),  # within max(3 s, 5 frames at 5 fps)
        ({"seconds_since_decoded": 3.5}, "stale"),  # says streaming, but no frame for 3.5 s
        ({"seconds_since_decoded": 3.5, "fps_target": 1.0}, "streaming"),  # 5 frames = 5 s
        ({"source": "reconnecting", "seconds_since_decoded": 0.5}, "reconnecting"),
        ({"source": "stalled"}, "reconnecting"),
        ({"source": "frozen", "seconds_since_decoded": 0.1}, "frozen"),  # frames, same picture
        ({"worker": "backoff", "source": "connecting"}, "reconnecting"),
        ({"source": "connecting", "seconds_since_decoded": None}, "connecting"),
        ({"worker": "starting"}, "connecting"),
        ({"seconds_since_decoded": None}, "connecting"),
        ({"source": "failed"}, "down"),
        ({"worker": "failed", "source": "streaming"}, "down"),
        ({"worker": "ended", "source": "ended"}, "down"),
    ],
)
def test_tile_state_follows_the_source_not_the_socket(
    changes: dict[str, Any], expected: str
) -> None:
    shown = tile_state(readiness(**changes))
    assert shown.state == expected
    assert shown.frame_age == readiness(**changes).seconds_since_decoded


def test_disabled_and_unknown_cameras_never_look_live() -> None:
    assert tile_state(readiness(), enabled=False).state == "disabled"
    assert tile_state(None).state == "unknown"
    ok = ComponentHealth(ok=True)
    ready = Readiness(
        status="degraded",
        database=ok,
        inference=ok,
        rules=ok,
        site=ok,
        cameras={"yard": readiness(source="reconnecting")},
    )
    states = camera_states(lambda: ready, {"yard": True, "dock": True, "old": False})
    assert {k: v.state for k, v in states.items()} == {
        "yard": "reconnecting",
        "dock": "unknown",
        "old": "disabled",
    }
    assert {k: v.state for k, v in camera_states(None, {"yard": True}).items()} == {
        "yard": "unknown"
    }


def test_one_readiness_answer_is_shared_by_every_tile() -> None:
    from safewatch.api.camera_state import _Shared

    ok = ComponentHealth(ok=True)
    calls: list[int] = []

    def source() -> Readiness:
        calls.append(1)
        return Readiness(status="ready", database=ok, inference=ok, rules=ok, site=ok, cameras={})

    shared = _Shared(source, max_age=60)
    assert shared() is shared()  # within max_age: one ask for any number of tiles
    assert len(calls) == 1
    fresh = _Shared(source, max_age=0)
    fresh()
    fresh()
    assert len(calls) == 3


def test_a_closing_camera_socket_does_not_wait_for_a_slow_readiness_read(tmp_path: Any) -> None:
    """At shutdown the API process's readiness read can take seconds (the runtime is busy
    stopping); the camera socket must close without waiting for it, or uvicorn cancels the task
    after its 2 s grace and logs a traceback."""
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()

    class SlowOps(FakeOps):
        def readiness(self) -> Readiness:
            entered.set()
            release.wait(60)
            returned.set()
            return super().readiness()

    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    try:
        with TestClient(make_app(dashboard, SlowOps())) as client:
            login(client, "admin")
            with client.websocket_connect("/api/v1/ws/cameras/yard") as ws:
                assert ws.receive_json()["type"] == "geometry"
                assert entered.wait(30), "the socket asks for the camera's state"
            # The socket's handler has finished (leaving the block waits for it) while the read
            # is still blocked: it was abandoned, not awaited (awaited, it returns after 60 s).
            assert not returned.is_set()
    finally:
        release.set()
        storage.close()


def test_a_camera_sockets_state_message_is_masked_like_the_http_answers(tmp_path: Any) -> None:
    """The runtime's message for a camera can quote what the camera said, a registered secret
    included. HTTP answers were masked at the edge (``RedactResponses``); the camera socket's
    once-a-second ``state`` message, the same text, went out in clear."""
    from safewatch.config.secrets import SECRETS

    secret = "Pa55wordZebra"
    SECRETS.add([secret])

    class Ops(FakeOps):
        def readiness(self) -> Readiness:
            ok = ComponentHealth(ok=True)
            camera = readiness(
                ready=False,
                source="reconnecting",
                message=f"401 Unauthorized: camera rejected password {secret}",
            )
            return Readiness(
                status="degraded",
                database=ok,
                inference=ok,
                rules=ok,
                site=ok,
                cameras={"yard": camera},
            )

    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    try:
        with TestClient(make_app(dashboard, Ops())) as client:
            login(client, "viewer")
            answer = client.get("/api/v1/cameras/yard").json()["state"]["message"]
            assert answer == "401 Unauthorized: camera rejected password ***"
            with client.websocket_connect("/api/v1/ws/cameras/yard") as ws:
                message = ws.receive_json()
                while message["type"] != "state":
                    message = ws.receive_json()
            assert message["message"] == answer
    finally:
        storage.close()
