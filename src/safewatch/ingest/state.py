"""What a source is doing right now, and the record of each change.

The runtime logs and meters these changes; a live source reports trouble through them instead of
raising into the pipeline, because a camera that drops off the network is an operating condition,
not a bug.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SourceInfo", "SourceState", "SourceStats", "StateChange", "StateListener"]


class SourceState(enum.StrEnum):
    """Lifecycle of a source.

    ``ENDED`` and ``FAILED`` are final: ``frames()`` stops yielding once either is reached.
    """

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    FROZEN = "frozen"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """Whether the source will never produce another frame."""
        return self in (SourceState.ENDED, SourceState.FAILED)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Shape and timing of the video as the container describes it.

    Attributes:
        width: Picture width in pixels (0 while a live source has not connected yet).
        height: Picture height in pixels (0 while a live source has not connected yet).
        fps: Native frame rate, or ``None`` when the stream does not declare one.
        frame_count: Frames in the file when the container knows; ``None`` for live streams.
        duration: Seconds of video when known; ``None`` for live streams.
    """

    width: int
    height: int
    fps: float | None
    frame_count: int | None = None
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition, handed to the state listener.

    Attributes:
        camera_id: The camera whose source changed.
        previous: State before the change.
        state: State after the change.
        message: Why, for a log line; URLs in it are already redacted.
        at: Wall-clock time of the change (seconds since the Unix epoch).
    """

    camera_id: str
    previous: SourceState
    state: SourceState
    message: str
    at: float


StateListener = Callable[[StateChange], None]
"""Called on every state change, from whichever thread made it; it must be quick and not raise."""


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Counters for metrics: every frame a source throws away is counted somewhere here.

    Attributes:
        decoded: Frames the decoder produced.
        sampled: Frames kept by the analysis-fps sampler (converted to BGR).
        dropped: Sampled frames discarded because the consumer was slower than the camera.
        bad_packets: Packets the decoder rejected (corrupt data).
        reconnects: Connection attempts after the first one.
        untimed: Frames of a file timed one native frame after the previous one because their
            own stamps were missing or repeated (:mod:`safewatch.ingest.picture_clock`).
        frozen: Sampled frames withheld because the picture had not changed for too long
            (:mod:`safewatch.ingest.freeze`).
    """

    decoded: int = 0
    sampled: int = 0
    dropped: int = 0
    bad_packets: int = 0
    reconnects: int = 0
    untimed: int = 0
    frozen: int = 0
