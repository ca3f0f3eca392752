"""The newest-frame mailbox: drops counted, motion kept, batches assembled across cameras."""

from __future__ import annotations

import threading
import time

import pytest

from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.messages import FrameReady


class FakeClock:
    """A monotonic clock the test sets by hand (arrival predictions then ignore scheduling)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ready(camera: str, seq: int, *, moving: bool = True) -> FrameReady:
    return FrameReady(camera, seq, seq * 0.2, 1000.0 + seq * 0.2, (4, 4, 3), 0.5, moving, 5.0)


def test_a_newer_frame_replaces_the_pending_one_and_the_drop_is_counted() -> None:
    box = FrameMailbox()
    assert box.put(ready("a", 0), 1) is False
    assert box.put(ready("a", 1), 1) is True
    assert box.put(ready("a", 2), 1) is True
    box.put(ready("b", 0), 1)
    assert box.depth() == 2
    assert box.dropped() == {"a": 2}
    batch = box.take_batch(8, 0.0, timeout=0.1)
    assert sorted((p.frame.camera_id, p.frame.seq) for p in batch) == [("a", 2), ("b", 0)]
    assert box.depth() == 0


def test_motion_is_never_lost_to_a_drop() -> None:
    box = FrameMailbox()
    box.put(ready("a", 0, moving=True), 1)
    box.put(ready("a", 1, moving=False), 1)  # static, but replaces an unanalysed moving frame
    (taken,) = box.take_batch(1, 0.0, timeout=0.1)
    assert taken.frame.seq == 1 and taken.frame.moving is True
    box.put(ready("a", 2, moving=False), 1)
    (taken,) = box.take_batch(1, 0.0, timeout=0.1)
    assert taken.frame.moving is False


def test_no_waiting_when_every_streaming_camera_has_its_frame() -> None:
    box = FrameMailbox()
    box.set_streaming("a", True)
    box.set_streaming("b", True)
    box.put(ready("a", 0), 1)
    box.put(ready("b", 0), 1)
    started = time.monotonic()
    batch = box.take_batch(8, max_wait=5.0, timeout=1.0)
    assert len(batch) == 2
    assert time.monotonic() - started < 0.5


def test_a_lone_frame_waits_at_most_max_wait_for_the_others() -> None:
    box = FrameMailbox()
    for camera in "abc":
        box.set_streaming(camera, True)
    box.put(ready("a", 0), 1)
    started = time.monotonic()
    batch = box.take_batch(8, max_wait=0.15, timeout=1.0)
    waited = time.monotonic() - started
    assert [p.frame.camera_id for p in batch] == ["a"]
    assert 0.1 <= waited < 1.0


def test_a_frame_arriving_within_max_wait_joins_the_batch() -> None:
    box = FrameMailbox()
    box.set_streaming("a", True)
    box.set_streaming("b", True)
    box.put(ready("a", 0), 1)
    late = threading.Timer(0.05, lambda: box.put(ready("b", 0), 1))
    late.start()
    batch = box.take_batch(8, max_wait=2.0, timeout=1.0)
    late.join()
    assert sorted(p.frame.camera_id for p in batch) == ["a", "b"]


def test_max_batch_takes_the_oldest_first_and_leaves_the_rest() -> None:
    box = FrameMailbox()
    for index, camera in enumerate("abcd"):
        box.put(ready(camera, index), 1)
        time.sleep(0.002)
    first = box.take_batch(3, max_wait=0.0, timeout=0.1)
    assert [p.frame.camera_id for p in first] == ["a", "b", "c"]
    assert [p.frame.camera_id for p in box.take_batch(3, 0.0, timeout=0.1)] == ["d"]


def test_timeout_close_and_discard() -> None:
    box = FrameMailbox()
    assert box.take_batch(4, 0.0, timeout=0.05) == []
    box.put(ready("a", 0), 1)
    box.discard("a")
    assert box.depth() == 0
    box.put(ready("a", 1), 1)
    box.close()
    assert box.put(ready("a", 2), 1) is False  # ignored once closed
    assert [p.frame.seq for p in box.take_batch(4, 0.0, timeout=0.05)] == [1]  # still drained
    assert box.take_batch(4, 0.0, timeout=5.0) == []  # closed and empty: no wait


@pytest.mark.parametrize("cameras", [1, 4])
def test_many_puts_keep_at_most_one_frame_per_camera(cameras: int) -> None:
    box = FrameMailbox()
    for seq in range(100):
        for camera in range(cameras):
            box.put(ready(str(camera), seq), 1)
    assert box.depth() == cameras
    assert sum(box.dropped().values()) == 99 * cameras


def test_no_waiting_for_a_camera_whose_next_frame_is_not_due_within_max_wait() -> None:
    # Frozen clock: b's next frame is due 0.3 s after its last, beyond max_wait 0.1 s, so the
    # batch closes at once with a alone. Were it to wait instead, it would still be waiting when
    # b's frame comes 2 s later (the clock does not move) and the batch would hold both.
    clock = FakeClock()
    box = FrameMailbox(clock)
    box.set_streaming("a", True)
    box.set_streaming("b", True)
    box.put(ready("b", 0), 1)
    clock.now = 0.3
    box.put(ready("b", 1), 1)  # b's rhythm: one frame every 0.3 s
    box.take_batch(8, 0.0, timeout=0.1)
    clock.now = 0.31
    box.put(ready("a", 0), 1)
    late = threading.Timer(2.0, lambda: box.put(ready("b", 2), 1))
    late.start()
    try:
        batch = box.take_batch(8, max_wait=0.1, timeout=1.0)
    finally:
        late.cancel()
    assert [p.frame.camera_id for p in batch] == ["a"]


def test_a_lossless_camera_waits_for_its_slot_instead_of_dropping() -> None:
    box = FrameMailbox()
    box.put(ready("a", 0), 1)
    queued: list[bool] = []
    second = threading.Thread(target=lambda: queued.append(box.put_wait(ready("a", 1), 1)))
    second.start()
    deadline = time.monotonic() + 30
    while box.waiting() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert box.waiting() == 1 and box.holds("a")  # waiting: nothing replaced
    (taken,) = box.take_batch(8, 0.0, timeout=1.0)
    assert taken.frame.seq == 0
    second.join(10)
    assert queued == [True] and box.dropped() == {}
    assert [p.frame.seq for p in box.take_batch(8, 0.0, timeout=1.0)] == [1]
    assert box.offered() == {"a": 2}


@pytest.mark.parametrize("end", ["discard", "close"])
def test_a_waiting_lossless_frame_is_released_when_its_camera_goes(end: str) -> None:
    box = FrameMailbox()
    box.put(ready("a", 0), 1)
    queued: list[bool] = []
    waiter = threading.Thread(target=lambda: queued.append(box.put_wait(ready("a", 1), 1)))
    waiter.start()
    deadline = time.monotonic() + 30
    while box.waiting() == 0 and time.monotonic() < deadline:  # until it waits for the slot
        time.sleep(0.01)
    assert box.waiting() == 1
    if end == "discard":
        box.discard("a")
    else:
        box.close()
    waiter.join(10)
    assert queued == [False]


# -- two inference lanes: held cameras and the overlap lane ---------------------------------------


def test_a_held_cameras_next_frame_waits_until_it_is_released() -> None:
    box = FrameMailbox()
    box.put(ready("a", 0), 1)
    assert [p.frame.seq for p in box.take_batch(8, 0.0, timeout=0.1, hold=True)] == [0]
    box.put(ready("a", 1), 1)
    assert box.take_batch(8, 0.0, timeout=0.05) == []  # a's frame 0 is still in flight
    assert box.holds("a")
    box.release(["a"])
    assert [p.frame.seq for p in box.take_batch(8, 0.0, timeout=0.1)] == [1]


def test_the_overlap_lane_takes_only_beside_a_batch_in_flight() -> None:
    box = FrameMailbox()
    box.put(ready("a", 0), 1)
    assert box.take_batch(8, 0.0, timeout=0.05, hold=True, beside=True) == []  # a lone frame
    assert [p.frame.camera_id for p in box.take_batch(8, 0.0, timeout=0.1, hold=True)] == ["a"]
    box.put(ready("a", 1), 1)
    box.put(ready("b", 0), 1)
    beside = box.take_batch(8, 0.0, timeout=0.1, hold=True, beside=True)
    assert [(p.frame.camera_id, p.frame.seq) for p in beside] == [("b", 0)]  # not a's next
    box.release(["a", "b"])
    assert box.take_batch(8, 0.0, timeout=0.05, hold=True, beside=True) == []  # none in flight
    assert [p.frame.seq for p in box.take_batch(8, 0.0, timeout=0.1, hold=True)] == [1]


def test_a_waiting_overlap_lane_wakes_for_another_cameras_frame() -> None:
    box = FrameMailbox()
    box.put(ready("a", 0), 1)
    box.take_batch(8, 0.0, timeout=0.1, hold=True)
    taken: list[list[str]] = []

    def overlap_lane() -> None:
        batch = box.take_batch(8, 0.0, timeout=30.0, hold=True, beside=True)
        taken.append([p.frame.camera_id for p in batch])

    lane = threading.Thread(target=overlap_lane)
    lane.start()
    box.put(ready("b", 0), 1)
    lane.join(30)
    assert taken == [["b"]]


def test_no_waiting_for_a_camera_whose_frame_is_in_flight() -> None:
    # Frozen clock, a's rhythm unknown (a free camera would get the full max_wait of 5 s, which
    # the frozen clock never ends): a is held, so its next frame cannot join b's batch and b
    # goes at once.
    clock = FakeClock()
    box = FrameMailbox(clock)
    box.set_streaming("a", True)
    box.set_streaming("b", True)
    box.put(ready("a", 0), 1)
    box.take_batch(8, 0.0, timeout=0.1, hold=True)
    box.put(ready("b", 0), 1)
    taken: list[list[str]] = []
    lane = threading.Thread(
        target=lambda: taken.append(
            [p.frame.camera_id for p in box.take_batch(8, 5.0, 1.0, hold=True, beside=True)]
        )
    )
    lane.start()
    lane.join(10)
    done = not lane.is_alive()
    box.close()  # wakes a take that waits (the failure this test is about)
    lane.join(10)
    assert done and taken == [["b"]]


def test_a_closed_mailbox_keeps_a_held_cameras_frame_for_its_release() -> None:
    box = FrameMailbox()
    box.put(ready("a", 0), 1)
    box.take_batch(8, 0.0, timeout=0.1, hold=True)
    box.put(ready("a", 1), 1)
    box.close()
    assert box.take_batch(8, 0.0, timeout=0.05, hold=True) == []  # not lost: waits for a
    assert box.depth() == 1
    box.release(["a"])
    assert [p.frame.seq for p in box.take_batch(8, 0.0, timeout=0.1, hold=True)] == [1]
