"""One camera's pipeline: source -> detector -> tracker -> rules -> incidents.

Archived footage (``safewatch audit`` and ``safewatch backtest``) runs through this; the live
server runs the same per-camera :class:`~safewatch.pipeline.step.CameraStep` behind its
cross-camera inference worker. Stages come in through the constructor so a test passes real ones
or small fakes.
Frames are decoded ahead on a thread and detected in batches; tracking, rules and incidents then run
frame by frame in order, because they carry state from one frame to the next. Given several
detectors (copies of one, each with its own session), successive batches are detected side by side,
one per detector, and their results still taken in frame order
(:func:`~safewatch.pipeline.stages.build_file_run_detectors` says why).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from safewatch.detect.protocol import Detector
from safewatch.domain import Detections, Frame
from safewatch.incidents.manager import IncidentChange
from safewatch.pipeline.prefetch import Prefetcher
from safewatch.pipeline.step import CameraStep, Engine, FrameListener, Incidents, Tracker

__all__ = ["FrameListener", "FrameSource", "Pipeline", "PipelineStats"]

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    """What the run needs of a :class:`~safewatch.ingest.Source`: its frames, nothing else."""

    def frames(self) -> Iterator[Frame]: ...


def _batched(items: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    """Group frames in lists of ``size`` (the last may be shorter); Python 3.11 has no batched."""
    batch: list[Frame] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class PipelineStats:
    """What one run did, for the audit summary and the benchmarks.

    Attributes:
        frames: Frames analysed (after sampling).
        first_pts: Media time of the first analysed frame, seconds.
        last_pts: Media time of the last analysed frame, seconds.
        origin: Wall-clock time of media time zero (``timestamp - pts`` of the first frame).
        elapsed: Wall seconds the run took.
        detect_seconds: Wall seconds spent in the detector (summed over detectors that run side by
            side).
        tracks: Distinct track ids seen per label; PPE-only subjects (``Track.ppe_only``) under
            ``"<label> (PPE only)"``, so a person count in a report stays the tracked persons.
        events: Rule events emitted (all phases).
        changes: Incident changes made.
    """

    frames: int = 0
    first_pts: float = 0.0
    last_pts: float = 0.0
    origin: float = 0.0
    elapsed: float = 0.0
    detect_seconds: float = 0.0
    tracks: dict[str, set[int]] = field(default_factory=dict)
    events: int = 0
    changes: list[IncidentChange] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Analysed frames per wall second."""
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0


class Pipeline:
    """Run one camera's frames through every stage until the source ends.

    Args:
        camera_id: The camera's key (rules and zones are scoped by it).
        source: Yields frames; for a file, every sampled frame.
        detector: Batch detector, or several equal ones that detect successive batches side by
            side (each used by one batch at a time).
        tracker: This camera's tracker.
        engine: Rule engine.
        incidents: Incident manager.
        batch_size: Frames per detector call. Larger batches amortise per-call overhead in ONNX
            Runtime; for a live camera the runtime uses 1 to keep latency low.
        observers: Called after each frame, in order.
    """

    def __init__(
        self,
        camera_id: str,
        source: FrameSource,
        detector: Detector | Sequence[Detector],
        tracker: Tracker,
        engine: Engine,
        incidents: Incidents,
        *,
        batch_size: int = 4,
        observers: Sequence[FrameListener] = (),
    ) -> None:
        self.camera_id = camera_id
        self._source = source
        self._detectors = list(detector) if isinstance(detector, Sequence) else [detector]
        if not self._detectors:
            raise ValueError("a pipeline needs at least one detector")
        self._step = CameraStep(camera_id, tracker, engine, incidents)
        self._incidents = incidents
        self._batch_size = max(1, batch_size)
        self._observers = tuple(observers)

    def run(self) -> PipelineStats:
        """Process the whole source; open episodes are ended at the last frame's time."""
        stats = PipelineStats()
        started = time.perf_counter()
        workers = len(self._detectors)
        depth = self._batch_size * (2 + workers)
        frames = Prefetcher(self._source.frames(), depth=depth, name="decode")
        pool = ThreadPoolExecutor(workers, "detect") if workers > 1 else None
        # Batch i goes to detector i % workers; at most `workers` batches are in flight, and the
        # oldest is taken (in frame order) before its detector gets the next one.
        pending: deque[tuple[list[Frame], Future[tuple[list[Detections], float]]]] = deque()
        try:
            for index, batch in enumerate(_batched(frames, self._batch_size)):
                detector = self._detectors[index % workers]
                if pool is None:
                    self._take(batch, self._detect(detector, batch), stats)
                    continue
                if len(pending) == workers:
                    self._take(*self._result(pending.popleft()), stats)
                pending.append((batch, pool.submit(self._detect, detector, batch)))
            while pending:
                self._take(*self._result(pending.popleft()), stats)
        finally:
            frames.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        last = self._step.last
        if last is not None:
            events, changes = self._step.finish()
            stats.events += len(events)
            stats.changes.extend(changes)
            stats.changes.extend(self._incidents.close_all(last[1].timestamp))
        stats.elapsed = time.perf_counter() - started
        return stats

    @staticmethod
    def _detect(detector: Detector, batch: list[Frame]) -> tuple[list[Detections], float]:
        t0 = time.perf_counter()
        found = list(detector.detect(batch))
        return found, time.perf_counter() - t0

    @staticmethod
    def _result(
        item: tuple[list[Frame], Future[tuple[list[Detections], float]]],
    ) -> tuple[list[Frame], tuple[list[Detections], float]]:
        batch, future = item
        return batch, future.result()

    def _take(
        self, batch: list[Frame], detected: tuple[list[Detections], float], stats: PipelineStats
    ) -> None:
        detections, seconds = detected
        stats.detect_seconds += seconds
        for frame, found in zip(batch, detections, strict=True):
            self._record(frame, found, stats)

    def _record(self, frame: Frame, detections: Detections, stats: PipelineStats) -> None:
        if stats.frames == 0:
            stats.first_pts = frame.pts
            stats.origin = frame.timestamp - frame.pts
        stats.frames += 1
        stats.last_pts = frame.pts
        result = self._step.step(frame, detections)
        for track in result.tracked.tracks:
            label = f"{track.label} (PPE only)" if track.ppe_only else track.label
            stats.tracks.setdefault(label, set()).add(track.track_id)
        stats.events += len(result.events)
        stats.changes.extend(result.changes)
        for observer in self._observers:
            observer(frame, result.tracked, result.events, result.changes)
