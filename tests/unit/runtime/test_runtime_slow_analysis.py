"""A camera is not ready once its analysis stays behind its fps for the whole window."""

from __future__ import annotations

from dataclasses import replace

import pytest

from safewatch.runtime.health import SlowAnalysis, camera_readiness
from safewatch.runtime.metrics import CameraStatus

T0 = 1_700_000_000.0

STREAMING = CameraStatus(
    camera_id="yard", name="yard", worker_state="running", source_state="streaming", message="",
    pid=1, incarnation=1, restarts=0, fps_target=5.0, decoded=100, sampled=100, reconnects=0,
    bad_packets=0, source_dropped=0, mailbox_dropped=77, torn_dropped=0, stale_dropped=0,
    inferred=23, motion_skipped=0, analysed=23, decode_fps=5.0, analysed_fps=1.1,
    last_decoded_at=T0, last_inferred_at=T0, last_evaluated_at=T0, memory_bytes=None,
)  # fmt: skip


def feed(watch: SlowAnalysis, rates: list[float], source: str = "streaming") -> None:
    for second, rate in enumerate(rates):
        status = replace(STREAMING, analysed_fps=rate, source_state=source)
        watch.observe([status], T0 + second)


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
    watch = SlowAnalysis(0.8, 30.0)
    feed(watch, rates)
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
    watch = SlowAnalysis(0.8, 5.0)
    feed(watch, [0.0] * 10, source="reconnecting")
    assert watch.problem(STREAMING, T0 + 9) is None


def test_the_reason_tells_a_slow_camera_from_slow_analysis() -> None:
    watch = SlowAnalysis(0.8, 5.0)
    starved = replace(STREAMING, decode_fps=2.0, analysed_fps=2.0, mailbox_dropped=0)
    for second in range(6):
        watch.observe([starved], T0 + second)
    problem = watch.problem(starved, T0 + 5)
    assert problem is not None
    assert problem.endswith("0 frame(s) dropped waiting for analysis: the camera itself delivers "
                            "too few frames")  # fmt: skip
