"""A camera's true state for the dashboard, from the runtime's own view of its source.

The live tile used to say "live" whenever its WebSocket was connected, so a dead camera showed
green over a black tile while ``/readyz`` knew it was reconnecting. The tile now shows what the
runtime knows: the worker's and the source's state and the age of the newest decoded frame, which
:func:`tile_state` folds into one word an operator can act on:

* ``streaming``: frames arrive;
* ``stale``: the source says streaming but no frame was decoded for longer than the readiness
  threshold (:func:`~safewatch.api.health.stale_after`), e.g. a stuck decoder;
* ``frozen``: frames arrive but the picture has not changed at all for
  ``watchdog.freeze_seconds`` (:mod:`safewatch.ingest.freeze`): nothing is analysed there;
* ``reconnecting``: the stream failed or stalled and the source is trying again;
* ``connecting``: first connection, or the worker is starting;
* ``down``: the worker or the source gave up (failed, ended, stopped);
* ``disabled``: switched off in the site file; ``unknown``: no runtime answers (an API without
  cameras, as in tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from safewatch.api.health import CameraReadiness, PPECoverageOut, Readiness, stale_after

__all__ = [
    "CameraStateOut",
    "ReadinessSource",
    "TileState",
    "camera_states",
    "readiness_of",
    "tile_state",
]

TileState = Literal[
    "streaming",
    "stale",
    "frozen",
    "reconnecting",
    "connecting",
    "down",
    "disabled",
    "unknown",
]
ReadinessSource = Callable[[], Readiness]


class CameraStateOut(BaseModel):
    """What a live tile shows about its camera."""

    state: TileState
    frame_age: float | None = Field(
        description="Seconds since the newest decoded frame (null before the first)."
    )
    analysis_age: float | None = Field(
        description="Seconds since the newest analysed frame (what the overlay shows)."
    )
    source: str = Field(description="The source's own state (connecting, streaming, ...).")
    worker: str = Field(description="The camera worker's state (running, backoff, ...).")
    message: str
    reconnects: int
    ppe: list[PPECoverageOut] = Field(
        default_factory=list,
        description="Per PPE item, the share of the last 10 minutes' person-seconds whose state "
        "could be checked (the tile shows it: a low share means PPE rules are silent there).",
    )
    warnings: list[str] = Field(
        default_factory=list, description="The camera's /readyz warnings (PPE not verifiable)."
    )


def tile_state(camera: CameraReadiness | None, *, enabled: bool = True) -> CameraStateOut:
    """One camera's tile state from its readiness (``None``: the runtime does not know it)."""
    if not enabled:
        return CameraStateOut(
            state="disabled",
            frame_age=None,
            analysis_age=None,
            source="",
            worker="",
            message="disabled in the site file",
            reconnects=0,
        )
    if camera is None:
        return CameraStateOut(
            state="unknown",
            frame_age=None,
            analysis_age=None,
            source="",
            worker="",
            message="no camera state from the runtime",
            reconnects=0,
        )
    age = camera.seconds_since_decoded
    state: TileState
    if camera.worker in ("failed", "ended", "stopped") or camera.source in ("failed", "ended"):
        state = "down"
    elif camera.source in ("reconnecting", "stalled") or camera.worker == "backoff":
        state = "reconnecting"
    elif camera.source == "frozen":
        state = "frozen"
    elif camera.source == "connecting" or camera.worker == "starting" or age is None:
        state = "connecting"
    elif age > stale_after(camera.fps_target):
        state = "stale"
    else:
        state = "streaming"
    return CameraStateOut(
        state=state,
        frame_age=age,
        analysis_age=camera.seconds_since_evaluated,
        source=camera.source,
        worker=camera.worker,
        message=camera.message,
        reconnects=camera.reconnects,
        ppe=camera.ppe,
        warnings=camera.warnings,
    )


def camera_states(
    readiness: ReadinessSource | None, enabled: Mapping[str, bool]
) -> dict[str, CameraStateOut]:
    """Every camera of ``enabled`` (id -> enabled in the site file) with its tile state."""
    known = readiness().cameras if readiness is not None else {}
    return {key: tile_state(known.get(key), enabled=on) for key, on in enabled.items()}


class _Shared:
    """One readiness answer shared by every viewer for ``max_age`` seconds.

    Each live tile's socket asks once a second; in a separate API process every ask is a round
    trip to the server, which then snapshots every camera. Sharing the answer makes the cost one
    ask per ``max_age`` however many tiles are open, and the state shown at most that much older.
    """

    def __init__(self, source: ReadinessSource, max_age: float = 0.5) -> None:
        self._source = source
        self._max_age = max_age
        self._lock = threading.Lock()
        self._at = -1e9
        self._value: Readiness | None = None

    def __call__(self) -> Readiness:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._at > self._max_age:
                self._value = self._source()
                self._at = now
            return self._value


def readiness_of(connection: HTTPConnection) -> ReadinessSource | None:
    """The runtime's readiness of the app serving ``connection`` (set by ``create_app``),
    shared by all viewers for half a second (:class:`_Shared`)."""
    state = connection.app.state
    source: ReadinessSource | None = getattr(state, "readiness", None)
    if source is None:
        return None
    shared: _Shared | None = getattr(state, "readiness_shared", None)
    if shared is None:
        shared = _Shared(source)
        state.readiness_shared = shared
    return shared
