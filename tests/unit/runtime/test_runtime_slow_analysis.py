"""A camera is not ready once its analysis stays behind its fps for the whole window."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from safewatch.config.runtime import WatchdogConfig
from safewatch.ingest.state import SourceInfo, SourceStats
from safewatch.runtime.health import SlowAnalysis, camera_readiness
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.metrics import CameraStatus, RuntimeMetrics
from safewatch.runtime.status import RuntimeParts, RuntimeStatus
from safewatch.runtime.supervisor import WorkerState, WorkerStatus

T0 = 1_700_000_000.0

STREAMING = CameraStatus(
    camera_id="yard", name="yard", worker_state="running", source_state="streaming", message="",
    pid=1, incarnation=1, restarts=0, fps_target=5.0, decoded=100, sampled=100, reconnects=0,
    bad_packets=0, source_dropped=0, mailbox_dropped=77, torn_dropped=0, stale_dropped=0,
    inferred=23, motion_skipped=0, analysed=23, decode_fps=5.0, analysed_fps=1.1,
    last_decoded_at=T0, last_inferred_at=T0, last_evaluated_at=T0, memory_bytes=None,
)  # fmt: skip


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(watch: SlowAnalysis, clock: Clock, rates: list[float], source: str = "streaming") -> None:
    start = clock.now
    for second, rate in enumerate(rates):
        clock.now = start + second
        status = replace(STREAMING, analysed_fps=rate, source_state=source)
        watch.observe([status])


@pytest.mark.parametrize(
    ("rates", "behind"),
    [
        ([1.1] * 31, True),  # 30 s below 4 fps
        ([1.1] * 30, False),  # 29 s: not yet
        ([1.1] * 20 + [4.5] + [1.1] * 10, False),  # recovered in between: the clock restarts
        ([4.0] * 40, False),  # exactly 80 %
    ],
)
def test_behind_only_after_the_whole_window(rates: list[float], behind: bool) -> None:
    clock = Clock()
    watch = SlowAnalysis(0.8, 30.0, clock)
    feed(watch, clock, rates)
    now = T0 + len(rates) - 1
    status = replace(STREAMING, analysed_fps=rates[-1], last_evaluated_at=now)
    readiness = camera_readiness(status, now, watch)
    assert readiness.ready is not behind
    assert bool(readiness.problems) is behind
    if behind:
        assert readiness.problems[0].startswith("analysing 1.10 of its 5 fps (below 80%) for 30 s")
        assert readiness.problems[0].endswith("77 frame(s) dropped waiting for analysis: "
                                              "analysis cannot keep up")  # fmt: skip


def test_a_reconnecting_camera_is_not_behind() -> None:
    clock = Clock()
    watch = SlowAnalysis(0.8, 5.0, clock)
    feed(watch, clock, [0.0] * 10, source="reconnecting")
    assert watch.problem(STREAMING) is None


def test_the_reason_tells_a_slow_camera_from_slow_analysis() -> None:
    clock = Clock()
    watch = SlowAnalysis(0.8, 5.0, clock)
    starved = replace(STREAMING, decode_fps=2.0, analysed_fps=2.0, mailbox_dropped=0)
    for second in range(6):
        clock.now = 1000.0 + second
        watch.observe([starved])
    problem = watch.problem(starved)
    assert problem is not None
    assert problem.endswith("0 frame(s) dropped waiting for analysis: the camera itself delivers "
                            "too few frames")  # fmt: skip


class _Supervisor:
    """One camera that streams (and nothing analyses it: it is behind)."""

    def statuses(self) -> list[WorkerStatus]:
        return [
            WorkerStatus(
                camera_id="yard", name="yard", state=WorkerState.RUNNING,
                source_state="streaming", message="", pid=None, incarnation=1, restarts=0,
                fps_target=5.0, stats=SourceStats(), info=SourceInfo(64, 48, 5.0),
                decode_fps=5.0, last_frame_at=None, memory_bytes=None,
            )
        ]  # fmt: skip


def test_a_step_of_the_wall_clock_does_not_make_a_camera_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window was measured on the snapshots' wall-clock time: the system clock stepping an
    hour ahead (NTP, a VM resumed) made a camera behind for a second "behind for 3600 s", not
    ready at once (and one stepping back kept a camera behind for minutes ready)."""
    status = RuntimeStatus(
        FrameMailbox(), RuntimeMetrics(), "thread", WatchdogConfig(), threading.Event()
    )
    status.parts = RuntimeParts(_Supervisor())  # type: ignore[arg-type]
    status.observe()  # behind from now on
    wall = time.time()
    monkeypatch.setattr(time, "time", lambda: wall + 3600.0)
    yard = status.readiness().cameras["yard"]
    assert yard.problems == [], yard.problems
