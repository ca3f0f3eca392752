"""The rules stage: tracking, rule evaluation and incidents, on one thread after inference.

Tracking, rules and incidents carry state from frame to frame, so each camera's frames must go
through them in order; they are also cheap next to inference (well under a millisecond per frame
without I/O), so one thread serves every camera and needs no locks around the engine or the
incident manager (which is not thread-safe). Frames arrive from the inference worker through a
bounded queue: when this stage falls behind, inference waits, frames pile up in the mailbox and
the newest wins there, so nothing grows.

Cameras that stop (removed or reconfigured on reload, or the server stopping) are finished in
order with their frames: their open episodes end at their last frame and the incidents close, so
a shutdown or a reload never leaves an incident open in the database.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from safewatch import tracing
from safewatch.domain import PPEState, TrackedFrame
from safewatch.domain.tracks import PERSON
from safewatch.errors import StorageError
from safewatch.incidents.manager import ChangeKind, IncidentChange
from safewatch.pipeline.step import (
    OUTAGE_SECONDS,
    CameraStep,
    Engine,
    FrameListener,
    Incidents,
    Tracker,
)
from safewatch.runtime.inference import Analysed
from safewatch.runtime.mailbox import RunCounter
from safewatch.runtime.metrics import RuntimeMetrics
from safewatch.runtime.ppe_coverage import ItemCoverage, PPECoverage
from safewatch.runtime.rates import RateMeter

__all__ = ["EvaluationCounters", "FrameListener", "RulesWorker"]

log = logging.getLogger(__name__)

_SWEEP_SECONDS = 1.0
"""How often the rules thread looks for cameras silent for an outage's length."""

_STALL_SECONDS = 5.0
"""A gap between two turns of the rules thread's loop (which turns at least every 0.5 s) longer
than this means the thread itself was held up (:meth:`RulesWorker._stalled`)."""

_MAX_PPE_STEP = 2.0
"""Longest frame-to-frame step (seconds) booked as person-seconds; longer gaps count this much."""


@dataclass(frozen=True, slots=True)
class EvaluationCounters:
    """Per-camera counters of the rules stage."""

    analysed: int
    last_evaluated_at: float | None
    analysed_fps: float
    ppe: tuple[ItemCoverage, ...] = ()
    """Person-seconds per PPE item whose state could be checked (:mod:`.ppe_coverage`)."""


@dataclass(slots=True)
class _Camera:
    step: CameraStep
    analysed: int = 0
    last_evaluated_at: float | None = None
    rate: RateMeter = field(default_factory=RateMeter)
    last_clock: tuple[float, float] | None = None
    """``(pts, timestamp)`` of the previous frame, for person-seconds."""
    coverage: PPECoverage = field(default_factory=PPECoverage)


@dataclass(frozen=True, slots=True)
class _Finish:
    camera_id: str
    done: threading.Event
    write: bool = True
    """False: forget the camera's episodes and incidents without writing (ownership lost)."""
    reason: str | None = None
    """Why the camera stops, recorded with each incident it closes."""
    incarnation: int | None = None
    """The worker incarnation whose run this finishes; ``None``: whichever runs."""


class RulesWorker:
    """Track, evaluate and store incidents for every camera's analysed frames, in order.

    Args:
        tracker_for: Builds a camera's tracker (on its first frame, and after it was finished).
        engine: The rule engine (a reloading one follows rule hot reloads between frames).
        incidents: The incident manager; ``handle`` is called for every frame.
        metrics: Where latencies and incident counts go.
        queue_size: Analysed frames that may wait for this stage.
        listeners: Called after each frame.
        replays_from_start: Whether a camera's restarted worker reads its source from the start
            again on the source's own clock (a file camera with ``realtime: false``).
        on_silent: Called with a camera whose episodes were ended because it sent no frame
            for an outage's length (the evidence recorder finishes its clips).
        on_changes: Told of incident changes made outside a frame's step, which the frame
            listeners never see: a camera gone dark, finished or restarted closes its
            incidents, a refused write goes through on the silence sweep (the dashboard).
        ppe_required: A camera's PPE items per track label that its rules require
            (``RuleEngine.ppe_required``); a person track that carries no state for one is
            booked as unknown in the PPE coverage (:meth:`_count_ppe`).
    """

    def __init__(
        self,
        tracker_for: Callable[[str], Tracker],
        engine: Engine,
        incidents: Incidents,
        metrics: RuntimeMetrics,
        *,
        queue_size: int = 32,
        listeners: Sequence[FrameListener] = (),
        replays_from_start: Callable[[str], bool] = lambda _camera: False,
        on_silent: Callable[[str], None] = lambda _camera: None,
        on_changes: Callable[[Sequence[IncidentChange]], None] = lambda _changes: None,
        ppe_required: Callable[[str], Mapping[str, Collection[str]]] = lambda _camera: {},
    ) -> None:
        self._tracker_for = tracker_for
        self._ppe_required = ppe_required
        self._on_silent = on_silent
        self._on_changes = on_changes
        self._replays_from_start = replays_from_start
        self._engine = engine
        self._incidents = incidents
        self._metrics = metrics
        self._queue: queue.Queue[Analysed | _Finish | None] = queue.Queue(maxsize=queue_size)
        self._listeners = list(listeners)
        self._cameras: dict[str, _Camera] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()
        self.closed_at_stop: list[IncidentChange] = []
        # Per camera: the newest worker incarnation evaluated, and the newest whose run was
        # finished or dropped. A frame of an ended run (still in an inference batch when its
        # camera stopped) is never evaluated: under serve --cluster the camera may meanwhile be
        # owned again at a new epoch, which the fence would let the old run's frame write under.
        self._incarnation: dict[str, int] = {}
        self._ended: dict[str, int] = {}
        self.ended_run_frames = 0
        self.run_handled = RunCounter()
        """Frames per camera's newest incarnation taken from the queue (evaluated or skipped)."""
        # Per camera whose worker restarted while its tracks and episodes went on: the time of
        # its last evaluated frame, until the new run's frames pass it (_restarted).
        self._replay_until: dict[str, float] = {}
        self.replayed_frames = 0
        # Per camera: when its last analysed frame was handed to this stage (monotonic), the
        # clock of _end_silent: frames a replay skips count, and a stalled stage is no silence.
        self._arrived: dict[str, float] = {}
        # Per camera: its drop marker queued but not yet processed (drop_camera timed out).
        self._drops: dict[str, _Finish] = {}

    def add_listener(self, listener: FrameListener) -> None:
        """Also call ``listener`` after each frame (before :meth:`start`)."""
        self._listeners.append(listener)

    def start(self) -> None:
        """Start the thread (again, after it died)."""
        if self.alive():
            return
        self._thread = threading.Thread(target=self._run, name="rules", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def depth(self) -> int:
        """Analysed frames waiting."""
        return self._queue.qsize()

    def submit(self, item: Analysed) -> None:
        """Queue an analysed frame; waits while the queue is full (the inference side's brake)."""
        self._arrived[item.frame.camera_id] = time.monotonic()  # for _end_silent
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self.alive():
                    log.warning(
                        "rules stage is not running; frame of %s dropped", item.frame.camera_id
                    )
                    return

    def finish_camera(
        self,
        camera_id: str,
        timeout: float = 10.0,
        *,
        reason: str | None = None,
        incarnation: int | None = None,
    ) -> bool:
        """End a camera's episodes and close its incidents after the frames already queued.

        Args:
            camera_id: The camera.
            timeout: Seconds to wait for the queue and the closing.
            reason: Why (camera removed, disabled...), in each closed incident's chain entry.
            incarnation: Finish only the run of this worker incarnation: nothing is done once a
                frame of a newer one was evaluated (the camera was restarted since, and its
                stop finished that run; ending the new one would drop all its frames).

        Returns:
            Whether it was done within ``timeout``.
        """
        done = threading.Event()
        finish = _Finish(camera_id, done, reason=reason, incarnation=incarnation)
        try:
            self._queue.put(finish, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def drop_camera(self, camera_id: str, timeout: float = 10.0) -> bool:
        """Forget a camera's episodes and open incidents after the frames already queued,
        writing nothing: this process no longer owns the camera (``serve --cluster``), so its
        new owner closes or continues them.

        Called again after it returned ``False``, it waits for the marker already queued
        rather than queue another (the caller keeps the camera stopping until it is done).

        Returns:
            Whether it was done within ``timeout``.
        """
        pending = self._drops.get(camera_id)
        if pending is None:
            pending = _Finish(camera_id, threading.Event(), write=False)
            try:
                self._queue.put(pending, timeout=timeout)
            except queue.Full:
                return False  # not queued: the next call tries again
            self._drops[camera_id] = pending
        if not pending.done.wait(timeout):
            return False
        self._drops.pop(camera_id, None)
        return True

    def counters(self) -> dict[str, EvaluationCounters]:
        """Per-camera counters."""
        with self._lock:
            return {
                camera: EvaluationCounters(
                    c.analysed,
                    c.last_evaluated_at,
                    c.rate.rate(),
                    tuple(c.coverage.items(time.time())),
                )
                for camera, c in self._cameras.items()
            }

    def stop(self, timeout: float = 30.0) -> list[IncidentChange]:
        """Drain the queue, finish every camera, close what is still open; returns those changes."""
        self._stopping.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.error("rules stage did not drain within %.0f s", timeout)
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._finish_all()
        return self.closed_at_stop

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        swept = time.monotonic()
        while True:
            now = time.monotonic()
            if now - self.heartbeat > _STALL_SECONDS:
                self._stalled(now)
            self.heartbeat = now
            if self.heartbeat - swept >= _SWEEP_SECONDS:  # also while other cameras keep it busy
                swept = self.heartbeat
                self._end_silent(swept)
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                return
            try:
                if isinstance(item, _Finish):
                    ran = self._incarnation.get(item.camera_id, 0)
                    if item.incarnation is not None and ran > item.incarnation:
                        item.done.set()  # that run ended already; a newer one is going on
                        continue
                    self._ended[item.camera_id] = max(self._ended.get(item.camera_id, 0), ran)
                    if item.write:
                        self._finish(item.camera_id, item.reason)
                    else:
                        # Set even if forgetting failed: the run is marked ended above, and
                        # drop_camera waits on this marker (not a new one) until it is set, so
                        # an exception here would keep the camera stopping for ever.
                        try:
                            self._drop(item.camera_id)
                        finally:
                            item.done.set()
                    # Here, after the camera's last queued frame was judged: the service also
                    # forgets them when the camera stops, but a finish that timed out (this
                    # stage 10 s behind) let the frames still queued re-create the series of a
                    # camera that was gone, exported for as long as the server ran.
                    self._metrics.forget_camera(item.camera_id)
                    item.done.set()
                else:
                    self._evaluate(item)
            except StorageError as error:
                self._metrics.errors.labels(stage="storage").inc()
                log.error("incident storage failed: %s", error)
            except Exception:
                self._metrics.errors.labels(stage="rules").inc()
                log.exception("rules stage failed on a frame; continuing")

    def _stalled(self, now: float) -> None:
        """This thread was held up (a database or evidence write that hung): while it could
        not take frames, their producers blocked on the full queue, so no camera's arrival
        moved. That is no silence of the cameras: every camera's clock starts again now, and a
        camera that really is dark is judged an outage's length later."""
        for camera_id in list(self._arrived):
            self._arrived[camera_id] = max(self._arrived[camera_id], now)

    def _end_silent(self, now: float) -> None:
        """End the episodes of every camera silent for an outage's length
        (:meth:`~safewatch.pipeline.step.RuleStep.end_if_silent`): a camera that went dark no
        longer keeps its incidents open until its next frame, which may be hours away. Each
        camera on its own: one camera's failure neither stops the others nor this thread."""
        with self._lock:
            cameras = list(self._cameras.items())
        self._retry_waiting([camera for _, camera in cameras])
        for camera_id, camera in cameras:
            arrived = self._arrived.get(camera_id)
            if arrived is None:
                continue
            try:
                ended = camera.step.rules.end_if_silent(now - arrived)
                if ended is None:
                    continue
                self._on_silent(camera_id)
            except StorageError as error:
                self._metrics.errors.labels(stage="storage").inc()
                log.error("camera %s: closing its incidents after an outage: %s", camera_id, error)
                continue
            except Exception:
                self._metrics.errors.labels(stage="rules").inc()
                log.exception("camera %s: ending its episodes after an outage failed", camera_id)
                continue
            _, changes = ended
            self._changed_without_frame(changes)
            if changes:
                log.warning(
                    "camera %s: no frame for over %.0f s: %d open incident(s) closed at its last "
                    "frame",
                    camera_id,
                    OUTAGE_SECONDS,
                    len(changes),
                )

    def _retry_waiting(self, cameras: Sequence[_Camera]) -> None:
        """Try the incident writes the database refused, with the newest last frame of any
        camera (:meth:`Incidents.retry`): frames normally carry them through, and when every
        camera is dark none comes. Cheap when nothing waits; the manager's back-off decides
        whether the database is tried."""
        try:
            lasts = [camera.step.last for camera in cameras if camera.step.last is not None]
            if not lasts:
                return
            frame, tracked = max(lasts, key=lambda last: last[1].timestamp)
            changes = self._incidents.retry(frame, tracked)
        except Exception:
            self._metrics.errors.labels(stage="storage").inc()
            log.exception("retrying the incident writes that wait failed")
            return
        self._changed_without_frame(changes)

    def _changed_without_frame(self, changes: Sequence[IncidentChange]) -> None:
        """Count incident changes made outside a frame's step and tell :attr:`_on_changes`."""
        for change in changes:
            self._metrics.incidents.labels(kind=str(change.kind)).inc()
        if not changes:
            return
        try:
            self._on_changes(changes)
        except Exception:
            log.exception("incident change listener failed")

    def _evaluate(self, item: Analysed) -> None:
        frame = item.frame
        camera_id = frame.camera_id
        # On taking it, whatever becomes of it: a finish queued after this is done after it.
        self.run_handled.add(camera_id, item.incarnation)
        if item.incarnation <= self._ended.get(camera_id, 0) or item.incarnation < (
            self._incarnation.get(camera_id, 0)
        ):
            self.ended_run_frames += 1  # a frame of a run that has ended: not this run's
            return
        camera = self._cameras.get(camera_id)
        if item.incarnation > self._incarnation.get(camera_id, item.incarnation):
            camera = self._restarted(camera_id, camera, frame.timestamp)
        self._incarnation[camera_id] = item.incarnation
        behind = self._replay_until.get(camera_id)
        if behind is not None:
            if frame.timestamp <= behind:
                self.replayed_frames += 1
                return
            del self._replay_until[camera_id]
        if camera is None:
            tracker = self._tracker_for(camera_id)
            camera = _Camera(CameraStep(camera_id, tracker, self._engine, self._incidents))
            with self._lock:
                self._cameras[camera_id] = camera
        with tracing.span("rules", {"camera": camera_id}):
            tracked, events, changes = camera.step.step(frame, item.detections)
        now = time.time()
        for change in changes:
            self._metrics.incidents.labels(kind=str(change.kind)).inc()
            if change.kind is ChangeKind.OPENED:
                self._metrics.frame_to_incident.observe(max(0.0, now - item.received_at))
        self._metrics.frame_processing.observe(max(0.0, now - item.picked_at))
        self._metrics.frame_age.labels(camera=camera_id, stage="evaluated").observe(
            max(0.0, now - item.received_at)
        )
        with self._lock:
            camera.analysed += 1
            camera.last_evaluated_at = now
            camera.rate.add(camera.analysed)
        self._count_ppe(camera, tracked)
        for listener in self._listeners:
            try:
                listener(frame, tracked, events, changes)
            except Exception:
                log.exception("frame listener failed")

    def _count_ppe(self, camera: _Camera, tracked: TrackedFrame) -> None:
        """Add this frame's person-seconds per PPE item and voted state (unknown is counted).

        Person tracks only: PPE-only subjects (``Track.ppe_only``) would add seconds of boxes
        that are often no worker at all, mostly unknown, and pull the checked share down.

        An item the camera's rules require (:attr:`_ppe_required`) that a track carries no
        state for counts as unknown: the tracker reports only the items the models are known to
        detect or have detected so far, so a camera whose PPE model has no ``labels:`` map and
        never fires would otherwise book nothing, and its share (and the "PPE not verifiable"
        warning in ``/readyz``) would stay silent on exactly the camera it exists for.

        Each person counts for the media time since the camera's previous frame (wall time where
        a reconnected stream restarted its media time, as the tracker's clock does), capped at
        :data:`_MAX_PPE_STEP` so a stream gap is not booked as minutes of (un)verified people.
        """
        previous, camera.last_clock = camera.last_clock, (tracked.pts, tracked.timestamp)
        if previous is None:
            return
        step = tracked.pts - previous[0]
        if step <= 0:
            step = tracked.timestamp - previous[1]
        step = min(max(step, 0.0), _MAX_PPE_STEP)
        if step <= 0:
            return
        now = time.time()
        required = self._ppe_required(tracked.camera_id)
        for track in tracked.tracks:
            if track.ppe_only:  # a weak box or a lone head is no person-second to check
                continue
            states = list(track.attributes.items())
            if track.label == PERSON:  # only people carry PPE states (domain.PERSON)
                for item in required.get(track.label, ()):
                    if item not in track.attributes:
                        states.append((item, PPEState.UNKNOWN))
            for item, state in states:
                self._metrics.ppe_person_seconds.labels(
                    camera=tracked.camera_id, item=item, state=str(state)
                ).inc(step)
                with self._lock:
                    camera.coverage.add(item, state is not PPEState.UNKNOWN, step, now)

    def _restarted(self, camera_id: str, camera: _Camera | None, at: float) -> _Camera | None:
        """A camera's worker restarted (it crashed) while its tracks and open episodes went on;
        ``at`` is the new run's first frame time. Returns the camera's state to go on with.

        An archive camera (``realtime: false``, :attr:`replays_from_start`) reads its file from
        the start again, on the file's clock: its new run is evaluated only from after the last
        frame evaluated, or those frames would open every incident a second time under new track
        ids. A live camera's new run is stamped from the wall clock; if that lies behind the
        last frame (its stamps ran ahead of the wall clock, or the host clock stepped back), the
        camera's episodes end at their last frames and it starts afresh, rather than going
        blind until the clock catches up or closing incidents before they started."""
        last = camera.step.last if camera is not None else None
        if last is None:
            return camera
        stamp = last[0].timestamp
        if self._replays_from_start(camera_id):
            self._replay_until[camera_id] = stamp
            log.warning(
                "camera %s: its worker restarted; frames up to %.3f (its last analysed frame) "
                "are not analysed again",
                camera_id,
                stamp,
            )
            return camera
        if at <= stamp:
            log.warning(
                "camera %s: its worker restarted %.1f s behind its last analysed frame; its "
                "open incidents end at their last frames and its tracks start afresh",
                camera_id,
                stamp - at,
            )
            self._finish(camera_id, "the camera's worker restarted behind its last frame")
            return None
        return camera

    def _finish(self, camera_id: str, reason: str | None = None) -> list[IncidentChange]:
        self._replay_until.pop(camera_id, None)
        with self._lock:
            camera = self._cameras.pop(camera_id, None)
        if camera is None:
            self._engine.finish(camera_id)
            return []
        if reason is None:
            _, changes = camera.step.finish()
        else:
            with self._incidents.closing(camera_id, reason):
                _, changes = camera.step.finish()
        self._changed_without_frame(changes)
        return changes

    def _drop(self, camera_id: str) -> None:
        self._replay_until.pop(camera_id, None)
        with self._lock:
            self._cameras.pop(camera_id, None)
        self._engine.finish(camera_id)  # its events are discarded: the episodes just end here
        dropped = self._incidents.forget_camera(camera_id)
        if dropped:
            log.warning(
                "camera %s: ownership lost; %d open incident(s) left to its new owner",
                camera_id,
                len(dropped),
            )

    def _finish_all(self) -> None:
        with self._lock:
            cameras = list(self._cameras)
        last = max(
            (c.step.last[1].timestamp for c in self._cameras.values() if c.step.last is not None),
            default=time.time(),
        )
        for camera_id in cameras:
            try:
                self.closed_at_stop.extend(self._finish(camera_id))
            except StorageError as error:
                log.error("camera %s: incidents could not be closed: %s", camera_id, error)
        try:
            self.closed_at_stop.extend(self._incidents.close_all(last))
        except StorageError as error:
            log.error("open incidents could not be closed: %s", error)
