"""``/healthz`` and ``/readyz``: what the server says about itself, as plain JSON.

* **Liveness** (``/healthz``) answers one question: should this process be restarted? Only if a
  core thread (inference, rules) is dead or has not looped for ``hung_after`` seconds. A camera
  that is down is *not* a reason: restarting the server would not bring it back.
* **Readiness** (``/readyz``) says what works: the database (a real ``SELECT 1``), the inference
  and rules threads, and per camera the worker's and source's state and the seconds since its last
  decoded, inferred and evaluated frame. The server is ``ready`` when everything is, ``degraded``
  (still HTTP 200: the API and the other cameras work) when some cameras are not or carry a
  warning (PPE checked for too little of the people's time, :class:`PPECheck`; a camera that
  should record and does not, :func:`recording_warning`), and
  ``not_ready`` (HTTP 503) when the database or a core thread is not. ``?camera=ID`` narrows it to
  one camera, with 503 when that camera is not ready, for per-camera probes.

A camera that streams but whose analysis cannot keep up (frames dropped in the mailbox, analysed
at a fraction of its fps) is not ready either, once that has lasted ``watchdog.slow_seconds``:
:class:`SlowAnalysis` remembers since when each camera has been below
``watchdog.slow_ratio`` of its target, from snapshots the server takes every second, so a short
dip (a burst of incidents, a model swap) does not flap the probe while a camera quietly
analysing a fifth of its frames does not pass for ready. Nor is a camera that no enabled rule
runs on (the rule files lost its rules): it streams, but protects nobody.

The answers' shapes (:mod:`safewatch.api.health`) belong to the API, which serves them; this
module fills them from the runtime's state, so the API never imports the runtime.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from safewatch.api.health import (
    CameraReadiness,
    ComponentHealth,
    FrameCounts,
    Liveness,
    PPECoverageOut,
    Readiness,
    ReadyState,
    stale_after,
)
from safewatch.runtime.metrics import FINISHED_WORKERS, CameraStatus

__all__ = [
    "UNWATCHED",
    "CameraReadiness",
    "ComponentHealth",
    "FrameCounts",
    "Liveness",
    "PPECheck",
    "Readiness",
    "SlowAnalysis",
    "camera_readiness",
    "recording_warning",
    "stale_after",
]


def _since(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 3)


class SlowAnalysis:
    """Since when each camera has analysed below ``ratio`` of its target fps.

    The window is measured on a monotonic clock, not on the snapshots' wall-clock ``now``: a
    step of the system clock (NTP, a suspended VM resumed) made a camera behind for a second
    "behind for an hour" (not ready at once), or one behind for minutes never so.

    Args:
        ratio: Share of the target rate below which a camera counts as behind.
        seconds: How long it must stay behind before :meth:`problem` reports it.
        clock: Monotonic clock, in seconds.
    """

    def __init__(
        self, ratio: float, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ratio = ratio
        self.seconds = seconds
        self._clock = clock
        self._since: dict[str, float] = {}

    def observe(self, cameras: Sequence[CameraStatus]) -> None:
        """Take one snapshot's rates into account (call regularly, e.g. every second).

        Only a streaming camera can be behind: one that is connecting, reconnecting or stalled
        has its own state, and its rate restarts from zero when it streams again.
        """
        now = self._clock()
        behind: set[str] = set()
        for status in cameras:
            streaming = status.worker_state == "running" and status.source_state == "streaming"
            if streaming and status.analysed_fps < self.ratio * status.fps_target:
                behind.add(status.camera_id)
                self._since.setdefault(status.camera_id, now)
        for camera_id in set(self._since) - behind:
            del self._since[camera_id]

    def problem(self, status: CameraStatus) -> str | None:
        """Why the camera is not ready, if it has been behind for ``seconds``; else ``None``."""
        now = self._clock()
        since = self._since.get(status.camera_id)
        if since is None or now - since < self.seconds:
            return None
        cause = (
            "the camera itself delivers too few frames"
            if status.decode_fps < self.ratio * status.fps_target
            else "analysis cannot keep up"
        )
        return (
            f"analysing {status.analysed_fps:.2f} of its {status.fps_target:g} fps (below "
            f"{self.ratio:.0%}) for {now - since:.0f} s; decoding {status.decode_fps:.2f} fps, "
            f"{status.mailbox_dropped} frame(s) dropped waiting for analysis: {cause}"
        )


UNWATCHED = "no enabled rule runs on this camera: nothing is watched there"


class PPECheck:
    """Whether a camera's PPE can be checked for enough of its people's time.

    A camera on which most people stay *unknown* (too small, hidden, never tracked) streams and
    analyses normally, but its PPE rules are silent for them. That is a warning, not a reason to
    call the camera not ready: restarting it or routing around it changes nothing (the cure is
    the camera's angle, its zoom or a model trained on its pictures), and a per-camera probe
    answering 503 would page whoever runs the server for a site-survey question. So the camera
    stays ready, the warning is in its ``warnings`` (and on its Live tile) and the server's
    ``/readyz`` is ``degraded``, as with rules nobody acknowledged dropping.

    Args:
        min_share: Verifiable share below which an item is reported (0: never).
        min_person_seconds: Person-seconds in the window before an item is judged.
    """

    def __init__(self, min_share: float, min_person_seconds: float) -> None:
        self.min_share = min_share
        self.min_person_seconds = min_person_seconds

    def warnings(self, status: CameraStatus) -> list[str]:
        """One sentence per item checked for too little of the people's time."""
        out: list[str] = []
        for item in status.ppe:
            share = item.share
            if share is None or item.person_seconds < self.min_person_seconds:
                continue
            if share < self.min_share:
                out.append(
                    f"PPE not verifiable: {item.item} could be checked for {share:.0%} of "
                    f"{item.person_seconds:.0f} person-seconds in the last "
                    f"{item.window_seconds / 60:.0f} min (below {self.min_share:.0%}); the "
                    "others were too small, hidden or never tracked, and PPE rules are silent "
                    "for them (docs/ppe.md)"
                )
        return out


def recording_warning(status: CameraStatus) -> str | None:
    """Why a camera with a ``recording:`` block is not recording now, if it is not, or what
    threatens the footage it keeps (the free-space guard cannot be met).

    A warning, like :class:`PPECheck`'s: the camera is still analysed (its readiness is the
    analysis's), but the footage operators count on to review an incident is not being kept,
    which must not go unnoticed (``/readyz`` is ``degraded``; ``safewatch_recording_up`` is 0).
    """
    recording = status.recording
    if recording is None:
        return None
    if not recording.up:
        return f"not recording: {recording.message}"
    # Recording, but its disk is so full of something else that only the newest footage stays.
    return None if recording.warning is None else f"recording: {recording.warning}"


def _coverage(status: CameraStatus) -> list[PPECoverageOut]:
    return [
        PPECoverageOut(
            item=c.item,
            share=None if c.share is None else round(c.share, 4),
            verified_seconds=round(c.verified_seconds, 1),
            person_seconds=round(c.person_seconds, 1),
            window_seconds=c.window_seconds,
            total_share=(
                round(c.total_verified_seconds / c.total_person_seconds, 4)
                if c.total_person_seconds > 0
                else None
            ),
            total_person_seconds=round(c.total_person_seconds, 1),
        )
        for c in status.ppe
    ]


def camera_readiness(
    status: CameraStatus,
    now: float,
    slow: SlowAnalysis | None = None,
    *,
    unwatched: bool = False,
    ppe_check: PPECheck | None = None,
) -> CameraReadiness:
    """One camera's readiness from its status, whether its analysis is behind, and whether any
    rule watches it (a camera that streams into no rule protects nobody); with ``ppe_check``,
    warnings for PPE items checked for too little of the people's time."""
    evaluated = _since(now, status.last_evaluated_at)
    behind = None if slow is None else slow.problem(status)
    problems = [p for p in (behind, UNWATCHED if unwatched else None) if p is not None]
    ready = (
        status.worker_state == "running"
        and status.source_state == "streaming"
        and evaluated is not None
        and evaluated <= stale_after(status.fps_target)
        and not problems
    )
    return CameraReadiness(
        ready=ready,
        name=status.name,
        worker=status.worker_state,
        source=status.source_state,
        message=status.message,
        pid=status.pid,
        restarts=status.restarts,
        reconnects=status.reconnects,
        seconds_since_decoded=_since(now, status.last_decoded_at),
        seconds_since_inferred=_since(now, status.last_inferred_at),
        seconds_since_evaluated=evaluated,
        fps_target=status.fps_target,
        fps_decoded=round(status.decode_fps, 2),
        fps_analysed=round(status.analysed_fps, 2),
        frames=FrameCounts(
            decoded=status.decoded,
            sampled=status.sampled,
            inferred=status.inferred,
            motion_skipped=status.motion_skipped,
            analysed=status.analysed,
            dropped={
                "source": status.source_dropped,
                "frozen": status.frozen_dropped,
                "mailbox": status.mailbox_dropped,
                "torn": status.torn_dropped,
                "stale": status.stale_dropped,
            },
        ),
        problems=problems,
        warnings=[
            *(ppe_check.warnings(status) if ppe_check is not None else []),
            *filter(None, [recording_warning(status)]),
        ],
        ppe=_coverage(status),
    )


def overall(
    cameras: Mapping[str, CameraReadiness],
    components: Sequence[ComponentHealth],
    *,
    stopping: bool = False,
) -> ReadyState:
    """The server's status from its components and cameras (see the module docstring)."""
    if stopping:
        return "stopping"
    if not all(component.ok for component in components):
        return "not_ready"
    live = [c for c in cameras.values() if c.worker not in FINISHED_WORKERS]
    if all(c.ready for c in live) and not any(c.warnings for c in live):
        return "ready"
    return "degraded"
