"""Camera calibration: a homography from the picture to the floor, in metres.

A fixed camera looking at a flat floor sees it through a plane-to-plane projection: four or more
points whose floor positions are known (tape marks, pillar feet, a measured bay) pin it down. With
it, a person's foot point becomes a floor position in metres, so ``proximity`` can say "2 m" and
``speed`` can say "10 km/h" whatever the perspective. Only points on the floor map correctly, which
is why rules measure from foot points and the bottom edges of boxes.

The homography is estimated from *normalised* image points (0-1 from the top-left corner, like
zones) so a calibration survives a change of stream resolution: calibration points must be given
normalised (the site file refuses pixels), while the pixel points of a frame that
:meth:`Calibration.to_floor` maps are divided by the frame's size on the way in. It is solved
with the normalised direct linear transform (Hartley), in NumPy: exact for four points, least
squares for more. With five or more points the reprojection error (floor distance between where a
calibration point should be and where the homography sends its image point) shows typos and
points that are not on the floor.

Public API (stable; the ``safewatch calibrate`` command and the rule kinds use it):

* :func:`solve_homography` ``(src, dst) -> (3, 3) array``; :func:`apply_homography`
  ``(h, points) -> (N, 2) array`` (NaN rows for points at or beyond the horizon).
* :class:`Calibration`: ``Calibration.from_points(image, floor)``,
  ``Calibration.from_config(CalibrationConfig)``; attributes ``image_points``, ``floor_points``,
  ``homography``, ``rms_error``, ``max_error``, ``warnings``; methods ``horizon()``,
  ``to_floor(points_px, width, height)``,
  ``to_image(floor_points, width, height)``, ``floor_distance(a_px, b_px, width, height)``,
  ``errors()`` (per-point reprojection errors in metres) and ``metres_per_pixel(point_px, width,
  height)`` (local scale).
* :func:`calibrations_from_site` ``(SiteConfig) -> dict[camera_id, Calibration]`` for
  :class:`~safewatch.rules.engine.RuleEngine`.

Errors are :class:`CalibrationError` (a ``ValueError``: pydantic turns it into a ``file:line``
config error when the site file is validated).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from safewatch.domain.geometry import Point

if TYPE_CHECKING:
    from safewatch.config.site import CalibrationConfig, SiteConfig

__all__ = [
    "MIN_POINTS",
    "Calibration",
    "CalibrationError",
    "apply_homography",
    "calibrations_from_site",
    "solve_homography",
]

_log = logging.getLogger(__name__)

MIN_POINTS = 4
"""Point pairs needed to fix a homography (eight unknowns, two equations per pair)."""

_HORIZON_EPS = 1e-9
"""A homogeneous ``w`` at or below this is on or beyond the horizon: no floor position."""

_PERSPECTIVE = 0.1
"""Relative change of ``w`` down the picture's height below which its direction is not judged:
without perspective (a view straight down) an upside-down reading of the picture is a mirror
image of the floor, whose distances are right."""

_FLIPPED = (
    "the horizon of these points lies below them, where an upright camera sees the sky: "
    "normalised y is 0 at the top of the picture; were these measured from the bottom? "
    "(then use 1 - y; a camera mounted upside down, or looking steeply down with the far "
    "side at the bottom of its picture, is right as it is)"
)


class CalibrationError(ValueError):
    """The point pairs do not define a usable picture-to-floor mapping."""


def _as_points(points: ArrayLike, name: str) -> NDArray[np.float64]:
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name} must be a list of [x, y] pairs of numbers") from None
    if array.ndim != 2 or array.shape[1] != 2:
        raise CalibrationError(f"{name} must be a list of [x, y] pairs, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise CalibrationError(f"{name} must be finite numbers")
    return array


def _conditioner(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Similarity moving the centroid to 0 and the mean distance to sqrt(2) (Hartley)."""
    centroid = points.mean(axis=0)
    spread = float(np.mean(np.linalg.norm(points - centroid, axis=1)))
    if spread < 1e-12:
        raise CalibrationError("all points are the same")
    scale = math.sqrt(2.0) / spread
    return np.array(
        [[scale, 0.0, -scale * centroid[0]], [0.0, scale, -scale * centroid[1]], [0.0, 0.0, 1.0]]
    )


def _refuse_repeats(points: NDArray[np.float64], name: str) -> None:
    """Refuse a point given twice: a repeated pair fits itself and checks nothing, so five rows
    with one repeated are four points whose zero error only looks like a check; and a point
    paired with two different positions cannot be both."""
    seen: dict[tuple[float, float], int] = {}
    for index, (x, y) in enumerate(points.tolist()):
        first = seen.setdefault((x, y), index)
        if first != index:
            raise CalibrationError(
                f"{name} point {index} [{x:g}, {y:g}] repeats point {first}: each pair must be "
                "a different point (a repeated one adds no check)"
            )


def _turns(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cross product at each corner of the polygon ``points`` in their order (its sign says
    which way the outline turns there)."""
    before = points - np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0) - points
    turns: NDArray[np.float64] = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return turns


def _shape(points: NDArray[np.float64]) -> str:
    """What the four corners ``points``, joined in their order, draw: for people."""
    turns = np.sign(_turns(points))
    if abs(turns.sum()) == 4:
        return "a quadrilateral"
    if abs(turns.sum()) == 2:
        return f"a quadrilateral dented in at corner {int(np.argmax(turns != np.median(turns)))}"
    # A bow-tie: the two outline edges whose corners turn the same way cross each other.
    first, second = ((0, 1), (2, 3)) if turns[1] == turns[2] else ((1, 2), (3, 0))
    return (
        f"a bow-tie (edge {first[0]}-{first[1]} crosses edge {second[0]}-{second[1]}: corners "
        f"{min(first[1], second[0])} and {max(first[1], second[0])} or "
        f"{min(first[0], second[1])} and {max(first[0], second[1])} swapped?)"
    )


def _refuse_crossed_corners(image: NDArray[np.float64], floor: NDArray[np.float64]) -> None:
    """Refuse four corners that draw different shapes in the picture and on the floor.

    A projective mapping keeps the shape the corners draw when joined in order (a quadrilateral
    stays one, possibly mirrored; a bow-tie stays a bow-tie with the same edges crossing), so four
    floor points whose outline turns differently from the picture's (two neighbouring corners
    typed the other way round: a bow-tie on one side only) cannot be one floor seen by a camera.
    Four points always fit exactly, so the solver only noticed the horizon running between them;
    this says which corners. Three points on a line are left to the solver's own message.
    """
    image_turns, floor_turns = _turns(image), _turns(floor)
    if min(np.abs(image_turns).min(), np.abs(floor_turns).min()) < 1e-12:
        return
    relation = np.sign(image_turns) * np.sign(floor_turns)
    if abs(relation.sum()) == 4:  # every corner turns the same way, or every one mirrored
        return
    raise CalibrationError(
        f"the image corners 0-1-2-3 draw {_shape(image)} but the floor corners 0-1-2-3 draw "
        f"{_shape(floor)}: list the corners in the same order in both (going round the "
        "outline), or measure those corners again"
    )


def apply_homography(h: ArrayLike, points: ArrayLike) -> NDArray[np.float64]:
    """Map ``(N, 2)`` points through the ``(3, 3)`` homography ``h``.

    Points that map to or beyond the line at infinity (above the horizon, for a floor
    homography) have no image: their rows are NaN, and callers treat them as "unknown".
    """
    matrix = np.asarray(h, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    # concatenate and logical_and.reduce rather than hstack and np.all: the same arrays without
    # their Python wrappers (this runs every frame for every calibrated camera).
    homogeneous = np.concatenate((pts, np.ones((len(pts), 1))), axis=1) @ matrix.T
    w = homogeneous[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        mapped = homogeneous[:, :2] / w
    mapped[(w[:, 0] <= _HORIZON_EPS) | ~np.logical_and.reduce(np.isfinite(mapped), axis=1)] = np.nan
    return mapped


def solve_homography(src: ArrayLike, dst: ArrayLike) -> NDArray[np.float64]:
    """The homography sending each ``src`` point to its ``dst`` point (DLT, Hartley-normalised).

    Args:
        src: ``(N, 2)`` points, N >= 4.
        dst: ``(N, 2)`` points, in the same order.

    Returns:
        ``(3, 3)`` matrix with ``h[2, 2] == 1`` (scaled so that mapped points have positive
        ``w``, which :func:`apply_homography` relies on to tell the horizon apart).

    Raises:
        CalibrationError: Fewer than four pairs, mismatched lengths, a point given twice (image
            or floor), four corners drawing a bow-tie on one side only, or a degenerate layout
            (too many points on one line) that does not fix one mapping.
    """
    a = _as_points(src, "image points")
    b = _as_points(dst, "floor points")
    if len(a) != len(b):
        raise CalibrationError(f"{len(a)} image points but {len(b)} floor points; pair them up")
    if len(a) < MIN_POINTS:
        raise CalibrationError(f"need at least {MIN_POINTS} point pairs, got {len(a)}")
    ta, tb = _conditioner(a), _conditioner(b)
    _refuse_repeats(a, "image")
    _refuse_repeats(b, "floor")
    if len(a) == MIN_POINTS:
        _refuse_crossed_corners(a, b)
    na = apply_homography(ta, a)
    nb = apply_homography(tb, b)
    rows = []
    for (x, y), (u, v) in zip(na, nb, strict=True):
        rows.append([-x, -y, -1.0, 0.0, 0.0, 0.0, u * x, u * y, u])
        rows.append([0.0, 0.0, 0.0, -x, -y, -1.0, v * x, v * y, v])
    _, singular, vt = np.linalg.svd(np.asarray(rows))
    # A unique solution needs a one-dimensional null space: the second-smallest singular value
    # (the ninth is the solution's) must be clearly non-zero.
    if len(singular) < 8 or singular[7] < 1e-8 * singular[0]:
        raise CalibrationError(
            "the points do not fix a mapping (three or more on one line, or repeated points); "
            "spread four of them over the floor like the corners of a quadrilateral"
        )
    h_norm = vt[-1].reshape(3, 3)
    h = np.linalg.inv(tb) @ h_norm @ ta
    if abs(h[2, 2]) < 1e-12:
        raise CalibrationError("the mapping sends the image origin to infinity; add points")
    h = h / h[2, 2]
    w = np.hstack([a, np.ones((len(a), 1))]) @ h[2]
    if np.all(w < 0):
        h = -h
    elif not np.all(w > 0):
        raise CalibrationError(
            "the points lie on both sides of the horizon; every point must be on the floor, "
            "or the image and floor lists are not in the same order (two pairs swapped?)"
        )
    det = float(np.linalg.det(h))
    if not math.isfinite(det) or abs(det) < 1e-12:
        raise CalibrationError("the mapping is singular (the points are degenerate)")
    return np.asarray(h, dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class Calibration:
    """A camera's picture-to-floor mapping.

    Build it with :meth:`from_points` or :meth:`from_config`, not directly.

    Attributes:
        image_points: Calibration points in normalised image coordinates (0-1).
        floor_points: The same points on the floor, in metres (any origin and orientation).
        homography: ``(3, 3)`` normalised image -> floor metres.
        rms_error: Root mean square reprojection error over the points, in metres (about 0 with
            exactly four points: four points always fit).
        max_error: Largest reprojection error, in metres.
    """

    image_points: tuple[Point, ...]
    floor_points: tuple[Point, ...]
    homography: NDArray[np.float64] = field(repr=False)
    inverse: NDArray[np.float64] = field(repr=False)
    rms_error: float
    max_error: float
    warnings: tuple[str, ...] = ()
    """Doubts about the points that do not refuse them (a sideways camera whose horizon lies on
    the far side of the points from the top of the picture)."""

    @classmethod
    def from_points(
        cls, image_points: Sequence[Sequence[float]], floor_points: Sequence[Sequence[float]]
    ) -> Calibration:
        """Solve the calibration from point pairs.

        Args:
            image_points: ``[x, y]`` normalised to the frame (0-1).
            floor_points: ``[X, Y]`` in metres, in the same order.

        Raises:
            CalibrationError: See :func:`solve_homography`.
        """
        image = _as_points(image_points, "image points")
        floor = _as_points(floor_points, "floor points")
        h = solve_homography(image, floor)
        errors = _distances(apply_homography(h, image), floor)
        if not np.all(np.isfinite(errors)):
            raise CalibrationError("a calibration point maps beyond the horizon")
        return cls(
            image_points=tuple((float(x), float(y)) for x, y in image),
            floor_points=tuple((float(x), float(y)) for x, y in floor),
            homography=_readonly(h),
            inverse=_readonly(np.asarray(np.linalg.inv(h), dtype=np.float64)),
            rms_error=float(np.sqrt(np.mean(errors**2))),
            max_error=float(np.max(errors)),
            warnings=_orientation(h, image),
        )

    @classmethod
    def from_config(cls, config: CalibrationConfig) -> Calibration:
        """Solve the calibration of a camera's ``calibration:`` block (validated already)."""
        return cls.from_points(config.image, config.floor)

    def horizon(self) -> tuple[Point, Point] | None:
        """Where the horizon (beyond it nothing is on the floor) crosses the picture's edges,
        two normalised points; ``None`` when it misses the picture (or there is none: a view
        straight down)."""
        a, b, c = (float(v) for v in self.homography[2])
        crossings: list[Point] = []
        if abs(b) > 1e-12:  # on the left and right edges
            crossings += [(x, -(c + a * x) / b) for x in (0.0, 1.0)]
        if abs(a) > 1e-12:  # on the top and bottom edges
            crossings += [(-(c + b * y) / a, y) for y in (0.0, 1.0)]
        inside = sorted({(x, y) for x, y in crossings if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0})
        if len(inside) < 2:
            return None
        return inside[0], inside[-1]

    def errors(self) -> NDArray[np.float64]:
        """Reprojection error of each calibration point, in metres, ``(N,)``."""
        mapped = apply_homography(self.homography, np.asarray(self.image_points))
        return _distances(mapped, np.asarray(self.floor_points))

    def to_floor(self, points: ArrayLike, width: int, height: int) -> NDArray[np.float64]:
        """Floor positions in metres of ``(N, 2)`` pixel points of a ``width`` x ``height`` frame.

        Rows are NaN for points at or above the horizon (they are not on the floor).
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return apply_homography(self.homography, pts / np.array([width, height], np.float64))

    def to_image(self, floor_points: ArrayLike, width: int, height: int) -> NDArray[np.float64]:
        """Pixel positions in a ``width`` x ``height`` frame of ``(N, 2)`` floor points (metres)."""
        normalised = apply_homography(self.inverse, floor_points)
        return normalised * np.array([width, height], np.float64)

    def floor_distance(
        self, a: tuple[float, float], b: tuple[float, float], width: int, height: int
    ) -> float:
        """Floor distance in metres between two pixel points (NaN if either is off the floor)."""
        floor = self.to_floor(np.array([a, b], dtype=np.float64), width, height)
        return float(np.linalg.norm(floor[0] - floor[1]))

    def metres_per_pixel(self, point: tuple[float, float], width: int, height: int) -> float:
        """Local scale at a pixel point: metres on the floor per pixel (mean of x and y steps)."""
        x, y = point
        floor = self.to_floor(
            np.array([[x, y], [x + 1.0, y], [x, y + 1.0]], dtype=np.float64), width, height
        )
        return float(
            (np.linalg.norm(floor[1] - floor[0]) + np.linalg.norm(floor[2] - floor[0])) / 2.0
        )


def _orientation(h: NDArray[np.float64], image: NDArray[np.float64]) -> tuple[str, ...]:
    """Warn about points whose picture may have been read upside down.

    ``w``, the homography's third row, is 0 on the horizon and grows toward the camera, so on
    an upright camera it grows toward the bottom of the picture. Image points typed with y
    measured from the bottom (``y -> 1 - y``) fit just as exactly, but put the horizon below
    the points and give wrong distances (two feet 100 px apart at the bottom of a 1080p frame
    read 3.3 m apart instead of 0.5 m). A warning, not a refusal: a camera mounted upside down
    (safewatch has no rotate setting for live cameras) or one looking steeply down with the far
    side at the bottom of its picture has exactly that layout and measures right (a re-review
    refused a synthetic camera rolled 180 degrees from 6 degrees off straight down). On a camera
    turned sideways (portrait mounting) the horizon runs down the picture and ``w`` changes
    mostly along x; the warning then says so.
    """
    gx, gy = float(h[2, 0]), float(h[2, 1])
    cx, cy = image.mean(axis=0)
    centre = gx * cx + gy * cy + float(h[2, 2])  # > 0: every point has a positive w
    if gy >= 0 or -gy < _PERSPECTIVE * centre:
        return ()
    if abs(gy) >= abs(gx):
        return (_FLIPPED,)
    return (
        "the horizon is beside the points (a camera turned sideways?) and toward the bottom "
        "of the picture; if the camera is upright, normalised y is 0 at the top of the "
        "picture: were these measured from the bottom?",
    )


def _distances(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    result: NDArray[np.float64] = np.linalg.norm(a - b, axis=1)
    return result


def _readonly(array: NDArray[np.float64]) -> NDArray[np.float64]:
    array.flags.writeable = False
    return array


def calibrations_from_site(site: SiteConfig) -> dict[str, Calibration]:
    """Solve the calibration of every camera of the site that has one.

    Raises:
        CalibrationError: Cannot happen for a site validated by :class:`SiteConfig` (it solves
            each calibration while validating); kept for configs built by other means.
    """
    calibrations = {
        camera_id: Calibration.from_config(camera.calibration)
        for camera_id, camera in site.cameras.items()
        if camera.calibration is not None
    }
    for camera_id, calibration in calibrations.items():
        for warning in calibration.warnings:  # doubts that do not refuse the site file
            _log.warning("camera %s: calibration: %s", camera_id, warning)
    return calibrations
