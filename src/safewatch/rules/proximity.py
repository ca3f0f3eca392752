"""The ``proximity`` rule kind: people keep their distance from vehicles and machines.

Distance is measured where things touch the floor: from the subject's foot point (bottom-centre of
its box) to the nearest point of a hazard's bottom edge (a forklift's foot print seen from the
camera), or to a fixed machine zone's polygon (0 inside it). On a calibrated camera and a rule in
metres these points are first mapped to the floor; otherwise the distance is in pixels of the
picture (crude, since perspective shrinks far pixels, but useful on a top-down camera).

The bottom edge is the wrong thing to measure to in two cases (see
:meth:`ProximityMonitor._box_distances`): a foot point inside the hazard's box (someone right
beside or in front of a forklift in the picture) is at distance 0, however far the box's bottom
edge is; and a hazard whose box is cut by the bottom of the picture has no bottom edge in view
(the edge there is the frame's), so the distance is to the nearest point of its box instead.

With ``approaching``, a subject within ``max_distance`` violates only while the distance to the
hazard shrinks at least that fast: "a forklift heading at someone", not "someone working next to a
parked forklift". The closing speed is the least-squares slope of the pair's distance over the
last ``window`` seconds of the frame clock (at least the last three samples, so a slow camera has
one too: :mod:`safewatch.rules.measure`), so box jitter does not fake it. It is fitted on the
distance without the 0 beside a hazard's box, which jumps as a box edge jitters across the feet.
Per-pair histories are dropped once the pair has not been measured for ``window`` (or the grace
in force, whichever is longer: the configured ``grace``, but at least 1.5 of the camera's frame
intervals, as episodes use it, :class:`~safewatch.rules.episodes.FrameClock`), so memory is
bounded by the pairs recently seen and a pair missed in one frame of a slow camera
keeps its history.

Each subject is one episode; its ``track_ids`` are ``(subject, hazard)`` for a vehicle, or
``(subject,)`` with ``zone_id`` set for a machine zone. When several hazards are too close, the
nearest one is reported.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from safewatch.config.rules import ProximityRule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import Track, TrackedFrame
from safewatch.rules.episodes import FrameClock, Observation
from safewatch.rules.frame_geometry import FrameGeometry, geometry_of
from safewatch.rules.measure import PixelSize, Plane, PolygonEdges, Samples, segment_distances

__all__ = ["MACHINE", "Gap", "ProximityMonitor"]

_log = logging.getLogger(__name__)

MACHINE = -1
"""Hazard id of the rule's machine zone in pair keys."""

_FRAME_BOTTOM_MARGIN = 2.0
"""Pixels above the bottom of the picture within which a hazard's box counts as cut by it (a
detector's box for a vehicle running out of the picture ends at, or a pixel or so short of, the
frame's last row)."""


@dataclass(frozen=True, slots=True)
class Gap:
    """How far one subject is from one hazard in one frame.

    Attributes:
        subject: Subject track id.
        hazard: Hazard track id, or :data:`MACHINE`.
        distance: In plane units (metres or pixels).
        closing: Smoothed speed at which the distance shrinks (positive: approaching), or
            ``None`` while the pair's history is too short.
    """

    subject: int
    hazard: int
    distance: float
    closing: float | None


class ProximityMonitor:
    """Measures subject-to-hazard distances on one camera.

    Args:
        rule: The rule (subjects, objects, max_distance, approaching, window, grace).
        plane: Where distances are measured (the floor for rules in metres).
        machine: The rule's machine zone, if any.
        zones: The rule's scope zones on this camera; empty: anywhere.
        clock: The camera's frame clock (one of its own by default), for the grace in force.
    """

    instant = False

    def __init__(
        self,
        rule: ProximityRule,
        plane: Plane,
        machine: Zone | None = None,
        zones: tuple[Zone, ...] = (),
        clock: FrameClock | None = None,
    ) -> None:
        self.rule = rule
        self.clock = FrameClock() if clock is None else clock
        self.plane = plane
        self.machine = machine
        self.zones = zones
        self._pairs: dict[tuple[int, int], Samples] = {}
        self._machine_at: tuple[int, int] = (-1, -1)
        self._pixels = PixelSize()  # frame size of the pixel histories
        self._machine_edges: PolygonEdges | None = None
        self._warned_horizon = False

    def __len__(self) -> int:
        """Subject-hazard pairs with distance history."""
        return len(self._pairs)

    def gaps(
        self,
        tracked: TrackedFrame,
        within: float | None = None,
        geometry: FrameGeometry | None = None,
    ) -> list[Gap]:
        """Advance the pair histories by one frame; every measurable subject-hazard gap.

        Args:
            tracked: The frame.
            within: Only gaps shorter than this (in plane units) are returned (the others
                cannot violate: ``max_distance`` is the closest allowed distance, so exactly it
                is allowed, as for a ``speed`` or ``dwell`` limit); with ``approaching`` the
                histories of the others still grow.
            geometry: The frame's shared geometry (see :mod:`~safewatch.rules.frame_geometry`).
        """
        return [Gap(*gap) for gap in self._measure(tracked, within, geometry)]

    def _distances(
        self, g: FrameGeometry
    ) -> (
        tuple[
            list[int],
            list[int],
            NDArray[np.float64],
            NDArray[np.float64],
            NDArray[np.float64] | None,
        ]
        | None
    ):
        """Subject and hazard track indices, ``(S, H)`` subject-hazard distances, the same
        distances for the closing-speed fit (see :meth:`_box_distances`) and ``(S,)`` distances
        to the machine zone (``None`` without one); ``None`` when nothing to measure.
        """
        subjects = g.labelled(self.rule.subjects)
        if self.zones and subjects:
            scoped: set[int] = set()
            for zone in self.zones:
                scoped.update(g.in_zone(zone, "feet", subjects))
            subjects = [i for i in subjects if i in scoped]
        hazards = g.labelled(self.rule.objects)
        if not subjects or not (hazards or self.machine is not None):
            return None
        # Every subject-hazard distance at once: with 40 people and 10 vehicles this runs
        # 400 times a frame, far too often for one NumPy call per pair.
        calibration = self.plane.calibration
        feet = g.floor(calibration, "feet")[subjects]
        if hazards:
            to_hazards, trend = self._box_distances(
                g,
                subjects,
                hazards,
                feet,
                segment_distances(
                    feet,
                    g.floor(calibration, "bottom_left")[hazards],
                    g.floor(calibration, "bottom_right")[hazards],
                ),
            )
        else:
            to_hazards = trend = np.empty((len(subjects), 0), dtype=np.float64)
        machine = self._machine(g.width, g.height)
        to_machine = None if machine is None else machine.distances(feet)
        return subjects, hazards, to_hazards, trend, to_machine

    def _box_distances(
        self,
        g: FrameGeometry,
        subjects: list[int],
        hazards: list[int],
        feet: NDArray[np.float64],
        to_edges: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(S, H)`` subject-hazard distances from ``to_edges`` (to the bottom edges), corrected
        where the bottom edge is not where the hazard is, and the same distances without the 0
        for feet beside the hazard (for the closing-speed fit).

        * A subject whose foot point lies within the lower half of a hazard's box (the picture
          puts them right beside it) is at distance 0: measured from the box's bottom edge, a
          person next to a tall forklift would seem the forklift's height away. Only the lower
          half: on the usual raised camera, feet in the upper half belong to someone behind the
          vehicle (or partly hidden by it), whose distance the bottom edge gives better.
        * A hazard whose box reaches the bottom of the picture is cut by it: its real bottom edge
          is out of view and the box's is the frame's. The distance is to the nearest point of
          the box (in the picture; that point mapped to the floor for a rule in metres).

        The 0 beside a hazard is for the ``max_distance`` test only: it jumps from (say) 50 px
        to 0 where a foot point crosses the side of the box, so a person standing still by a
        parked forklift, whose box jitters by a pixel or two across their feet, would seem to
        be closing in at 100 px/s, and a forklift driving on through someone's position would
        seem to stop closing once at 0. The closing speed is fitted on the second array, which
        is continuous in the foot point and the box.

        Args:
            g: The frame's geometry.
            subjects: Subject track indices.
            hazards: Hazard track indices.
            feet: ``(S, 2)`` subject foot points in plane units (NaN: off the floor).
            to_edges: ``(S, H)`` distances to the hazards' bottom edges, in plane units.
        """
        boxes = g.boxes()[hazards]
        x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
        foot = g.points("feet")[subjects]
        fx, fy = foot[:, 0:1], foot[:, 1:2]
        result = to_edges
        cut = np.flatnonzero(y2 >= g.height - _FRAME_BOTTOM_MARGIN)
        if len(cut):
            nearest = np.stack(
                (np.clip(fx, x1[cut], x2[cut]), np.clip(fy, y1[cut], y2[cut])), axis=-1
            )
            on_plane = self.plane.project(nearest.reshape(-1, 2), g.width, g.height)
            on_plane = on_plane.reshape(len(subjects), len(cut), 2)
            result = result.copy()
            result[:, cut] = np.hypot(
                on_plane[:, :, 0] - feet[:, 0:1], on_plane[:, :, 1] - feet[:, 1:2]
            )
        inside = (fx >= x1) & (fx <= x2) & (fy >= (y1 + y2) / 2.0) & (fy <= y2)
        inside &= np.isfinite(feet[:, 0:1])  # a foot off the floor has no distance in metres
        if inside.any():
            return np.where(inside, 0.0, result), result
        return result, result

    def _measure(
        self, tracked: TrackedFrame, within: float | None, geometry: FrameGeometry | None
    ) -> list[tuple[int, int, float, float | None]]:
        """:meth:`gaps` as plain tuples (observe needs no objects for the pairs it drops)."""
        at = tracked.timestamp
        g = geometry_of(tracked, geometry)
        if self._pixels.rescale(self.plane, g.width, g.height) is not None:
            # Pixel distances of frames of another size do not compare: one pair's distance
            # halving in a frame would read as a hazard closing in on someone who stands still.
            # A distance cannot be rescaled when the aspect changes either, so start afresh.
            self._pairs.clear()
        measured = self._distances(g)
        gaps: list[tuple[int, int, float, float | None]] = []
        if measured is not None:
            subjects, hazards, to_hazards, trend, to_machine = measured
            limit = math.inf if within is None else within
            keep_far = self.rule.approaching is not None and within is not None
            if keep_far:
                rows: list[int] = list(range(len(subjects)))
            else:  # only subjects with a hazard within the limit have anything to report
                near = np.isfinite(to_hazards) & (to_hazards < limit)
                active = np.logical_or.reduce(near, axis=1)
                if to_machine is not None:
                    active |= np.isfinite(to_machine) & (to_machine < limit)
                rows = np.flatnonzero(active).tolist()
            # Plain lists from here: a loop over a few hundred pairs with one NumPy call each
            # costs more than the distances themselves.
            tracks = g.tracks
            ids = [tracks[j].track_id for j in hazards]
            distances = to_hazards.tolist()
            trends = distances if trend is to_hazards else trend.tolist()
            machine = to_machine.tolist() if to_machine is not None else None
            history, isfinite, pairs = self._history, math.isfinite, self._pairs
            for i in rows:
                sid = tracks[subjects[i]].track_id
                if ids:
                    for hid, distance, fit in zip(ids, distances[i], trends[i], strict=True):
                        if hid == sid or not isfinite(distance):
                            continue
                        if distance < limit:
                            gaps.append(self._record(at, sid, hid, distance, fit))
                        elif keep_far:
                            # No gap (it cannot violate), but the history goes on: a forklift
                            # closing in from afar has a closing speed the moment it comes near.
                            history(sid, hid).push1(at, fit)
                if machine is not None:
                    distance = machine[i]
                    if not isfinite(distance):
                        continue
                    if distance < limit:
                        gaps.append(self._record(at, sid, MACHINE, distance, distance))
                    elif keep_far:  # every subject, every frame: the lookup inlined
                        samples = pairs.get((sid, MACHINE))
                        if samples is None:
                            samples = history(sid, MACHINE)
                        samples.push1(at, distance)
        self._prune(at)
        return gaps

    def _nearest(self, g: FrameGeometry, limit: float) -> list[tuple[int, int, float]]:
        """Without ``approaching``: each subject's nearest hazard closer than ``limit``.

        What :meth:`_measure` followed by picking the smallest gap gives (ties go to the first
        hazard in track order, and to a hazard track over the machine zone), in a few array
        operations instead of a Python loop over every pair: no history is kept, so nothing needs
        a pair at a time.

        Returns:
            ``(subject track index, hazard track index or MACHINE, distance)`` in track order.
        """
        measured = self._distances(g)
        if measured is None:
            return []
        subjects, hazards, to_hazards, _, to_machine = measured
        inf = math.inf
        count = len(subjects)
        best: list[int] = [0] * count
        best_distance: list[float] = [inf] * count
        if hazards:
            near = to_hazards < limit  # NaN (off the floor) is never near
            subject_ids = [g.tracks[i].track_id for i in subjects]
            hazard_ids = [g.tracks[j].track_id for j in hazards]
            if not set(subject_ids).isdisjoint(hazard_ids):  # a track is never its own hazard
                near &= np.array(subject_ids)[:, None] != np.array(hazard_ids)[None, :]
            masked = np.where(near, to_hazards, inf)
            best = masked.argmin(axis=1).tolist()  # the first of equal distances, as a loop
            best_distance = np.minimum.reduce(masked, axis=1).tolist()
        machine: list[float] | None = None
        if to_machine is not None:
            machine = np.where(to_machine < limit, to_machine, inf).tolist()
        found: list[tuple[int, int, float]] = []
        for i in range(count):
            distance = best_distance[i]
            if machine is not None and machine[i] < distance:  # a hazard track wins a tie
                found.append((subjects[i], MACHINE, machine[i]))
            elif distance < inf:
                found.append((subjects[i], hazards[best[i]], distance))
        return found

    def _prune(self, at: float) -> None:
        self.clock.tick(at)
        horizon = max(self.rule.window, self.clock.grace(self.rule.grace))
        for key in [k for k, s in self._pairs.items() if at - s.last_at > horizon]:
            del self._pairs[key]

    def _machine(self, width: int, height: int) -> PolygonEdges | None:
        """The machine zone in plane units for frames of this size (``None``: none, or not all
        of it on the floor), prepared for distances; kept until the size changes."""
        if self.machine is None:
            return None
        if self._machine_at != (width, height):
            polygon = self.plane.project(self.machine.to_pixels(width, height), width, height)
            on_floor = bool(np.all(np.isfinite(polygon)))
            self._machine_edges = PolygonEdges(polygon) if on_floor else None
            self._machine_at = (width, height)
            if not on_floor and not self._warned_horizon:
                # Loading the rules with the site refuses such a zone; this is a calibration
                # or zone that changed without that check (a rule set built in code). Without
                # a word the rule would just never measure to the machine.
                self._warned_horizon = True
                _log.warning(
                    "rule %s: machine zone %s reaches above the horizon of camera %s's "
                    "calibration; distances to it cannot be measured on the floor, so the rule "
                    "ignores the machine (draw the zone round the machine's footprint on the "
                    "floor)",
                    self.rule.id,
                    self.machine.id,
                    self.machine.camera_id,
                )
        return self._machine_edges

    def _history(self, subject: int, hazard: int) -> Samples:
        samples = self._pairs.get((subject, hazard))
        if samples is None:
            samples = self._pairs[(subject, hazard)] = Samples(self.rule.window)
        return samples

    def _record(
        self, at: float, subject: int, hazard: int, distance: float, fit: float
    ) -> tuple[int, int, float, float | None]:
        """The gap of one pair; ``fit`` is its distance for the closing-speed fit."""
        if self.rule.approaching is None:
            return (subject, hazard, distance, None)  # no closing speed needed: no history
        samples = self._history(subject, hazard)
        samples.push1(at, fit)
        rate = samples.slopes()
        closing = None if rate is None else -rate[0]
        return (subject, hazard, distance, closing)

    def observe(
        self, tracked: TrackedFrame, geometry: FrameGeometry | None = None
    ) -> list[Observation]:
        """Subjects too close to a hazard in this frame, in track order (nearest hazard each)."""
        g = geometry_of(tracked, geometry)
        max_distance = self.rule.max_distance.value
        minimum = f"(min {self.plane.distance_text(max_distance)})"
        if self.rule.approaching is None:
            self._prune(tracked.timestamp)
            return [
                self._observation(
                    g.tracks[s], None if h == MACHINE else g.tracks[h], d, None, minimum
                )
                for s, h, d in self._nearest(g, max_distance)
            ]
        approaching = self.rule.approaching.value
        nearest: dict[int, tuple[int, int, float, float | None]] = {}
        # Only gaps within max_distance can violate; farther pairs still extend their
        # histories inside _measure(), without a closing speed being fitted.
        for gap in self._measure(tracked, max_distance, g):
            subject, _, distance, closing = gap
            if distance >= max_distance or closing is None or closing < approaching:
                continue
            if subject not in nearest or distance < nearest[subject][2]:
                nearest[subject] = gap
        if not nearest:
            return []
        by_id = {t.track_id: t for t in g.tracks}
        observations = []
        for person in [t for t in g.tracks if t.track_id in nearest]:
            _, hazard_id, distance, closing = nearest[person.track_id]
            hazard = None if hazard_id == MACHINE else by_id[hazard_id]
            observations.append(self._observation(person, hazard, distance, closing, minimum))
        return observations

    def _observation(
        self,
        person: Track,
        hazard: Track | None,
        distance: float,
        closing: float | None,
        minimum: str,
    ) -> Observation:
        """The observation of ``person`` too close to ``hazard`` (``None``: the machine zone);
        ``minimum`` is the rule's ``(min ...)`` text."""
        subject = person.track_id
        ids: tuple[int, ...]
        if hazard is None and self.machine is not None:
            what, ids, zone_id = f"machine zone {self.machine.id}", (subject,), self.machine.id
            confidence = float(person.confidence)
        else:
            assert hazard is not None
            what, zone_id = f"{hazard.label} #{hazard.track_id}", None
            ids = (subject, hazard.track_id)
            confidence = min(float(person.confidence), float(hazard.confidence))
        plane = self.plane
        message = f"{person.label} #{subject} {plane.distance_text(distance)} from {what} {minimum}"
        if self.rule.approaching is not None and closing is not None:
            message += f", closing at {plane.speed_text(closing)}"
        return Observation(subject, ids, confidence, message, zone_id)
