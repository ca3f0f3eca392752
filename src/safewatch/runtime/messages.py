"""The small typed messages a camera worker sends to the server process.

Only these travel on a worker's pipe (pickled, a few hundred bytes each); pixels stay in shared
memory (:mod:`safewatch.runtime.shm`). A thread worker hands the same messages to the supervisor
directly, with the frame itself instead of a slot reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from safewatch.domain.frame import Image
from safewatch.ingest.state import SourceInfo, SourceStats, StateChange
from safewatch.runtime.shm import RingSpec, SlotRef

__all__ = ["FrameReady", "RingCreated", "SourceReport", "StatsReport", "WorkerMessage"]


@dataclass(frozen=True, slots=True)
class RingCreated:
    """The worker allocated a ring (first frame, or a new resolution); frames in it follow."""

    camera_id: str
    ring: RingSpec


@dataclass(frozen=True, slots=True, eq=False)
class FrameReady:
    """A sampled frame is ready for analysis.

    Attributes:
        camera_id: The camera.
        seq: Frame sequence number within this worker incarnation.
        pts: Media seconds since the camera's first frame.
        timestamp: Wall-clock seconds of the frame on the camera's clock (the stream's first
            frame anchored at its arrival; rules measure time with it).
        shape: ``(height, width, 3)``.
        motion: Share of pixels changed since the last frame the gate passed (0-1).
        moving: Whether the motion gate passed the frame (always ``True`` with gating off).
        published_at: Wall-clock seconds when the worker published the decoded frame: where
            frame age and latency are measured from (the camera's own capture-to-arrival delay
            is invisible to safewatch, and a stream that starts with a burst of buffered frames
            puts ``timestamp`` ahead of arrival).
        ref: Where the pixels are (process workers).
        image: The pixels themselves (thread workers, which share the server's memory).
    """

    camera_id: str
    seq: int
    pts: float
    timestamp: float
    shape: tuple[int, int, int]
    motion: float
    moving: bool
    published_at: float
    ref: SlotRef | None = None
    image: Image | None = None


@dataclass(frozen=True, slots=True)
class SourceReport:
    """The camera source changed state (connecting, streaming, stalled, ...)."""

    change: StateChange


@dataclass(frozen=True, slots=True)
class StatsReport:
    """The source's counters, sent every fraction of a second: also the worker's heartbeat.

    Attributes:
        camera_id: The camera.
        stats: Cumulative counters of this worker incarnation.
        info: Size and native fps of the stream.
        at: Wall-clock seconds when the counters were read.
        last_frame_at: Wall-clock seconds of the newest decoded-and-sampled frame, or ``None``.
    """

    camera_id: str
    stats: SourceStats
    info: SourceInfo
    at: float
    last_frame_at: float | None


WorkerMessage = RingCreated | FrameReady | SourceReport | StatsReport
"""Anything a worker reports."""
