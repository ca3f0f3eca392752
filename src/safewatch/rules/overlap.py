"""Does a box touch a polygon? The ``anchor: box`` test of zone rules.

A vehicle's bumper in a walkway is an intrusion even when its centre is not, so the box anchor
means any overlap. The test is exact for convex and concave polygons: a polygon vertex in the box,
a box corner in the polygon, or an edge crossing. Touching counts as overlap: a safety rule
should err on the side of reporting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["box_overlaps_polygon"]


Pt = tuple[float, float]


def _orientation(a: Pt, b: Pt, c: Pt) -> int:
    cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return 0 if abs(cross) < 1e-12 else (1 if cross > 0 else -1)


def _on_segment(a: Pt, b: Pt, p: Pt) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_meet(a: Pt, b: Pt, c: Pt, d: Pt) -> bool:
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if o1 != o2 and o3 != o4:
        return True
    return (
        (o1 == 0 and _on_segment(a, b, c))
        or (o2 == 0 and _on_segment(a, b, d))
        or (o3 == 0 and _on_segment(c, d, a))
        or (o4 == 0 and _on_segment(c, d, b))
    )


def box_overlaps_polygon(
    xyxy: tuple[float, float, float, float], polygon: NDArray[np.float64] | Sequence[Pt]
) -> bool:
    """Whether the box ``x1, y1, x2, y2`` and the ``(M, 2)`` polygon share any point.

    Both in the same (pixel) coordinates. In plain floats: a box and a zone have a handful of
    corners each, where NumPy's cost per call is most of the work (this runs for every box, every
    frame, every box-anchored rule). The corner test is the even-odd rule of
    :func:`~safewatch.domain.geometry.points_in_polygon`, with the same arithmetic.
    """
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    vertices: list[Pt] = [
        (x, y) for x, y in np.asarray(polygon, dtype=np.float64).reshape(-1, 2).tolist()
    ]
    xs = [x for x, _ in vertices]
    ys = [y for _, y in vertices]
    # Most boxes are nowhere near the zone: reject them on the bounding boxes.
    if x2 < min(xs) or x1 > max(xs) or y2 < min(ys) or y1 > max(ys):
        return False
    if any(x1 <= x <= x2 and y1 <= y <= y2 for x, y in vertices):
        return True
    box: list[Pt] = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    if any(_inside(corner, vertices) for corner in box):
        return True
    box_edges = list(zip(box, box[1:] + box[:1], strict=True))
    for a, b in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        if any(_segments_meet(a, b, c, d) for c, d in box_edges):
            return True
    return False


def _inside(point: Pt, vertices: list[Pt]) -> bool:
    """Even-odd ray casting for one point (points on an edge may fall either side)."""
    x, y = point
    inside = False
    for (ax, ay), (bx, by) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            inside = not inside
    return inside
