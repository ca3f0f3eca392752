"""Zones and point-in-polygon tests in normalised frame coordinates.

Rule files store coordinates normalised to the frame (0-1) so a zone survives a change of stream
resolution; stages convert to pixels only when they draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Point", "Zone", "points_in_polygon", "within_frame"]

Point = tuple[float, float]


def points_in_polygon(
    points: NDArray[np.float64], polygon: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Even-odd ray casting for many points at once.

    Args:
        points: ``(N, 2)`` x, y.
        polygon: ``(M, 2)`` vertices, M >= 3, open (the last vertex is joined to the first).

    Returns:
        ``(N,)`` booleans; points exactly on an edge may fall either side.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    x = pts[:, 0:1]
    y = pts[:, 1:2]
    x1, y1 = poly[:, 0], poly[:, 1]
    # The next vertex of each; concatenate and where are a fraction of the cost of np.roll and
    # np.errstate, which matters here: every zone rule calls this for every frame.
    x2, y2 = np.concatenate((x1[1:], x1[:1])), np.concatenate((y1[1:], y1[:1]))
    crosses = (y1 > y) != (y2 > y)
    dy = y2 - y1
    x_at_y = x1 + (y - y1) * (x2 - x1) / np.where(dy == 0.0, 1.0, dy)  # dy == 0 never crosses
    inside = crosses & (x < x_at_y)
    result: NDArray[np.bool_] = (np.count_nonzero(inside, axis=1) % 2) == 1
    return result


_BORDER_INSET = 0.5
"""Pixels a point on the frame's right or bottom border is moved inside (half a pixel)."""


def within_frame(points: NDArray[np.float64], width: int, height: int) -> NDArray[np.float64]:
    """``points`` with those on (or past) the frame's right or bottom border moved half a pixel
    inside it, for a containment test.

    Ray casting counts a zone's top and left edges as inside and its bottom and right edges as
    outside. A person cut off by the bottom of the picture has their foot point exactly at
    ``y = height`` (boxes are clipped to the frame), so a zone drawn down to ``y = 1.0`` (the
    docs' loading bay and aisles) never contained the person nearest the camera. Half a pixel
    changes nothing for any other point.
    """
    limit = np.array([width - _BORDER_INSET, height - _BORDER_INSET], dtype=np.float64)
    inside: NDArray[np.float64] = np.minimum(np.asarray(points, dtype=np.float64), limit)
    return inside


@dataclass(frozen=True, slots=True)
class Zone:
    """A named polygon on one camera, in normalised coordinates.

    Attributes:
        id: Zone key from the rule file.
        camera_id: Camera the zone is drawn on.
        polygon: Vertices ``(x, y)`` in ``[0, 1]``, at least three.
    """

    id: str
    camera_id: str
    polygon: tuple[Point, ...]

    def __post_init__(self) -> None:
        if len(self.polygon) < 3:
            raise ValueError(f"zone {self.id!r} needs at least 3 points, got {len(self.polygon)}")

    def to_pixels(self, width: int, height: int) -> NDArray[np.float64]:
        """Vertices in pixels of a ``width`` x ``height`` frame, ``(M, 2)``."""
        return np.asarray(self.polygon, dtype=np.float64) * np.array([width, height], np.float64)

    def contains(self, points: NDArray[np.float64], width: int, height: int) -> NDArray[np.bool_]:
        """Which pixel points of a ``width`` x ``height`` frame lie inside the zone (a point on
        the frame's border is inside a zone drawn to that border, :func:`within_frame`)."""
        return points_in_polygon(within_frame(points, width, height), self.to_pixels(width, height))
