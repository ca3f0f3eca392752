"""The inference worker: cross-camera batches, motion gate with refresh, stale frames, tiling."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest
from runtime_fakes import RecordingDetector, image

from safewatch.config.runtime import InferenceRuntimeConfig, MotionConfig, TilingConfig
from safewatch.domain import Detections, Frame
from safewatch.runtime.inference import Analysed, CameraPlan, InferenceWorker
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.messages import FrameReady
from safewatch.runtime.metrics import RuntimeMetrics
from safewatch.runtime.rings import RingCache
from safewatch.runtime.shm import SharedRing


class Harness:
    def __init__(
        self,
        plans: dict[str, CameraPlan],
        *,
        motion: MotionConfig | None = None,
        models: tuple[str, ...] = ("coco",),
        overlap: bool = False,
        overlap_ready: bool = True,
    ) -> None:
        self.mailbox = FrameMailbox()
        self.overlap_ready = overlap_ready
        self.rings = RingCache()
        self.detectors = {name: GatedDetector(label=name) for name in models}
        self.second = {name: GatedDetector(label=name) for name in models}  # the overlap lane's
        self.plans = plans
        self.out: list[Analysed] = []
        self.metrics = RuntimeMetrics()
        self.worker = InferenceWorker(
            self.mailbox,
            self.rings,
            self.detectors.__getitem__,
            lambda: self.plans,
            self.out.append,
            InferenceRuntimeConfig(max_batch=8, max_wait_ms=0),
            motion or MotionConfig(refresh_seconds=60.0),
            self.metrics,
            overlap=self.second.__getitem__ if overlap else None,
            overlap_ready=lambda: self.overlap_ready,
        )

    def offer(self, camera: str, seq: int, *, moving: bool = True, incarnation: int = 1) -> None:
        picture = image(seq % 255)
        self.mailbox.put(
            FrameReady(
                camera,
                seq,
                seq * 0.2,
                time.time(),
                picture.shape,
                0.1,
                moving,
                time.time(),
                image=picture,
            ),
            incarnation,
        )

    def round(self) -> list[Analysed]:
        return self.worker.process(self.mailbox.take_batch(8, 0.0, timeout=0.1))

    def wait_for(self, count: int) -> list[tuple[str, int]]:
        """(camera, seq) of the frames analysed, once there are ``count`` (30 s at most)."""
        deadline = time.monotonic() + 30
        while len(self.out) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return [(a.frame.camera_id, a.frame.seq) for a in self.out]


class GatedDetector(RecordingDetector):
    """Holds frames of the cameras in ``gated`` until :attr:`gate` opens (a long inference)."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.gated: set[str] = set()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        if any(frame.camera_id in self.gated for frame in frames):
            self.entered.set()
            assert self.gate.wait(30), "the test never opened the gate"
        return super().detect(frames)

    def seen(self) -> list[list[tuple[str, int]]]:
        """(camera, seq) of each call's frames."""
        return [[(f.camera_id, f.seq) for f in call] for call in self.calls]


def start_with_a_in_flight(h: Harness) -> GatedDetector:
    """Start ``h``'s worker with camera a's frame 0 held in the first lane's session until the
    test opens the returned detector's gate."""
    first = h.detectors["coco"]
    first.gated.add("a")
    h.worker.start()
    h.offer("a", 0)
    assert first.entered.wait(30)
    return first


def plan(camera: str, models: tuple[str, ...] = ("coco",), **kw: object) -> CameraPlan:
    return CameraPlan(camera, models, kw.pop("incarnation", 1), **kw)  # type: ignore[arg-type]


def test_frames_of_several_cameras_share_one_detector_call() -> None:
    h = Harness({c: plan(c) for c in "abc"})
    for camera in "abc":
        h.offer(camera, 0)
    analysed = h.round()
    assert [len(call) for call in h.detectors["coco"].calls] == [3]
    assert sorted(a.frame.camera_id for a in analysed) == ["a", "b", "c"]
    assert all(a.inferred and a.batch_size == 3 and len(a.detections) == 1 for a in analysed)
    # the frame keeps when its decoder published it (the live video's age of its heads)
    assert all(a.frame.published_at == a.received_at for a in analysed)
    assert h.metrics.batch_size._sum.get() == 3  # one round of three frames


def test_static_frames_reuse_the_last_detections_until_the_refresh() -> None:
    h = Harness({"a": plan("a")}, motion=MotionConfig(refresh_seconds=0.3))
    h.offer("a", 0, moving=False)  # no detections yet: inferred whatever the gate says
    h.offer("a", 0, moving=False)
    (first,) = h.round()
    assert first.inferred
    h.offer("a", 1, moving=False)
    (second,) = h.round()
    assert not second.inferred
    assert second.detections is first.detections
    h.offer("a", 2, moving=True)
    assert h.round()[0].inferred
    h.offer("a", 3, moving=False)
    assert not h.round()[0].inferred
    time.sleep(0.35)
    h.offer("a", 4, moving=False)
    assert h.round()[0].inferred  # refreshed: a worker standing still is seen again
    counters = h.worker.counters()["a"]
    assert (counters.inferred, counters.motion_skipped) == (3, 2)


def test_gating_off_infers_every_frame() -> None:
    h = Harness({"a": plan("a")}, motion=MotionConfig(enabled=False))
    for seq in range(3):
        h.offer("a", seq, moving=False)
        assert h.round()[0].inferred


def test_frames_from_an_old_incarnation_or_an_unknown_camera_are_stale() -> None:
    h = Harness({"a": plan("a", incarnation=2)})
    h.offer("a", 0, incarnation=1)
    h.offer("zz", 0)
    assert h.round() == []
    assert h.detectors["coco"].calls == []
    counters = h.worker.counters()
    assert counters["a"].stale == 1 and counters["zz"].stale == 1


def test_models_run_once_per_batch_and_merge_in_the_cameras_order() -> None:
    h = Harness({"a": plan("a", ("coco", "ppe")), "b": plan("b", ("ppe",))}, models=("coco", "ppe"))
    h.offer("a", 0)
    h.offer("b", 0)
    analysed = {a.frame.camera_id: a for a in h.round()}
    assert [len(c) for c in h.detectors["coco"].calls] == [1]
    assert [len(c) for c in h.detectors["ppe"].calls] == [2]
    assert analysed["a"].detections.label.tolist() == ["coco", "ppe"]
    assert analysed["b"].detections.label.tolist() == ["ppe"]


def test_tiled_cameras_send_their_tiles_in_the_same_batch() -> None:
    tiling = TilingConfig(columns=2, rows=1, overlap=0.2, full_frame=True)
    h = Harness({"a": plan("a", tiling=tiling), "b": plan("b")})
    h.offer("a", 0)
    h.offer("b", 0)
    h.round()
    (call,) = h.detectors["coco"].calls
    assert len(call) == 4  # a: full frame + 2 tiles; b: its frame
    widths = sorted(f.width for f in call)
    assert widths[:2] == [36, 36] and widths[2:] == [64, 64]


def test_frames_are_copied_out_of_shared_memory_and_laps_are_counted() -> None:
    h = Harness({"a": plan("a")})
    ring = SharedRing.create((48, 64, 3), slots=2)
    try:
        h.rings.announce(ring.spec)
        ref = ring.write(image(77))
        h.mailbox.put(
            FrameReady("a", 0, 0.0, time.time(), (48, 64, 3), 1.0, True, time.time(), ref=ref), 1
        )
        (analysed,) = h.round()
        assert int(analysed.frame.image[0, 0, 0]) == 77
        ring.write(image(78))
        ring.write(image(79))  # laps the slot of ``ref``
        h.mailbox.put(
            FrameReady("a", 1, 0.2, time.time(), (48, 64, 3), 1.0, True, time.time(), ref=ref), 1
        )
        assert h.round() == []
        assert h.worker.counters()["a"].torn == 1
        ring.write(image(80))
        assert int(analysed.frame.image[0, 0, 0]) == 77  # the analysed copy is private
    finally:
        h.rings.close()
        ring.unlink()
        ring.close()


@pytest.mark.parametrize("overlap", [False, True])
def test_the_thread_drains_the_mailbox_on_stop(overlap: bool) -> None:
    h = Harness({"a": plan("a"), "b": plan("b")}, overlap=overlap)
    h.worker.start()
    h.offer("a", 0)
    h.offer("b", 0)
    h.worker.stop(timeout=5.0)
    assert not h.worker.alive()
    assert sorted(a.frame.camera_id for a in h.out) == ["a", "b"]


def test_a_failing_detector_costs_the_batch_not_the_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness({"a": plan("a")})

    def broken(frames: object) -> list[object]:
        raise RuntimeError("boom")

    h.detectors["coco"].detect = broken  # type: ignore[method-assign]
    h.worker.start()
    h.offer("a", 0)
    deadline = time.monotonic() + 5
    while h.worker.batches < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert h.worker.alive()
    assert "inference failed" in caplog.text
    h.worker.stop(timeout=5.0)
    assert np.isclose(h.metrics.errors.labels(stage="inference")._value.get(), 1.0)


# -- the overlap lane -----------------------------------------------------------------------------


def test_a_frame_arriving_during_another_cameras_inference_is_inferred_beside_it() -> None:
    h = Harness({"a": plan("a"), "b": plan("b")}, overlap=True)
    second = h.second["coco"]
    first = start_with_a_in_flight(h)  # a's frame is being inferred on the first session ...
    try:
        h.offer("b", 0)
        assert h.wait_for(1) == [("b", 0)]  # ... and b's is done meanwhile, on the second
        assert second.seen() == [[("b", 0)]]
        first.gate.set()
        assert h.wait_for(2) == [("b", 0), ("a", 0)]
        assert first.seen() == [[("a", 0)]]
    finally:
        first.gate.set()
        h.worker.stop(timeout=10.0)
    # each lane's runs in its own latency series (the overlap lane's sessions are slower)
    runs = {
        lane: h.metrics.registry.get_sample_value(
            "safewatch_inference_latency_seconds_count", {"model": "coco", "lane": lane}
        )
        for lane in ("first", "overlap")
    }
    assert runs == {"first": 1.0, "overlap": 1.0}


def test_a_lone_frame_goes_to_the_first_session() -> None:
    h = Harness({"a": plan("a"), "b": plan("b")}, overlap=True)
    h.worker.start()
    try:
        for count, camera in enumerate("aba", start=1):
            h.offer(camera, count)
            h.wait_for(count)
            deadline = time.monotonic() + 30
            while h.worker.batches < count and time.monotonic() < deadline:
                time.sleep(0.01)  # its camera released: nothing in flight
        assert h.detectors["coco"].seen() == [[("a", 1)], [("b", 2)], [("a", 3)]]
        assert h.second["coco"].calls == []
    finally:
        h.worker.stop(timeout=10.0)


def test_a_cameras_next_frame_never_overtakes_the_one_in_flight() -> None:
    h = Harness({"a": plan("a"), "b": plan("b")}, overlap=True)
    first = start_with_a_in_flight(h)
    try:
        h.offer("a", 1)  # older than b's, yet not for the free overlap lane: a is in flight
        h.offer("b", 0)
        assert h.wait_for(1) == [("b", 0)]
        assert h.second["coco"].seen() == [[("b", 0)]]
        first.gated.clear()
        first.gate.set()
        assert sorted(h.wait_for(3)) == [("a", 0), ("a", 1), ("b", 0)]
        assert [seq for camera, seq in h.wait_for(3) if camera == "a"] == [0, 1]
    finally:
        first.gate.set()
        h.worker.stop(timeout=10.0)


def test_a_cameras_next_frame_never_overtakes_the_one_in_flight_on_the_overlap_lane() -> None:
    h = Harness({"a": plan("a"), "b": plan("b")}, overlap=True)
    second = h.second["coco"]
    second.gated.add("b")
    first = start_with_a_in_flight(h)  # a on the first lane ...
    try:
        h.offer("b", 0)
        assert second.entered.wait(30)  # ... b beside it, held on the overlap lane
        h.offer("b", 1)
        first.gated.clear()
        first.gate.set()  # the first lane is free while b's first frame is still in flight
        assert h.wait_for(1) == [("a", 0)]
        time.sleep(0.5)  # room for a wrong take of b's next frame (never needed to pass)
        assert ("b", 1) not in h.wait_for(1)
        second.gated.clear()
        second.gate.set()
        assert h.wait_for(3) == [("a", 0), ("b", 0), ("b", 1)]
    finally:
        first.gate.set()
        second.gate.set()
        h.worker.stop(timeout=10.0)


def test_the_overlap_lane_takes_nothing_while_it_has_no_second_sessions() -> None:
    # (a GPU model, explicit threads, one camera: taking turns on the first lane's sessions
    # would only split its batches)
    h = Harness({"a": plan("a"), "b": plan("b")}, overlap=True, overlap_ready=False)
    first = start_with_a_in_flight(h)
    try:
        h.offer("b", 0)  # waits for the first lane
        time.sleep(0.5)  # room for a wrong take by the idle lane (never needed to pass)
        assert h.out == []
        first.gate.set()
        assert h.wait_for(2) == [("a", 0), ("b", 0)]
        assert h.second["coco"].calls == []
        h.overlap_ready = True  # a reload built the second sessions: the lane serves again
        first.gate.clear()
        first.entered.clear()
        h.offer("a", 1)
        assert first.entered.wait(30)
        h.offer("b", 1)
        assert h.wait_for(3)[-1] == ("b", 1)
        assert h.second["coco"].seen() == [[("b", 1)]]
    finally:
        first.gate.set()
        h.worker.stop(timeout=10.0)


def test_a_failure_to_release_dead_rings_holds_no_camera(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness({"a": plan("a"), "b": plan("b")}, overlap=True)
    real = h.rings.collect
    failures = [OSError(24, "Too many open files")]

    def collect() -> None:
        if failures:
            raise failures.pop()
        real()

    h.rings.collect = collect  # type: ignore[method-assign]
    h.worker.start()
    try:
        for seq in range(3):
            h.offer("a", seq)
            h.wait_for(seq + 1)
        assert h.wait_for(3) == [("a", 0), ("a", 1), ("a", 2)]
        assert h.worker.alive()
        assert "rings of stopped cameras failed" in caplog.text
    finally:
        h.worker.stop(timeout=10.0)


def test_a_lane_stuck_in_a_model_ages_the_heartbeat() -> None:
    h = Harness({"a": plan("a"), "b": plan("b")}, overlap=True)
    first = start_with_a_in_flight(h)
    try:
        stuck_since = time.monotonic()
        time.sleep(1.0)  # the idle overlap lane loops every 0.25 s meanwhile
        assert h.worker.heartbeat <= stuck_since
        assert h.worker.alive()
    finally:
        first.gate.set()
        h.worker.stop(timeout=10.0)


def test_a_decoder_behind_real_time_does_not_pass_its_pictures_off_as_fresh() -> None:
    """The blurred live video judges its head boxes' age by when the decode worker published
    the frame; a decoder behind real time publishes pictures seconds after they arrived, and
    they looked fresh. The frame now carries when it would have been published on time."""
    h = Harness({"a": plan("a")})
    t0 = 1_700_000_000.0
    for i in range(10):  # on time
        assert h.worker._arrival("a", 1, i * 0.2, t0 + i * 0.2) == t0 + i * 0.2
    behind = h.worker._arrival("a", 1, 2.0, t0 + 2.0 + 3.0)  # published 3 s late
    assert abs(behind - (t0 + 2.0)) < 0.01
    assert h.worker._arrival("a", 1, 0.0, t0 + 100.0) == t0 + 100.0  # a reconnect: anew
    assert h.worker._arrival("a", 2, 5.0, t0 + 200.0) == t0 + 200.0  # a new worker run: anew
