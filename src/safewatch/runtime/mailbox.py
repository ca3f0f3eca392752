"""Latest-frame mailbox between the decode workers and the inference worker.

Backpressure policy (principle 5): each camera has one slot holding its newest unprocessed frame.
A new frame replaces an unprocessed one, which is dropped and counted, so under overload the
inference worker always gets the freshest picture of each camera and the age of what it analyses
stays within a frame interval or two, whatever the load; memory cannot grow. A replacing frame
inherits the motion flag of the frame it replaces (motion since the last *analysed* frame is what
the gate means).

Batching across cameras: :meth:`FrameMailbox.take_batch` waits for a first frame, then for the
frames of other streaming cameras that are *due* within ``max_wait`` (each camera's next arrival is
predicted from its last arrival and its recent frame interval), and not at all when none is due,
the batch is full, or every streaming camera already has its frame in it. So at low load a frame
goes at once unless another camera's frame is about to join it (lowest latency; measured: waiting
the full ``max_wait`` for unaligned cameras added 10 ms to every frame), and when inference is
busy, frames of several cameras pile up meanwhile and the next batch takes them together (highest
throughput).

Overlap (``runtime.inference.overlap``): two inference lanes take batches from the one mailbox.
A camera whose frame is being inferred is *held* (:meth:`FrameMailbox.take_batch` with
``hold=True``, until :meth:`FrameMailbox.release`): its next frame waits for it, so each camera's
frames are still analysed one at a time, in order. The second lane takes frames only *beside* a
batch in flight (``beside=True``): a frame that arrives while another camera's frame is inferred
starts at once instead of waiting for that whole inference, and a lone frame always goes to the
first lane.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from safewatch.runtime.messages import FrameReady

__all__ = ["FrameMailbox", "Pending", "RunCounter"]

_SLACK = 0.002
"""Seconds added to a predicted arrival (jitter of the decode worker and the pipe)."""


@dataclass(frozen=True, slots=True, eq=False)
class Pending:
    """A frame waiting for inference.

    Attributes:
        frame: The worker's announcement (slot reference or image).
        incarnation: Which start of the camera's worker sent it (older ones are stale).
        arrived: Monotonic seconds when it reached the mailbox.
    """

    frame: FrameReady
    incarnation: int
    arrived: float


class RunCounter:
    """Per camera, a count of its newest worker incarnation's frames (older ones are ignored).

    A camera's totals span its runs, and the stages reset theirs at different moments (the
    rules stage when the camera's run finishes, the mailbox never): the end of a file camera
    (:mod:`safewatch.runtime.camera_end`) compares the counts of the run that ended instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}  # camera -> (incarnation, count)

    def add(self, camera_id: str, incarnation: int) -> None:
        """Count one frame of ``incarnation``; a newer incarnation starts from zero."""
        with self._lock:
            run, count = self._counts.get(camera_id, (incarnation, 0))
            if incarnation == run:
                self._counts[camera_id] = (run, count + 1)
            elif incarnation > run:
                self._counts[camera_id] = (incarnation, 1)

    def count(self, camera_id: str, incarnation: int) -> int:
        """Frames of ``incarnation`` counted (0 once a newer one was counted)."""
        with self._lock:
            run, count = self._counts.get(camera_id, (incarnation, 0))
            return count if run == incarnation else 0


class FrameMailbox:
    """One newest-frame slot per camera, with drop counting and cross-camera batch assembly.

    Args:
        clock: Monotonic clock, seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[str, Pending] = {}
        self._dropped: dict[str, int] = {}
        self._offered: dict[str, int] = {}
        self.run_offered = RunCounter()
        """Frames offered per camera by its newest worker incarnation."""
        self.run_dropped = RunCounter()
        """Of those, frames replaced before inference."""
        self._streaming: set[str] = set()
        self._arrivals: dict[str, tuple[float, float | None]] = {}  # last arrival, interval
        self._discards: dict[str, int] = {}  # times each camera was discarded (wakes waiters)
        self._waiting = 0  # lossless frames waiting for their camera's slot
        self._held: set[str] = set()  # cameras whose frame is being inferred (take_batch hold)
        self._closed = False

    def put(self, frame: FrameReady, incarnation: int) -> bool:
        """Offer a camera's newest frame; returns ``True`` if it replaced (dropped) one."""
        with self._cond:
            if self._closed:
                return False
            camera = frame.camera_id
            self._offered[camera] = self._offered.get(camera, 0) + 1
            self.run_offered.add(camera, incarnation)
            previous = self._pending.get(camera)
            dropped = previous is not None
            if previous is not None:
                self._dropped[camera] = self._dropped.get(camera, 0) + 1
                self.run_dropped.add(camera, previous.incarnation)
                if previous.frame.moving and not frame.moving:
                    frame = replace(frame, moving=True)
            now = self._clock()
            self._pending[camera] = Pending(frame, incarnation, now)
            self._learn(camera, now)
            self._cond.notify_all()
            return dropped

    def put_wait(self, frame: FrameReady, incarnation: int) -> bool:
        """Offer a frame of a lossless camera: wait until its previous frame was taken.

        A file replayed with ``realtime: false`` must have every frame analysed, so instead of
        replacing the pending frame (and counting a drop) the decode thread waits here; the wait
        ends when the batcher takes the frame, the camera is discarded, or the mailbox closes.

        Returns:
            Whether the frame was queued (``False`` once the mailbox is closed or the camera was
            discarded meanwhile).
        """
        camera = frame.camera_id
        with self._cond:
            epoch = self._discards.get(camera, 0)
            self._waiting += 1
            try:
                while camera in self._pending and not self._closed:
                    self._cond.wait(0.5)
            finally:
                self._waiting -= 1
            if self._closed or self._discards.get(camera, 0) != epoch:
                return False
        self.put(frame, incarnation)
        return True

    def _learn(self, camera: str, now: float) -> None:
        """Track the camera's frame interval (smoothed) to predict its next arrival."""
        last, interval = self._arrivals.get(camera, (None, None))
        if last is not None:
            gap = now - last
            interval = gap if interval is None else 0.8 * interval + 0.2 * gap
        self._arrivals[camera] = (now, interval)

    def set_streaming(self, camera_id: str, streaming: bool) -> None:
        """Tell the batcher whether to expect frames from a camera (it never waits for others)."""
        with self._cond:
            if streaming:
                self._streaming.add(camera_id)
            else:
                self._streaming.discard(camera_id)
            self._cond.notify_all()

    def discard(self, camera_id: str) -> None:
        """Forget a camera's pending frame and its streaming flag (it was stopped or removed)."""
        with self._cond:
            self._pending.pop(camera_id, None)
            self._streaming.discard(camera_id)
            self._arrivals.pop(camera_id, None)
            self._discards[camera_id] = self._discards.get(camera_id, 0) + 1
            self._cond.notify_all()

    def dropped(self) -> dict[str, int]:
        """Frames replaced before inference, per camera, since the start."""
        with self._cond:
            return dict(self._dropped)

    def offered(self) -> dict[str, int]:
        """Frames offered per camera since the start (taken, dropped or still pending)."""
        with self._cond:
            return dict(self._offered)

    def waiting(self) -> int:
        """Frames of lossless cameras waiting for their slot (:meth:`put_wait`)."""
        with self._cond:
            return self._waiting

    def holds(self, camera_id: str) -> bool:
        """Whether a frame of ``camera_id`` waits for inference."""
        with self._cond:
            return camera_id in self._pending

    def depth(self) -> int:
        """Frames waiting now (at most one per camera)."""
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        """Wake the batcher; later ``put`` calls are ignored, pending frames can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        with self._cond:
            return self._closed

    def take_batch(
        self,
        max_batch: int,
        max_wait: float,
        timeout: float,
        *,
        hold: bool = False,
        beside: bool = False,
    ) -> list[Pending]:
        """Wait for frames and take up to ``max_batch`` of them, oldest first.

        Frames of held cameras are left where they are until :meth:`release`.

        Args:
            max_batch: Most frames to take.
            max_wait: Seconds the first frame may wait for others to join it.
            timeout: Seconds to wait for a first frame; an empty list when none came (or the
                mailbox was closed and is empty).
            hold: Hold the cameras taken until :meth:`release` (a lane that infers beside
                another must, or a camera's next frame could overtake this one).
            beside: Take only while another batch holds cameras (the overlap lane: a lone
                frame is the first lane's).
        """
        deadline = self._clock() + timeout
        with self._cond:
            while not self._takeable(beside):
                if self._closed and not self._pending:
                    return []
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            first = min(p.arrived for p in self._free().values())
            close_at = self._close_at(first, max_wait)
            while not self._closed and not self._complete(max_batch):
                remaining = close_at - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if not self._takeable(beside):  # the batch beside which it was to run ended
                return []
            chosen = sorted(self._free().values(), key=lambda p: p.arrived)[:max_batch]
            for pending in chosen:
                del self._pending[pending.frame.camera_id]
                if hold:
                    self._held.add(pending.frame.camera_id)
            if chosen:
                self._cond.notify_all()  # lossless cameras wait for their slot (put_wait)
            return chosen

    def release(self, cameras: Iterable[str]) -> None:
        """The frames of ``cameras`` taken with ``hold=True`` are analysed: their next may go."""
        with self._cond:
            self._held.difference_update(cameras)
            self._cond.notify_all()

    def _free(self) -> dict[str, Pending]:
        """Pending frames of cameras not held."""
        if not self._held:
            return self._pending
        return {c: p for c, p in self._pending.items() if c not in self._held}

    def _takeable(self, beside: bool) -> bool:
        if beside and not self._held:
            return False
        return any(camera not in self._held for camera in self._pending)

    def _close_at(self, first: float, max_wait: float) -> float:
        """When to stop waiting: the latest predicted arrival that falls within ``max_wait``."""
        limit = first + max_wait
        due = []
        for camera in self._streaming - self._pending.keys() - self._held:
            last, interval = self._arrivals.get(camera, (None, None))
            if last is None or interval is None or interval < _SLACK:
                due.append(limit)  # unknown rhythm (just started): allow the full wait
                continue
            predicted = last + interval
            while predicted < first:  # late already: it may still come, once
                predicted += interval
            if predicted <= limit:
                due.append(predicted + _SLACK)
        return min(limit, max(due)) if due else first

    def _complete(self, max_batch: int) -> bool:
        free = self._free()
        if len(free) >= max_batch:
            return True
        return self._streaming - self._held <= free.keys()
