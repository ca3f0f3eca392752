"""Tripwires: named line segments on one camera, in normalised frame coordinates.

A line has a direction, from its first point ``a`` to its second ``b``, and so two sides. The side
names are those of someone walking along the line from ``a`` to ``b`` on the picture as it is
shown (origin top-left, y down): for a line drawn left to right across the screen, ``left`` is the
part above it and ``right`` the part below it. Only points level with the segment (whose
projection falls between ``a`` and ``b``) have a side; anything beyond its ends has none, so going
round the end of a line never looks like crossing it. An end on the edge of the picture (within
:data:`BORDER` of it) is the exception: nobody can walk round it, and the band level with a
slanted line leaves out a wedge of the picture next to that end, where a crossing near the edge
went unseen; so beyond such an end the side is that of the whole straight line (which leaves the
picture there). A point exactly on the segment counts as ``right`` (a tie must go somewhere, and
crossing rules confirm sides over several frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from safewatch.domain.geometry import Point

__all__ = ["BORDER", "Line", "Side"]

BORDER = 0.01
"""An end of a line at most this far (normalised) from an edge of the picture is on that edge: a
line drawn "to the edge" by hand or in an editor seldom ends exactly at 0 or 1."""


def _on_border(point: Point) -> bool:
    x, y = point
    return min(x, y) <= BORDER or max(x, y) >= 1.0 - BORDER


class Side(IntEnum):
    """Where a point is relative to a line."""

    LEFT = -1
    NONE = 0
    RIGHT = 1

    @property
    def label(self) -> str:
        """``left``, ``right`` or ``none``, as rule files and messages write it."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Line:
    """A directed segment on one camera.

    Attributes:
        id: Line key from the rule file.
        camera_id: Camera the line is drawn on.
        a: First point ``(x, y)`` in ``[0, 1]``.
        b: Second point; must differ from ``a``.
    """

    id: str
    camera_id: str
    a: Point
    b: Point

    def __post_init__(self) -> None:
        if self.a == self.b:
            raise ValueError(f"line {self.id!r} has two equal points")

    def to_pixels(self, width: int, height: int) -> NDArray[np.float64]:
        """``[[ax, ay], [bx, by]]`` in pixels of a ``width`` x ``height`` frame."""
        return np.array([self.a, self.b], dtype=np.float64) * np.array([width, height], np.float64)

    def sides(self, points: NDArray[np.float64], width: int, height: int) -> NDArray[np.int8]:
        """Side of each pixel point of a ``width`` x ``height`` frame, as :class:`Side` values.

        Args:
            points: ``(N, 2)`` pixel points.
            width: Frame width in pixels.
            height: Frame height in pixels.

        Returns:
            ``(N,)`` int8 values of :class:`Side`; ``Side.NONE`` beyond the segment's ends,
            except an end on the picture's edge.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        (ax, ay), (bx, by) = self.to_pixels(width, height)
        dx, dy = bx - ax, by - ay
        length_sq = dx * dx + dy * dy
        rx, ry = pts[:, 0] - ax, pts[:, 1] - ay
        along = (rx * dx + ry * dy) / length_sq
        # Signed distance: negative is on the left of a->b with y pointing down.
        signed = (dx * ry - dy * rx) / np.sqrt(length_sq)
        side = np.where(signed < 0, Side.LEFT, Side.RIGHT).astype(np.int8)
        # Cut the band only at a free end: one that can be walked round.
        beyond = np.zeros(len(pts), dtype=bool)
        if not _on_border(self.a):
            beyond |= along < 0.0
        if not _on_border(self.b):
            beyond |= along > 1.0
        side[beyond] = Side.NONE
        return side
