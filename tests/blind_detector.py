"""A detector that finds nothing and counts the frames it was given: for tests of what a run
does around detection (refusing bad input before any frame, publishing when a cache fails)."""

from __future__ import annotations

from collections.abc import Sequence

from safewatch.domain import Detections, Frame


class CountingDetector:
    """Finds nothing and counts the frames it was given."""

    def __init__(self) -> None:
        self.frames = 0

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        self.frames += len(frames)
        return [Detections.empty() for _ in frames]
