"""The end of a file camera after a restart of it: counted for the run that ended, and a wait
that a stop or restart of the camera cancels. Real mailbox, inference worker (a fake detector)
and rules stage on SQLite; inference rounds are driven by the test."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from runtime_fakes import RecordingDetector, image
from test_runtime_evaluation import build

from patience import poll
from safewatch.config.runtime import InferenceRuntimeConfig, MotionConfig
from safewatch.runtime.camera_end import finish_when_judged
from safewatch.runtime.inference import CameraPlan, InferenceWorker
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.messages import FrameReady
from safewatch.runtime.metrics import RuntimeMetrics
from safewatch.runtime.rings import RingCache
from safewatch.runtime.service import RuntimeService
from safewatch.storage import IncidentRepository, create_engine_for

T0 = 1_700_000_000.0


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[IncidentRepository]:
    engine = create_engine_for("sqlite:///db.sqlite", tmp_path)
    yield IncidentRepository(engine)
    engine.dispose()


class Pipeline:
    """Mailbox -> inference -> rules for camera ``cam``, a person in view in every frame."""

    def __init__(self, tmp_path: Path, repository: IncidentRepository) -> None:
        metrics = RuntimeMetrics()
        self.mailbox = FrameMailbox()
        self.rules = build(tmp_path, repository, metrics)
        self.plans: dict[str, CameraPlan] = {}
        detector = RecordingDetector()
        self.inference = InferenceWorker(
            self.mailbox,
            RingCache(),
            lambda _model: detector,
            lambda: self.plans,
            self.rules.submit,
            InferenceRuntimeConfig(max_batch=8, max_wait_ms=0),
            MotionConfig(refresh_seconds=60.0),
            metrics,
        )
        self.stopped = threading.Event()
        self.rules.start()

    def run(self, incarnation: int) -> None:
        """A worker incarnation of the camera starts."""
        self.plans = {"cam": CameraPlan("cam", ("coco",), incarnation)}

    def offer(self, seq: int, incarnation: int, *, analyse: bool = True) -> None:
        picture = image(seq % 255)
        ready = FrameReady(
            "cam", seq, seq * 0.2, T0 + seq * 0.2, picture.shape, 0.1, True, T0, image=picture
        )
        self.mailbox.put(ready, incarnation)
        if analyse:
            self.inference.process(self.mailbox.take_batch(8, 0.0, timeout=1.0))

    def stop_camera(self) -> None:
        """What serve does when the camera is stopped or changed (before its next run)."""
        self.plans = {}
        self.mailbox.discard("cam")
        assert self.rules.finish_camera("cam", timeout=10.0)

    def ended(self, incarnation: int, cancelled: threading.Event) -> threading.Thread:
        """The camera's file played to its end: the wait for its last frames, on a thread."""
        thread = threading.Thread(
            target=finish_when_judged,
            args=(
                "cam",
                incarnation,
                self.mailbox,
                self.rules,
                self.inference,
                self.stopped,
                cancelled,
                600.0,  # a wait that does not end by itself within the test
            ),
            daemon=True,
        )
        thread.start()
        return thread


def test_a_restarted_file_cameras_end_counts_only_its_last_run(
    tmp_path: Path, repository: IncidentRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """Measured before: the mailbox's offered total spans both runs, the rules stage's
    analysed count starts again with the second, so the end waited for the quiet time and
    warned "97 of 150 frames accounted for"."""
    pipeline = Pipeline(tmp_path, repository)
    pipeline.run(1)
    for seq in range(6):
        pipeline.offer(seq, 1)
    pipeline.stop_camera()  # its site entry changed: a new worker
    pipeline.run(2)
    for seq in range(10, 14):
        pipeline.offer(seq, 2)
    with caplog.at_level(logging.WARNING, logger="safewatch.runtime.camera_end"):
        waiting = pipeline.ended(2, threading.Event())
        waiting.join(30)
    assert not waiting.is_alive(), "every frame of the run that ended is accounted for"
    assert "accounted for" not in caplog.text
    incidents = repository.list()
    assert len(incidents) == 2 and all(i.ended_at is not None for i in incidents)
    pipeline.rules.stop(timeout=10.0)


def test_a_camera_restarted_while_its_end_is_awaited_keeps_its_new_run(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    """The wait for an ended run's last frames outlived a restart of the camera, and its late
    finish marked the new run as ended: every frame of that one was then thrown away."""
    pipeline = Pipeline(tmp_path, repository)
    pipeline.run(1)
    for seq in range(5):
        pipeline.offer(seq, 1)
    pipeline.offer(5, 1, analyse=False)  # its last frame still waits in the mailbox
    cancelled = threading.Event()
    waiting = pipeline.ended(1, cancelled)
    cancelled.set()  # the camera is changed: serve's stop of it cancels the wait ...
    pipeline.stop_camera()  # ... and finishes its run
    waiting.join(30)
    assert not waiting.is_alive(), "a stopped camera's end is no longer awaited"
    pipeline.run(2)
    for seq in range(10, 14):
        pipeline.offer(seq, 2)
    poll(lambda: pipeline.rules.run_handled.count("cam", 2) == 4, 30, "the new run's frames")
    # A finish of the old run that comes late (it raced the stop) leaves the new one alone.
    assert pipeline.rules.finish_camera("cam", timeout=10.0, incarnation=1)
    pipeline.offer(14, 2)
    poll(lambda: pipeline.rules.run_handled.count("cam", 2) == 5, 30, "the new run's next frame")
    assert pipeline.rules.ended_run_frames == 0, "the new run's frames are all evaluated"
    assert pipeline.rules.counters()["cam"].analysed == 5
    second = [i for i in repository.list() if i.started_at >= T0 + 2.0]
    assert len(second) == 1 and second[0].ended_at is None, "the new run's incident goes on"
    pipeline.rules.stop(timeout=10.0)


def test_the_end_of_a_worker_replaced_since_is_not_awaited_for_the_new_one(
    tmp_path: Path, repository: IncidentRepository
) -> None:
    """The server's end callback read the incarnation from the supervisor's plans when it ran,
    not the worker that ended: a camera changed in between had its new run's frames awaited and
    that run finished. The supervisor passes the ended worker's incarnation; the server's own
    parts stand in for it (the method is called on them)."""
    pipeline = Pipeline(tmp_path, repository)
    server = SimpleNamespace(
        _rules=pipeline.rules,
        _inference=pipeline.inference,
        _supervisor=SimpleNamespace(plans=lambda: pipeline.plans),
        _mailbox=pipeline.mailbox,
        _stopped=pipeline.stopped,
        _end_waits={},
        _end_waits_lock=threading.Lock(),
    )
    pipeline.run(1)
    for seq in range(3):
        pipeline.offer(seq, 1)
    pipeline.stop_camera()  # changed while its worker ended: a new worker
    pipeline.run(2)
    pipeline.offer(10, 2)
    RuntimeService._camera_ended(server, "cam", 1)  # type: ignore[arg-type]  # late
    assert server._end_waits == {}, "the stop of the camera finished the ended run"
    RuntimeService._camera_ended(server, "cam", 2)  # type: ignore[arg-type]  # the new one
    assert set(server._end_waits) == {"cam"}
    server._end_waits["cam"].set()
    pipeline.rules.stop(timeout=10.0)
