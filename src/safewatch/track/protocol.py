"""The tracking stage's contract, so the pipeline and tests can swap implementations."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from safewatch.domain import Detections, Frame, TrackedFrame

__all__ = ["Tracker"]


@runtime_checkable
class Tracker(Protocol):
    """Multi-object tracking for one camera.

    One instance per camera, fed that camera's frames in order. ``update`` never mutates its
    inputs; the frame is used only for its clock (``seq``, ``pts``, ``timestamp``) and size, never
    its pixels, so a fake tracker in a test needs no images.
    """

    def update(self, detections: Detections, frame: Frame) -> TrackedFrame:
        """Track one frame's merged detections and return the confirmed tracks."""
        ...
