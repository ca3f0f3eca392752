"""Where distances and speeds are measured: the floor in metres, or the picture in pixels.

A rule written in metres measures on the floor through the camera's calibration; one written in
pixels measures on the picture. A :class:`Plane` hides the difference, so each kind computes
distances and speeds once, in "plane units", and names the unit only in its messages.

Speeds come from the frame clock, never from frame counts, and are smoothed: a box jitters by a few
pixels every frame, which at 10 fps is a fake speed of tens of pixels per second. The velocity is
the least-squares slope of position over the last ``window`` seconds (:func:`velocity`), and
needs at least three samples spanning half the window before it says anything. A history always
keeps its three newest samples, even when they span more than the window: on a camera slower than
about two frames per window, the window alone never holds three, and the speed is then measured
over the shortest span that allows a fit instead of never.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from safewatch.domain.geometry import points_in_polygon
from safewatch.rules.calibration import Calibration

__all__ = [
    "PixelSize",
    "Plane",
    "PolygonEdges",
    "Samples",
    "SharedTimes",
    "point_polygon_distance",
    "point_segment_distance",
    "polygon_distances",
    "segment_distances",
    "velocity",
]

MIN_SAMPLES = 3
"""Fewest positions a velocity is fitted to."""


@dataclass(frozen=True, slots=True)
class Plane:
    """Pixels of a frame, or the floor in metres when a calibration is given."""

    calibration: Calibration | None = None

    @property
    def unit(self) -> str:
        """``m`` or ``px``, for messages."""
        return "m" if self.calibration is not None else "px"

    def project(self, points: NDArray[np.float64], width: int, height: int) -> NDArray[np.float64]:
        """``(N, 2)`` pixel points in plane coordinates (NaN rows: not on the floor)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.calibration is None:
            return pts
        return self.calibration.to_floor(pts, width, height)

    def speed_text(self, value: float) -> str:
        """A speed for people: km/h on the floor, px/s on the picture."""
        if self.calibration is not None:
            return f"{value * 3.6:.1f} km/h"
        return f"{value:.0f} px/s"

    def distance_text(self, value: float) -> str:
        """A distance for people."""
        if self.calibration is not None:
            return f"{value:.1f} m"
        return f"{value:.0f} px"


class PixelSize:
    """The frame size that a monitor's stored pixel measurements were taken at.

    Pixels of frames of another size do not compare: a camera switched from 1920x1080 to
    960x540 keeps its track ids (the tracker rescales), so a stored pixel distance or point from
    before the switch, compared with one after it, reads as a jump of half the picture (a person
    standing still would seem to move, a hazard to close in). Every monitor that keeps pixel
    measurements across frames asks :meth:`rescale` on each frame and converts (or drops) what
    it keeps. Metres on a calibrated floor are the same at any size.
    """

    __slots__ = ("_size",)

    def __init__(self) -> None:
        self._size: tuple[int, int] | None = None

    def rescale(self, plane: Plane, width: int, height: int) -> NDArray[np.float64] | None:
        """Per-axis factors ``[sx, sy]`` from the pixels of the previous frame to this one's, or
        ``None`` when nothing needs converting (same size, the first frame, or a plane in
        metres)."""
        if plane.calibration is not None:
            return None
        previous, self._size = self._size, (width, height)
        if previous is None or previous == (width, height):
            return None
        return np.array([width / previous[0], height / previous[1]], dtype=np.float64)


def point_segment_distance(
    point: NDArray[np.float64], a: NDArray[np.float64], b: NDArray[np.float64]
) -> float:
    """Distance from ``point`` to the segment ``a``-``b`` (2-vectors)."""
    ab = b - a
    length_sq = float(ab @ ab)
    if length_sq == 0.0:
        return float(np.linalg.norm(point - a))
    t = min(1.0, max(0.0, float((point - a) @ ab) / length_sq))
    return float(np.linalg.norm(point - (a + t * ab)))


def point_polygon_distance(point: NDArray[np.float64], polygon: NDArray[np.float64]) -> float:
    """Distance from ``point`` to the ``(M, 2)`` polygon: 0 inside, else to the nearest edge."""
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if bool(points_in_polygon(point.reshape(1, 2), poly)[0]):
        return 0.0
    return min(
        point_segment_distance(point, poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly))
    )


def segment_distances(
    points: NDArray[np.float64], a: NDArray[np.float64], b: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``(N, M)`` distances from each of ``(N, 2)`` points to each segment ``a[j]``-``b[j]``.

    The vectorised :func:`point_segment_distance`; NaN where a point or a segment end is NaN
    (off the floor). Written per coordinate rather than on ``(N, M, 2)`` arrays: the same
    arithmetic, in a third of the NumPy calls (this runs for every proximity rule, every frame).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    px, py = pts[:, 0:1], pts[:, 1:2]
    ax, ay = a[:, 0], a[:, 1]
    abx, aby = b[:, 0] - ax, b[:, 1] - ay
    length_sq = abx * abx + aby * aby
    degenerate = length_sq <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((px - ax) * abx + (py - ay) * aby) / np.where(degenerate, 1.0, length_sq)
    t = np.where(degenerate, 0.0, np.minimum(np.maximum(t, 0.0), 1.0))
    dx = px - (ax + t * abx)
    dy = py - (ay + t * aby)
    result: NDArray[np.float64] = np.sqrt(dx * dx + dy * dy)
    return result


def polygon_distances(
    points: NDArray[np.float64], polygon: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``(N,)`` distances from points to the ``(M, 2)`` polygon: 0 inside, else to its edge."""
    return PolygonEdges(polygon).distances(points)


class PolygonEdges:
    """A polygon prepared for :meth:`distances`, for a polygon measured against every frame.

    The edge distances are those of :func:`segment_distances` and the inside test that of
    :func:`~safewatch.domain.geometry.points_in_polygon`, with the same arithmetic (so the same
    verdicts); what depends on the polygon alone is computed once, and the differences both
    need are shared.

    Args:
        polygon: ``(M, 2)`` vertices, M >= 3, open (the last vertex joins the first).
    """

    __slots__ = ("_abx", "_aby", "_ax", "_ay", "_by", "_degenerate", "_height", "_length")

    def __init__(self, polygon: NDArray[np.float64]) -> None:
        poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        self._ax, self._ay = poly[:, 0].copy(), poly[:, 1].copy()
        self._by = np.concatenate((self._ay[1:], self._ay[:1]))
        self._abx = np.concatenate((self._ax[1:], self._ax[:1])) - self._ax
        self._aby = self._by - self._ay
        length_sq = self._abx * self._abx + self._aby * self._aby
        self._degenerate = length_sq <= 0
        self._length = np.where(self._degenerate, 1.0, length_sq)
        """Squared edge lengths, 1 for an edge of no length (its projection is its start)."""
        self._height = np.where(self._aby == 0.0, 1.0, self._aby)
        """Edge heights, 1 where flat (a flat edge never crosses a ray)."""

    def distances(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(N,)`` distances from the points: 0 inside, else to the nearest edge (NaN points:
        NaN)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        px, py = pts[:, 0:1], pts[:, 1:2]
        ax, ay, abx, aby = self._ax, self._ay, self._abx, self._aby
        rx, ry = px - ax, py - ay
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (rx * abx + ry * aby) / self._length
        t = np.where(self._degenerate, 0.0, np.minimum(np.maximum(t, 0.0), 1.0))
        dx = px - (ax + t * abx)
        dy = py - (ay + t * aby)
        to_edges = np.minimum.reduce(np.sqrt(dx * dx + dy * dy), axis=1)
        crosses = (ay > py) != (self._by > py)
        x_at_y = ax + ry * abx / self._height
        inside = (np.add.reduce(crosses & (px < x_at_y), axis=1, dtype=np.intp) % 2) == 1
        inside &= np.isfinite(px[:, 0]) & np.isfinite(py[:, 0])
        result: NDArray[np.float64] = np.where(inside, 0.0, to_edges)
        return result


def velocity(times: Sequence[float], positions: NDArray[np.float64]) -> NDArray[np.float64]:
    """Least-squares rate of change of ``positions`` (``(N,)`` or ``(N, D)``) over ``times``.

    The slope of a straight line fitted to every sample, so one jittery box moves it by only
    ``1/N`` of what it would move a two-point difference.
    """
    t = np.asarray(times, dtype=np.float64)
    x = np.asarray(positions, dtype=np.float64)
    dt = t - t.mean()
    denominator = float(dt @ dt)
    if denominator == 0.0:
        return np.zeros(x.shape[1:], dtype=np.float64)
    result: NDArray[np.float64] = (dt @ (x - x.mean(axis=0))) / denominator
    return result


class SharedTimes:
    """The time half of a least-squares fit, shared by histories with the same sample times.

    The times are compared exactly, so sharing changes no result; it saves recomputing the same
    sums for every track seen on the same frames. Make one per frame (it remembers one set).
    """

    __slots__ = ("denominator", "dt", "times")

    def __init__(self) -> None:
        self.times: deque[float] | None = None
        self.dt: list[float] = []
        self.denominator = 0.0


class Samples:
    """A short, time-bounded history of positions (or distances) of one subject.

    Kept as plain floats, one column per coordinate, and fitted in plain Python: a history holds
    a dozen samples of one or two numbers, and there is one per track or pair, every frame, where
    NumPy's per-call cost would dominate. The fit is the same least-squares slope as
    :func:`velocity`.

    Args:
        window: Seconds of history kept.
    """

    __slots__ = ("_columns", "_times", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self._columns: list[deque[float]] = []

    def __len__(self) -> int:
        return len(self._times)

    @property
    def last_at(self) -> float:
        """Time of the newest sample (``-inf`` if none)."""
        return self._times[-1] if self._times else float("-inf")

    def add(self, at: float, value: NDArray[np.float64] | Sequence[float] | float) -> None:
        """Append a sample and forget those older than ``window`` before it, keeping at least the
        :data:`MIN_SAMPLES` newest (a slow camera's window holds fewer; see :meth:`push`).

        Raises:
            ValueError: ``value`` has another number of coordinates than the earlier samples.
        """
        if isinstance(value, int | float):
            self.push(at, (float(value),))
        elif isinstance(value, tuple | list):
            self.push(at, tuple([float(v) for v in value]))
        else:
            self.push(at, tuple([float(v) for v in np.ravel(value)]))

    def push(self, at: float, values: tuple[float, ...]) -> None:
        """:meth:`add` for a sample that is already a tuple of floats (what the kinds have)."""
        columns = self._columns
        if not columns:
            columns.extend(deque() for _ in values)
        elif len(values) != len(columns):
            raise ValueError(f"a sample of {len(values)} values in a history of {len(columns)}")
        times = self._times
        times.append(at)
        for column, v in zip(columns, values, strict=True):
            column.append(v)
        # Never fewer than MIN_SAMPLES: at 1 fps a 1 s window holds two samples, too few to fit,
        # and trimming to the window would leave such a camera without any speed at all.
        limit = self.window + 1e-9
        while at - times[0] > limit and len(times) > MIN_SAMPLES:
            times.popleft()
            for column in columns:
                column.popleft()

    def push1(self, at: float, value: float) -> None:
        """:meth:`push` of a one-number sample (a distance): no tuple, no loop over columns."""
        columns = self._columns
        if not columns:
            columns.append(deque())
        elif len(columns) != 1:
            raise ValueError(f"a sample of 1 value in a history of {len(columns)}")
        times, column = self._times, columns[0]
        times.append(at)
        column.append(value)
        limit = self.window + 1e-9
        while at - times[0] > limit and len(times) > MIN_SAMPLES:  # as push: enough to fit
            times.popleft()
            column.popleft()

    def slopes(self, shared: SharedTimes | None = None) -> tuple[float, ...] | None:
        """:meth:`rate` as plain floats (what the kinds use: no array for two numbers).

        Args:
            shared: Reuses the time half of the fit from the previous history fitted with it
                when the sample times are the same (tracks seen on the same frames are the
                common case); use one per frame.
        """
        times = self._times
        n = len(times)
        if n < MIN_SAMPLES or times[-1] - times[0] < self.window / 2:
            return None
        if shared is not None and shared.times is not None and shared.times == times:
            dt, denominator = shared.dt, shared.denominator
        else:
            t_mean = sum(times) / n
            dt = [t - t_mean for t in times]
            denominator = sum([d * d for d in dt])
            if shared is not None:  # a copy: this history may change before the next fit
                shared.times, shared.dt, shared.denominator = times.copy(), dt, denominator
        if denominator == 0.0:
            return tuple(0.0 for _ in self._columns)
        slopes = []
        for column in self._columns:
            mean = sum(column) / n
            covariance = sum([d * (x - mean) for d, x in zip(dt, column, strict=True)])
            slopes.append(covariance / denominator)
        return tuple(slopes)

    def rate(self) -> NDArray[np.float64] | None:
        """Smoothed rate of change per second, or ``None`` while the history is too short.

        Needs :data:`MIN_SAMPLES` samples spanning at least half the window, so the first frames of
        a track (whose box is still settling) never produce a speed.
        """
        slopes = self.slopes()
        return None if slopes is None else np.array(slopes, dtype=np.float64)
