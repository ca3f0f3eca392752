"""The contract between the pipeline and whatever finds objects in frames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from safewatch.domain import Detections, Frame

__all__ = ["Detector"]


@runtime_checkable
class Detector(Protocol):
    """Finds objects in a batch of frames.

    Batch first because inference engines are much cheaper per frame in batches (one session call
    for several cameras); a single frame is simply a batch of one. Implementations return one
    :class:`~safewatch.domain.Detections` per frame, in the same order, with boxes in that frame's
    source-image pixel coordinates and labels already in the site's vocabulary (``person``,
    ``hardhat``, ...), so no later stage needs to know which model produced them.
    """

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """Detect objects in every frame of the batch, returning one result per frame."""
        ...
