"""One camera's per-frame step after detection: tracks -> rules -> incidents.

This is the single implementation of the frame path's stateful half, shared by every way footage
enters safewatch: ``safewatch audit`` (:class:`~safewatch.pipeline.run.Pipeline`), the live
server (:class:`~safewatch.runtime.evaluation.RulesWorker`) and ``safewatch backtest``. Detection
is stateless and batched elsewhere; from here on each camera's frames must go in order, because
the tracker, the rule engine and the incident manager carry state from one frame to the next.

The step is split in two so a backtest can track once and judge the same tracks with several
rule sets: :class:`RuleStep` is one rule set's engine plus its incident manager, and
:class:`CameraStep` is a camera's tracker in front of one :class:`RuleStep`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol

from safewatch.domain import Detections, Frame, RuleEvent, TrackedFrame
from safewatch.incidents.manager import IncidentChange

__all__ = [
    "OUTAGE_SECONDS",
    "CameraStep",
    "Engine",
    "FrameListener",
    "Incidents",
    "RuleStep",
    "StepResult",
    "Tracker",
]


class Tracker(Protocol):
    """A camera's tracker (``safewatch.track.CameraTracker``)."""

    def update(self, detections: Detections, frame: Frame) -> TrackedFrame: ...


class Engine(Protocol):
    """A rule engine (``RuleEngine`` or the hot-reloading one)."""

    def evaluate(self, tracked: TrackedFrame) -> list[RuleEvent]: ...

    def finish(self, camera_id: str, at: float | None = None) -> list[RuleEvent]: ...


class Incidents(Protocol):
    """An incident manager (``safewatch.incidents.IncidentManager``)."""

    def handle(
        self, events: Sequence[RuleEvent], tracked: TrackedFrame, frame: Frame
    ) -> list[IncidentChange]: ...

    def retry(self, frame: Frame, tracked: TrackedFrame) -> list[IncidentChange]: ...

    def close_all(self, at: float) -> list[IncidentChange]: ...

    def forget_camera(self, camera_id: str) -> Sequence[object]: ...

    def closing(self, camera_id: str, reason: str) -> AbstractContextManager[None]: ...


FrameListener = Callable[[Frame, TrackedFrame, Sequence[RuleEvent], Sequence[IncidentChange]], None]
"""Told after each frame's step, live or archived: the frame, its tracks, the rule events and the
incident changes (progress bars, annotated video, live views, the API process). Must be quick and
must not raise."""


class StepResult(NamedTuple):
    """What one frame produced (a named tuple: callers unpack it on the hot path)."""

    tracked: TrackedFrame
    events: list[RuleEvent]
    changes: list[IncidentChange]


OUTAGE_SECONDS = 60.0
"""A gap between two frames of a camera longer than this ends its open episodes (RuleStep.apply):
far above any sampling interval or reconnect, far below an outage worth reporting as such."""


class RuleStep:
    """One rule set judging one camera's tracked frames, and the incidents that follow.

    Args:
        camera_id: The camera whose frames come in.
        engine: The rule engine (its state for other cameras is left alone).
        incidents: The incident manager; ``handle`` runs on every frame, events or not, because
            it also feeds the evidence ring buffer that clips are cut from.
    """

    def __init__(self, camera_id: str, engine: Engine, incidents: Incidents) -> None:
        self.camera_id = camera_id
        self.engine = engine
        self.incidents = incidents
        self.last: tuple[Frame, TrackedFrame] | None = None
        self._spacing: float | None = None
        """The camera's usual gap between two frames (seconds); ``None`` before its second."""
        self._silenced = False
        """Its episodes were ended for silence (:meth:`end_if_silent`) since its last frame."""

    def apply(
        self, frame: Frame, tracked: TrackedFrame
    ) -> tuple[list[RuleEvent], list[IncidentChange]]:
        """Evaluate the rules on one tracked frame and update the incidents.

        A frame more than :data:`OUTAGE_SECONDS` (or five of the camera's usual frame intervals,
        for time-lapse sampling) after the camera's previous one (the camera was down, or the
        footage has a hole) first ends every open episode at its last violating
        frame, as if the camera had stopped: nothing was seen in between, and an occupancy or
        blocked-exit incident would otherwise count the whole outage as violation time. Each
        incident closed so records why in its chain entry.
        """
        ended: list[RuleEvent] = []
        closed: list[IncidentChange] = []
        if self.last is not None:
            gap = tracked.timestamp - self.last[1].timestamp
            usual = self._spacing
            if usual is not None and gap > max(OUTAGE_SECONDS, 5 * usual):
                with self.incidents.closing(self.camera_id, f"no frame for {gap:.0f} s"):
                    ended, closed = self.finish()
            # The first gap sets it; an outage moves it back to normal within a frame or two.
            self._spacing = gap if usual is None else min(gap, 2 * usual + 1e-3)
        events = self.engine.evaluate(tracked)
        changes = self.incidents.handle(events, tracked, frame)
        self.last = (frame, tracked)
        self._silenced = False
        return ended + events, closed + changes

    def end_if_silent(self, silent: float) -> tuple[list[RuleEvent], list[IncidentChange]] | None:
        """End the open episodes of a camera that has sent no frame for ``silent`` seconds, if
        that is an outage's length; ``None`` when it is not (or was already handled).

        :meth:`apply` notices an outage only when the next frame comes: a live camera that went
        dark for hours kept its incidents open (and its closed incidents' clips unfinished) all
        that time. The serving loop calls this every second or so, with the silence measured
        where frames arrive (a stalled rules stage or a replay it skips is no silence). Before
        the camera's second frame its usual interval is unknown (a time-lapse camera may be
        sampled once in minutes): nothing is ended then.
        """
        usual = self._spacing
        if self._silenced or self.last is None or usual is None:
            return None
        if silent <= max(OUTAGE_SECONDS, 5 * usual):
            return None
        with self.incidents.closing(self.camera_id, f"no frame for {silent:.0f} s"):
            result = self.finish()
        # Once per silence. A close the database refuses is kept by the incident manager and
        # written with the next frame of any camera, the rules stage's next silence sweep
        # (``Incidents.retry``), or at the stop, like any refused write.
        self._silenced = True
        return result

    def finish(self) -> tuple[list[RuleEvent], list[IncidentChange]]:
        """End the camera's open episodes at its last frame's time (the footage or camera ended).

        The episodes' ENDED events go through the incident manager with the last frame, so their
        incidents close at that frame's time exactly as a live camera's do when it stops.
        """
        if self.last is None:
            self.engine.finish(self.camera_id)
            return [], []
        frame, tracked = self.last
        events = self.engine.finish(self.camera_id, tracked.timestamp)
        return events, (self.incidents.handle(events, tracked, frame) if events else [])


class CameraStep:
    """A camera's tracker in front of one rule set: the whole post-detection frame step.

    Args:
        camera_id: The camera.
        tracker: This camera's tracker (never shared between cameras).
        engine: The rule engine.
        incidents: The incident manager.
    """

    def __init__(
        self, camera_id: str, tracker: Tracker, engine: Engine, incidents: Incidents
    ) -> None:
        self.camera_id = camera_id
        self.tracker = tracker
        self.rules = RuleStep(camera_id, engine, incidents)

    @property
    def last(self) -> tuple[Frame, TrackedFrame] | None:
        """The last frame stepped and its tracks."""
        return self.rules.last

    def step(self, frame: Frame, detections: Detections) -> StepResult:
        """Track one frame's detections, evaluate the rules, update the incidents."""
        tracked = self.tracker.update(detections, frame)
        events, changes = self.rules.apply(frame, tracked)
        return StepResult(tracked, events, changes)

    def finish(self) -> tuple[list[RuleEvent], list[IncidentChange]]:
        """End the camera's open episodes at its last frame (see :meth:`RuleStep.finish`)."""
        return self.rules.finish()
