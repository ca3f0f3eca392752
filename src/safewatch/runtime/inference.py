"""The inference worker: batches the newest frame of every camera into shared detector runs.

One thread in the server process runs the ONNX Runtime sessions (ORT releases the GIL and uses
its own intra-op threads, so a second thread on the same sessions would only queue behind the
first). Each round it takes a batch from the
:class:`~safewatch.runtime.mailbox.FrameMailbox`, copies the frames out of shared memory, decides
per frame whether to infer (motion gate, periodic refresh) or re-use the camera's last
detections, runs each model once over every frame (and tile) that needs it, and hands one
:class:`Analysed` per frame to the rules stage, in order per camera.

With ``overlap`` detectors (a second session of each CPU model, ``runtime.inference.overlap``) a
second thread, the *overlap lane*, takes the frames that arrive while the first lane is inferring
and infers them at once on those sessions, beside it. With one thread, such a frame waited for
the whole inference of the other camera's frame: with two cameras that wait was the largest part
of the frame-to-incident tail at low load (``docs/performance.md``). A lone frame still goes to
the first lane's sessions with all their threads, so its latency does not grow; a camera's next
frame waits until its previous one is analysed (the mailbox holds the camera), so each camera's
frames keep their order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from safewatch import tracing
from safewatch.config.runtime import InferenceRuntimeConfig, MotionConfig, TilingConfig
from safewatch.detect.multi import DetectionRequest, detect_requests
from safewatch.detect.protocol import Detector
from safewatch.domain import Detections, Frame
from safewatch.domain.arrival import ArrivalOrigin
from safewatch.runtime.mailbox import FrameMailbox, Pending, RunCounter
from safewatch.runtime.metrics import RuntimeMetrics
from safewatch.runtime.rings import RingCache

__all__ = ["Analysed", "CameraPlan", "InferenceCounters", "InferenceWorker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CameraPlan:
    """How the inference worker treats one camera's frames.

    Attributes:
        camera_id: The camera.
        models: Model keys to run, in merge order.
        incarnation: The current start of the camera's worker; older frames are stale.
        tiling: Tiled inference, or ``None``.
    """

    camera_id: str
    models: tuple[str, ...]
    incarnation: int
    tiling: TilingConfig | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Analysed:
    """One frame with its detections, for the rules stage.

    Attributes:
        frame: The frame (its own copy of the pixels).
        detections: Merged detections of every model, in frame pixels.
        inferred: ``False`` when the motion gate re-used the previous detections.
        incarnation: The worker incarnation that produced the frame.
        received_at: Wall-clock seconds when the decode worker published it (ages start here).
        picked_at: Wall-clock seconds when its batch was taken from the mailbox.
        inferred_at: Wall-clock seconds when its detections were ready.
        batch_size: Frames in its batch.
    """

    frame: Frame
    detections: Detections
    inferred: bool
    incarnation: int
    received_at: float
    picked_at: float
    inferred_at: float
    batch_size: int


@dataclass(slots=True)
class InferenceCounters:
    """Per-camera counters of the inference worker (for metrics and ``/readyz``)."""

    inferred: int = 0
    motion_skipped: int = 0
    torn: int = 0
    stale: int = 0
    last_inferred_at: float | None = None
    last_inferred_mono: float | None = None


@dataclass(slots=True)
class _Job:
    pending: Pending
    frame: Frame
    plan: CameraPlan
    infer: bool


class InferenceWorker:
    """Batch frames across cameras and run the detectors.

    Args:
        mailbox: Where the decode side leaves frames.
        rings: Shared-memory rings (frames of process workers are copied out of them).
        detector_for: Model key -> its (shared, thread-safe) detector.
        plans: Current plan of every running camera (read each round; swapped whole on reload).
        output: Receives each analysed frame; may block (that is the backpressure).
        config: Batch size and wait.
        motion: Motion-gate settings (``refresh_seconds``, ``enabled``).
        metrics: Histograms to record into.
        overlap: Model key -> its second detector (own session) for the overlap lane; ``None``
            runs one lane. A model without a second session may return the first lane's
            detector: ``OnnxDetector`` holds a lock, so the two lanes then take turns on it.
        overlap_ready: Whether the overlap lane has second sessions to run now (read each
            round: a reload may add or drop them); while it has none the lane takes no frame,
            since taking turns on the first lane's sessions would only split its batches and
            delay the frames it holds. Always ready by default.
    """

    def __init__(
        self,
        mailbox: FrameMailbox,
        rings: RingCache,
        detector_for: Callable[[str], Detector],
        plans: Callable[[], Mapping[str, CameraPlan]],
        output: Callable[[Analysed], None],
        config: InferenceRuntimeConfig,
        motion: MotionConfig,
        metrics: RuntimeMetrics,
        overlap: Callable[[str], Detector] | None = None,
        overlap_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self._mailbox = mailbox
        self._rings = rings
        self._detector_for = detector_for
        self._plans = plans
        self._output = output
        self._config = config
        self._motion = motion
        self._metrics = metrics
        self._lock = threading.Lock()
        self._counters: dict[str, InferenceCounters] = defaultdict(InferenceCounters)
        self.run_lost = RunCounter()
        """Frames per camera's newest incarnation taken but not analysed (stale or torn)."""
        self._last: dict[str, tuple[int, Detections]] = {}  # camera -> (incarnation, detections)
        # camera -> (incarnation, last pts, its stream's arrival origin): see _arrival
        self._arrivals: dict[str, tuple[int, float, ArrivalOrigin]] = {}
        self._overlap_ready = overlap_ready
        self._stop = threading.Event()
        # (detector_for, beside): the first lane, then the overlap lane if there is one
        self._lanes: list[tuple[Callable[[str], Detector], bool]] = [(detector_for, False)]
        if overlap is not None:
            self._lanes.append((overlap, True))
        self._threads: list[threading.Thread | None] = []
        self._beats = [time.monotonic()] * len(self._lanes)
        self.batches = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the lanes' threads (again, those that died)."""
        if self.alive():
            return
        self._stop.clear()
        if len(self._threads) != len(self._lanes):
            self._threads = [None] * len(self._lanes)
        for lane, old in enumerate(self._threads):
            if old is None or not old.is_alive():
                thread = threading.Thread(
                    target=self._run,
                    args=(lane,),
                    name="inference" if lane == 0 else "inference-overlap",
                    daemon=True,
                )
                self._threads[lane] = thread
                thread.start()

    def alive(self) -> bool:
        """Whether every lane's thread runs."""
        return bool(self._threads) and all(t is not None and t.is_alive() for t in self._threads)

    @property
    def heartbeat(self) -> float:
        """Monotonic time of the stalest lane's last loop (a lane stuck in a model ages it)."""
        return min(self._beats)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish: analyse what the mailbox still holds, then end the thread(s).

        Close the mailbox first (no new frames); the threads drain it and exit.
        """
        self._mailbox.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is None:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s thread did not finish within %.0f s", thread.name, timeout)
        self._stop.set()
        self._rings.close()

    def counters(self) -> dict[str, InferenceCounters]:
        """A copy of the per-camera counters."""
        with self._lock:
            return {
                camera: InferenceCounters(
                    c.inferred, c.motion_skipped, c.torn, c.stale, c.last_inferred_at
                )
                for camera, c in self._counters.items()
            }

    # -- the loop ----------------------------------------------------------------------------

    def _run(self, lane: int) -> None:
        detector_for, beside = self._lanes[lane]
        lane_name = "overlap" if beside else "first"
        hold = len(self._lanes) > 1  # a camera's next frame must not overtake it on the other lane
        while not self._stop.is_set():
            self._beats[lane] = time.monotonic()
            # every loop, not only when idle: a busy server must still release dead workers'
            # rings; before the take, so a failure here can never leave a camera held
            self._collect_rings()
            if beside and not self._overlap_ready():
                if self._mailbox.closed:
                    return  # the first lane drains what is left
                self._stop.wait(0.25)
                continue
            batch = self._mailbox.take_batch(
                self._config.max_batch,
                self._config.max_wait_ms / 1000.0,
                timeout=0.25,
                hold=hold,
                beside=beside,
            )
            if not batch:
                if self._mailbox.closed and self._mailbox.depth() == 0:
                    return
                continue
            try:
                self.process(batch, detector_for, lane_name)
            except Exception:
                self._metrics.errors.labels(stage="inference").inc()
                log.exception("inference failed on a batch of %d frame(s); skipped", len(batch))
            finally:
                if hold:
                    self._mailbox.release(p.frame.camera_id for p in batch)
            with self._lock:
                self.batches += 1

    def _collect_rings(self) -> None:
        """Release the rings of dead decode workers; a failure (out of file handles, say) is
        logged and retried next round, never the end of the lane."""
        try:
            self._rings.collect()
        except Exception:
            self._metrics.errors.labels(stage="inference").inc()
            log.exception("releasing the shared-memory rings of stopped cameras failed")

    def process(
        self,
        batch: Sequence[Pending],
        detector_for: Callable[[str], Detector] | None = None,
        lane: str = "first",
    ) -> list[Analysed]:
        """Analyse one batch (a lane's round; public for tests and benchmarks).

        Args:
            batch: Frames taken from the mailbox.
            detector_for: The lane's detectors; the first lane's by default.
            lane: The lane's name in the inference latency histogram (``first``, ``overlap``):
                the overlap lane's sessions have a share of the cores, so its runs are slower,
                and mixed into one series they would read as the first lane slowing down.
        """
        picked_at = time.time()
        picked_mono = time.monotonic()
        plans = self._plans()
        jobs = [job for job in (self._job(p, plans, picked_mono) for p in batch) if job is not None]
        if not jobs:
            return []
        for job in jobs:
            self._metrics.frame_age.labels(camera=job.frame.camera_id, stage="inference").observe(
                max(0.0, picked_at - job.pending.frame.published_at)
            )
        inferring = [job for job in jobs if job.infer]
        with tracing.span("inference", {"frames": len(inferring)}):
            if tracing.enabled():  # each frame's wait since its decoder published it
                for job in jobs:
                    attributes: dict[str, str | int] = {
                        "camera": job.frame.camera_id,
                        "seq": job.frame.seq,
                    }
                    tracing.record(
                        "frame.wait", job.pending.frame.published_at, picked_at, attributes
                    )
            detected = self._detect(inferring, detector_for or self._detector_for, lane)
            found = dict(zip(map(id, inferring), detected, strict=True))
        done_at = time.time()
        analysed: list[Analysed] = []
        for job in jobs:
            camera = job.frame.camera_id
            if job.infer:
                detections = found[id(job)]
                self._last[camera] = (job.plan.incarnation, detections)
            else:
                detections = self._last[camera][1]
            with self._lock:
                counters = self._counters[camera]
                if job.infer:
                    counters.inferred += 1
                    counters.last_inferred_at = done_at
                    counters.last_inferred_mono = picked_mono
                else:
                    counters.motion_skipped += 1
            item = Analysed(
                job.frame,
                detections,
                job.infer,
                job.plan.incarnation,
                job.pending.frame.published_at,
                picked_at,
                done_at,
                len(jobs),
            )
            self._output(item)
            analysed.append(item)
        return analysed

    def _job(self, pending: Pending, plans: Mapping[str, CameraPlan], now: float) -> _Job | None:
        ready = pending.frame
        camera = ready.camera_id
        plan = plans.get(camera)
        if plan is None or plan.incarnation != pending.incarnation:
            with self._lock:
                self._counters[camera].stale += 1
            self.run_lost.add(camera, pending.incarnation)
            return None
        image = ready.image if ready.image is not None else None
        if image is None and ready.ref is not None:
            image = self._rings.read(ready.ref)
        if image is None:
            with self._lock:
                self._counters[camera].torn += 1
            self.run_lost.add(camera, pending.incarnation)
            return None
        published = ready.published_at
        if published is not None:
            published = self._arrival(camera, plan.incarnation, ready.pts, published)
        frame = Frame(camera, ready.seq, ready.pts, ready.timestamp, image, published)
        last = self._last.get(camera)
        if last is not None and last[0] != plan.incarnation:
            last = None
        with self._lock:
            previous = self._counters[camera].last_inferred_mono
        due = previous is None or now - previous >= self._motion.refresh_seconds
        infer = last is None or ready.moving or due or not self._motion.enabled
        return _Job(pending, frame, plan, infer)

    def _arrival(self, camera: str, incarnation: int, pts: float, published: float) -> float:
        """When the worker would have published the picture had its decoding kept up with the
        camera (:class:`~safewatch.domain.arrival.ArrivalOrigin` over the publication times): a
        decoder behind real time (a CPU-starved 4K stream) publishes pictures seconds after
        they arrived, and the blurred live video, which judges its head boxes' age by this
        time, took them for fresh and laid old heads on the current picture. A new worker run
        or media times starting again (a reconnect) is a new stream."""
        with self._lock:
            held = self._arrivals.get(camera)
            if held is None or held[0] != incarnation or pts < held[1]:
                held = (incarnation, pts, ArrivalOrigin())
            self._arrivals[camera] = (incarnation, pts, held[2])
            return min(published, held[2].update(published, pts) + pts)

    def _detect(
        self, jobs: Sequence[_Job], detector_for: Callable[[str], Detector], lane: str
    ) -> list[Detections]:
        """Every job's detections: each model once over every frame and tile that needs it."""
        if not jobs:
            return []
        self._metrics.batch_size.observe(len(jobs))
        requests = [DetectionRequest(job.frame, job.plan.models, job.plan.tiling) for job in jobs]

        def timed(model: str, _inputs: int, seconds: float) -> None:
            self._metrics.inference_latency.labels(model=model, lane=lane).observe(seconds)

        return detect_requests(requests, detector_for, on_model=timed)
