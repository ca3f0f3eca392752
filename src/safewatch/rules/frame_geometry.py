"""One frame's geometry, computed once and shared by every rule that asks for it.

Twenty rules over fifty tracks ask the same questions of a frame again and again: which tracks
are people, where their feet are, which feet are in the loading bay, where those feet are on the
floor. Asked per rule, each answer is a NumPy call or a Python loop over the tracks, and their
fixed cost (tens of microseconds) is most of what the engine spends. :class:`FrameGeometry` asks
each question once per frame, lazily, for all tracks at once, and keeps the answer for the other
rules: :meth:`RuleEngine.evaluate <safewatch.rules.engine.RuleEngine.evaluate>` builds one per
frame and hands it to every monitor.

Sharing must change no verdict, so each answer is computed with the arithmetic the kinds used on
their own, on the same numbers, row by row: zone membership is
:func:`~safewatch.domain.geometry.points_in_polygon`'s ray casting, feet and centres are
:class:`~safewatch.domain.tracks.Track`'s. The one exception is inherent in NumPy: floor positions
come from the calibration's matrix product, which BLAS may round differently in the last bit
depending on how many points are projected together (as projecting different subsets per rule
always did). ``tests/unit/rules/test_rules_stream.py`` holds the engine to the event stream it
produced before this module existed.

Track indices are positions in ``tracked.tracks``; every list of indices is in track order, which
is the order kinds report in. The engine keeps a :class:`ZoneTable` per camera so that a
camera's zones are tested in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
from numpy.typing import NDArray

from safewatch.domain.geometry import Zone, points_in_polygon, within_frame
from safewatch.domain.tracks import PERSON, PPEState, Track, TrackedFrame
from safewatch.rules.calibration import Calibration
from safewatch.rules.overlap import box_overlaps_polygon

__all__ = ["FrameGeometry", "ZoneTable", "geometry_of"]

_FLOOR_POINTS = ("feet", "bottom_left", "bottom_right")
"""Points projected to the floor together (see :meth:`FrameGeometry.floor`)."""

_POINTS = ("feet", "centre", "bottom_left", "bottom_right")
"""Points of a box :meth:`FrameGeometry.points` knows: the foot point (bottom-centre), the
centre, and the two ends of the bottom edge (a vehicle's foot print)."""


class _Stack:
    """Zones as one array of vertices, with their edges prepared per frame size."""

    __slots__ = ("_edges", "following", "index", "starts", "vertices", "zones")

    def __init__(self, zones: tuple[Zone, ...]) -> None:
        self.zones = zones
        self.index = {zone: slot for slot, zone in enumerate(zones)}
        """Zone (by value: a reload rebuilds zones equal to the old ones) to its slot."""
        sizes = [len(zone.polygon) for zone in zones]
        self.starts = np.cumsum([0, *sizes[:-1]], dtype=np.intp)
        """Index of each zone's first vertex."""
        self.vertices = np.array(
            [point for zone in zones for point in zone.polygon], dtype=np.float64
        ).reshape(-1, 2)
        """``(V, 2)`` normalised vertices of every zone, one after another."""
        self.following = np.array(
            [start + (k + 1) % size for start, size in zip(self.starts.tolist(), sizes, strict=True)
             for k in range(size)],
            dtype=np.intp,
        )  # fmt: skip
        """Index of the vertex each edge runs to (the last vertex of a zone joins its first)."""
        self._edges: dict[tuple[int, int], tuple[NDArray[np.float64], ...]] = {}

    def edges(self, width: int, height: int) -> tuple[NDArray[np.float64], ...]:
        """The edges' ``x1, y1, y2``, ``x2 - x1`` and ``y2 - y1`` (1 where 0: such an edge never
        crosses a ray) in pixels of a ``width`` x ``height`` frame; kept per frame size, since a
        camera's size seldom changes."""
        found = self._edges.get((width, height))
        if found is None:
            if len(self._edges) > 8:  # a camera that keeps changing size: keep a few
                self._edges.clear()
            pixels = self.vertices * np.array([width, height], np.float64)
            x1, y1 = pixels[:, 0], pixels[:, 1]
            x2, y2 = x1[self.following], y1[self.following]
            dy = y2 - y1
            found = (x1, y1, y2, x2 - x1, np.where(dy == 0.0, 1.0, dy))
            for array in found:
                array.flags.writeable = False
            self._edges[(width, height)] = found
        return found


class ZoneTable:
    """A camera's zones, stacked per anchor so that a frame tests them in one pass.

    Each zone alone costs a dozen NumPy calls per frame and anchor, most of it fixed cost;
    stacked, the zones cost about what one did. Which zones an anchor needs is learnt from the
    rules' questions: the first time a zone is asked about with an anchor it is tested alone, and
    from the next frame on with the others (so the feet of everyone are tested against every zone
    rules ask about by feet, but centres only against the zones asked about by centre). The engine
    keeps one per camera and rule set. The arithmetic is that of
    :func:`~safewatch.domain.geometry.points_in_polygon`, so each verdict is the same.

    Args:
        zones: The camera's zones (any others are always tested alone).
    """

    __slots__ = ("_known", "_stacks", "zones")

    def __init__(self, zones: Sequence[Zone]) -> None:
        self.zones = tuple(zones)
        self._known = frozenset(self.zones)
        self._stacks: dict[str, _Stack] = {}

    def stack(self, anchor: str) -> _Stack | None:
        """The zones asked about with ``anchor`` so far, stacked (``None``: none yet)."""
        return self._stacks.get(anchor)

    def learn(self, zone: Zone, anchor: str) -> None:
        """Stack ``zone`` with the others of ``anchor`` from now on (if it is the camera's).

        New zones go last, so the slots of the others stay valid.
        """
        current = self._stacks.get(anchor)
        if zone not in self._known or (current is not None and zone in current.index):
            return
        self._stacks[anchor] = _Stack((*current.zones, zone) if current is not None else (zone,))


class FrameGeometry:
    """Lazily computed, cached geometry of one tracked frame.

    Args:
        tracked: The frame. Its tracks are read, never changed.
        zones: The camera's zones as one table (see :class:`ZoneTable`); zones not in it are
            tested one at a time.
    """

    __slots__ = (
        "_boxes",
        "_extents",
        "_floor",
        "_inside",
        "_labelled",
        "_masks",
        "_missing",
        "_pixels",
        "_points",
        "_table",
        "height",
        "tracked",
        "tracks",
        "width",
    )

    def __init__(self, tracked: TrackedFrame, zones: ZoneTable | None = None) -> None:
        self.tracked = tracked
        self._table = zones
        self._masks: dict[str, tuple[_Stack, list[list[bool]]]] = {}
        self._extents: dict[int, tuple[Zone, tuple[float, float, float, float]]] = {}
        self.tracks = tracked.tracks
        self.width = tracked.width
        self.height = tracked.height
        self._boxes: NDArray[np.float64] | None = None
        self._labelled: dict[tuple[tuple[str, ...] | None, bool], list[int]] = {}
        self._points: dict[str, NDArray[np.float64]] = {}
        self._floor: dict[tuple[int, str], tuple[Calibration, NDArray[np.float64]]] = {}
        self._pixels: dict[int, tuple[Zone, NDArray[np.float64]]] = {}
        self._inside: dict[tuple[int, str], tuple[Zone, list[bool] | dict[int, bool]]] = {}
        self._missing: dict[
            tuple[tuple[str, ...], tuple[str, ...], PPEState], list[tuple[int, tuple[str, ...]]]
        ] = {}

    def labelled(self, labels: tuple[str, ...] | None, *, ppe_subjects: bool = False) -> list[int]:
        """Indices of the tracks whose label is one of ``labels`` (``None``: every track).

        PPE-only subjects (:attr:`Track.ppe_only <safewatch.domain.tracks.Track.ppe_only>`) are
        left out unless ``ppe_subjects``: only PPE violation rules ask for them."""
        key = (labels, ppe_subjects)
        found = self._labelled.get(key)
        if found is None:
            tracks = self.tracks
            found = [
                i
                for i, t in enumerate(tracks)
                if (labels is None or t.label in labels) and (ppe_subjects or not t.ppe_only)
            ]
            self._labelled[key] = found
        return found

    def boxes(self) -> NDArray[np.float64]:
        """``(N, 4)`` boxes ``x1, y1, x2, y2`` in pixels."""
        if self._boxes is None:
            count = len(self.tracks)
            flat = chain.from_iterable([t.xyxy for t in self.tracks])
            self._boxes = np.fromiter(flat, dtype=np.float64, count=4 * count).reshape(count, 4)
        return self._boxes

    def points(self, name: str) -> NDArray[np.float64]:
        """``(N, 2)`` pixel points of every box (one of ``feet``, ``centre``, ``bottom_left``,
        ``bottom_right``).

        Computed as :attr:`Track.foot <safewatch.domain.tracks.Track.foot>` and
        :attr:`Track.centre <safewatch.domain.tracks.Track.centre>` compute them, so they are
        equal to the last bit.
        """
        found = self._points.get(name)
        if found is None:
            b = self.boxes()
            if name == "bottom_left":
                found = b[:, 0::3]
            elif name == "bottom_right":
                found = b[:, 2:4]
            elif name in ("feet", "centre"):
                found = np.empty((len(b), 2), dtype=np.float64)
                x, y = found[:, 0], found[:, 1]
                np.add(b[:, 0], b[:, 2], out=x)
                x /= 2.0
                if name == "feet":
                    y[:] = b[:, 3]
                else:
                    np.add(b[:, 1], b[:, 3], out=y)
                    y /= 2.0
            else:
                raise ValueError(f"unknown point {name!r}; expected one of {_POINTS}")
            self._points[name] = found
        return found

    def floor(self, calibration: Calibration | None, name: str) -> NDArray[np.float64]:
        """:meth:`points` ``name`` on the floor in metres (NaN rows above the horizon).

        Without a calibration (a rule in pixels), the pixel points themselves. The three points
        of the bottom edge (``feet``, ``bottom_left``, ``bottom_right``: where things touch the
        floor, and all proximity measures) are projected together, in one call.
        """
        if calibration is None:
            return self.points(name)
        key = (id(calibration), name)
        found = self._floor.get(key)
        if found is None:
            names = _FLOOR_POINTS if name in _FLOOR_POINTS else (name,)
            stacked = np.concatenate([self.points(n) for n in names])
            projected = calibration.to_floor(stacked, self.width, self.height)
            count = len(self.tracks)
            for k, each in enumerate(names):
                # The calibration rides along so its id cannot be reused while cached.
                self._floor[(id(calibration), each)] = (
                    calibration,
                    projected[k * count : (k + 1) * count],
                )
            found = self._floor[key]
        return found[1]

    def polygon(self, zone: Zone) -> NDArray[np.float64]:
        """The zone's polygon in this frame's pixels."""
        found = self._pixels.get(id(zone))
        if found is None:
            found = self._pixels[id(zone)] = (zone, zone.to_pixels(self.width, self.height))
        return found[1]

    def in_zone(self, zone: Zone, anchor: str, indices: Sequence[int]) -> list[int]:
        """Those of ``indices`` whose track is in ``zone`` by ``anchor``, in the same order.

        ``feet`` and ``centre`` test the point, for all tracks and all zones of the camera's
        table at once, the first time a frame asks; ``box`` means any overlap of the box and is
        tested only for the tracks asked about (it is a test per box), each at most once per
        frame.
        """
        if not indices:
            return []
        key = (id(zone), anchor)
        found = self._inside.get(key)
        if anchor == "box":
            if found is None:
                found = self._inside[key] = (zone, {})
            known = found[1]
            assert isinstance(known, dict)
            polygon = self.polygon(zone)
            left, top, right, bottom = self._extent(zone)
            result = []
            for i in indices:
                inside = known.get(i)
                if inside is None:
                    box = self.tracks[i].xyxy
                    # box_overlaps_polygon's own first test, without its NumPy calls: most
                    # boxes are nowhere near the zone.
                    if box[2] < left or box[0] > right or box[3] < top or box[1] > bottom:
                        inside = False
                    else:
                        inside = box_overlaps_polygon(box, polygon)
                    known[i] = inside
                if inside:
                    result.append(i)
            return result
        if found is None:
            found = self._inside[key] = (zone, self._point_mask(zone, anchor))
        flags = found[1]
        return [i for i in indices if flags[i]]

    def _extent(self, zone: Zone) -> tuple[float, float, float, float]:
        """The zone's bounding box in pixels: left, top, right, bottom."""
        found = self._extents.get(id(zone))
        if found is None:
            polygon = self.polygon(zone)
            xs, ys = polygon[:, 0].tolist(), polygon[:, 1].tolist()
            extent = (min(xs), min(ys), max(xs), max(ys))
            found = self._extents[id(zone)] = (zone, extent)
        return found[1]

    def _point_mask(self, zone: Zone, anchor: str) -> list[bool]:
        """Per track, whether its ``anchor`` point is in ``zone``."""
        table = self._table
        stack = None if table is None else table.stack(anchor)
        slot = None if stack is None else stack.index.get(zone)
        if stack is None or slot is None:
            if table is not None:
                table.learn(zone, anchor)  # with the others from the next frame on
            points = within_frame(self.points(anchor), self.width, self.height)
            mask: list[bool] = points_in_polygon(points, self.polygon(zone)).tolist()
            return mask
        found = self._masks.get(anchor)
        if found is None or found[0] is not stack:
            found = self._masks[anchor] = (stack, self._stacked(stack, anchor))
        return found[1][slot]

    def _stacked(self, stack: _Stack, anchor: str) -> list[list[bool]]:
        """Per zone of ``stack``, per track: even-odd ray casting as in ``points_in_polygon``."""
        x1, y1, y2, dx, dy = stack.edges(self.width, self.height)
        points = within_frame(self.points(anchor), self.width, self.height)
        x, y = points[:, 0:1], points[:, 1:2]
        crosses = (y1 > y) != (y2 > y)
        x_at_y = x1 + (y - y1) * dx / dy  # dy == 0 never crosses
        inside = (crosses & (x < x_at_y)).view(np.uint8)
        counts = np.add.reduceat(inside, stack.starts, axis=1, dtype=np.intp)
        masks: list[list[bool]] = ((counts & 1) == 1).T.tolist()
        return masks

    def first_zone(
        self, zones: Sequence[Zone], anchor: str, indices: Sequence[int]
    ) -> list[Zone | None]:
        """For each of ``indices``, the first of ``zones`` its track is in (``None``: none)."""
        found: dict[int, Zone] = {}
        for zone in zones:
            for i in self.in_zone(zone, anchor, indices):
                found.setdefault(i, zone)
        return [found.get(i) for i in indices]

    def missing(
        self,
        require: tuple[str, ...],
        labels: tuple[str, ...],
        state: PPEState = PPEState.ABSENT,
    ) -> list[tuple[int, tuple[str, ...]]]:
        """Tracks labelled one of ``labels`` with items of ``require`` in ``state``.

        Args:
            require: Items to look at.
            labels: Track labels to look at.
            state: ``ABSENT`` (a violation) or ``UNKNOWN`` (not verifiable).

        Returns:
            ``(track index, items in that state, in require order)`` for each such track, in
            track order. PPE-only subjects count for ``ABSENT`` (they exist to carry that verdict)
            but not for ``UNKNOWN``: a weak box or a lone head without a verdict is too often no
            worker at all to open a review item.

        An item a person track carries no state for is ``UNKNOWN`` here and never ``ABSENT``
        (other tracks never carry PPE states: a forklift the rule also names is neither). The
        tracker reports only the items the camera's models are known to detect (their
        ``labels:`` maps) or have detected so far, so on a camera whose PPE model has no map
        and never fires, persons carry no item at all: that is exactly the camera a
        "not verifiable" rule exists for, while a violation needs a verdict.
        """
        key = (require, labels, state)
        found = self._missing.get(key)
        if found is None:
            tracks = self.tracks
            subjects = self.labelled(labels, ppe_subjects=state is PPEState.ABSENT)
            # Only people carry PPE states: an item a person lacks is unknown, a forklift's none.
            unknown = state is PPEState.UNKNOWN
            if len(require) == 1:  # the usual rule: one item, no list per track
                (item,) = require
                found = [
                    (i, require)
                    for i in subjects
                    if tracks[i].attributes.get(item, _unreported(tracks[i], unknown)) == state
                ]
            else:
                found = []
                for i in subjects:
                    attributes = tracks[i].attributes
                    unreported = _unreported(tracks[i], unknown)
                    items = tuple(
                        [item for item in require if attributes.get(item, unreported) == state]
                    )
                    if items:
                        found.append((i, items))
            self._missing[key] = found
        return found


def geometry_of(tracked: TrackedFrame, geometry: FrameGeometry | None) -> FrameGeometry:
    """``geometry`` if the engine passed one, else a new one for ``tracked`` (a kind called on
    its own, as tests and tools do)."""
    return FrameGeometry(tracked) if geometry is None else geometry


def _unreported(track: Track, unknown: bool) -> PPEState | None:
    """The state of an item ``track`` carries none for: unknown for a person when unknown items
    are asked for (:meth:`FrameGeometry.missing`), else none."""
    return PPEState.UNKNOWN if unknown and track.label == PERSON else None
