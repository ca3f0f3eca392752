"""The ``proximity`` rule kind: people keep their distance from vehicles and machines.

Distance is measured where things touch the floor: from the subject's foot point (bottom-centre of
its box) to the nearest point of a hazard's bottom edge (a forklift's foot print seen from the
camera), or to a fixed machine zone's polygon (0 inside it). On a calibrated camera and a rule in
metres these points are first mapped to the floor; otherwise the distance is in pixels of the
picture (crude, since perspective shrinks far pixels, but useful on a top-down camera).

With ``approaching``, a subject within ``max_distance`` violates only while the distance to the
hazard shrinks at least that fast: "a forklift heading at someone", not "someone working next to a
parked forklift". The closing speed is the least-squares slope of the pair's distance over the
last ``window`` seconds of the frame clock (:mod:`safewatch.rules.measure`), so box jitter does not
fake it. Per-pair histories are dropped once the pair has not been measured for ``window`` (or
``grace``, whichever is longer), so memory is bounded by the pairs recently seen.

Each subject is one episode; its ``track_ids`` are ``(subject, hazard)`` for a vehicle, or
``(subject,)`` with ``zone_id`` set for a machine zone. When several hazards are too close, the
nearest one is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from safewatch.config.rules import ProximityRule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import Track, TrackedFrame
from safewatch.rules.episodes import Observation
from safewatch.rules.measure import Plane, Samples, polygon_distances, segment_distances
from safewatch.rules.zone_intrusion import tracks_in_zone

__all__ = ["MACHINE", "Gap", "ProximityMonitor"]

MACHINE = -1
"""Hazard id of the rule's machine zone in pair keys."""


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
    """

    instant = False

    def __init__(
        self,
        rule: ProximityRule,
        plane: Plane,
        machine: Zone | None = None,
        zones: tuple[Zone, ...] = (),
    ) -> None:
        self.rule = rule
        self.plane = plane
        self.machine = machine
        self.zones = zones
        self._pairs: dict[tuple[int, int], Samples] = {}

    def __len__(self) -> int:
        """Subject-hazard pairs with distance history."""
        return len(self._pairs)

    def gaps(self, tracked: TrackedFrame, within: float | None = None) -> list[Gap]:
        """Advance the pair histories by one frame; every measurable subject-hazard gap.

        Args:
            tracked: The frame.
            within: Only gaps at most this long (in plane units) are returned (farther ones
                cannot violate); with ``approaching`` the histories of the others still grow.
        """
        at, w, h = tracked.timestamp, tracked.width, tracked.height
        subjects = [t for t in tracked.tracks if t.label in self.rule.subjects]
        if self.zones and subjects:
            scoped = np.zeros(len(subjects), dtype=bool)
            for zone in self.zones:
                scoped |= np.array(tracks_in_zone(subjects, zone, "feet", w, h), dtype=bool)
            subjects = [s for s, keep in zip(subjects, scoped, strict=True) if keep]
        hazards = [t for t in tracked.tracks if t.label in self.rule.objects]
        gaps: list[Gap] = []
        if subjects and (hazards or self.machine is not None):
            # Every subject-hazard distance at once: with 40 people and 10 vehicles this runs
            # 400 times a frame, far too often for one NumPy call per pair.
            feet = self.plane.project(np.array([s.foot for s in subjects]), w, h)
            edges = self._bottom_edges(hazards, w, h)
            to_hazards = segment_distances(feet, edges[:, 0], edges[:, 1])
            to_machine: np.ndarray | None = None
            if self.machine is not None:
                polygon = self.plane.project(self.machine.to_pixels(w, h), w, h)
                if np.all(np.isfinite(polygon)):
                    to_machine = polygon_distances(feet, polygon)
            limit = math.inf if within is None else within
            # Plain lists from here: a loop over a few hundred pairs with one NumPy call each
            # costs more than the distances themselves.
            ids = [t.track_id for t in hazards]
            rows = to_hazards.tolist()
            machine = to_machine.tolist() if to_machine is not None else None
            keep_far = self.rule.approaching is not None and within is not None
            for i, subject in enumerate(subjects):
                sid = subject.track_id
                for hid, distance in zip(ids, rows[i], strict=True):
                    if hid == sid or not math.isfinite(distance):
                        continue
                    if distance <= limit:
                        gaps.append(self._record(at, sid, hid, distance))
                    elif keep_far:
                        # No gap (it cannot violate), but the history goes on: a forklift
                        # closing in from afar has a closing speed the moment it comes near.
                        self._history(sid, hid).add(at, distance)
                if machine is not None and math.isfinite(machine[i]):
                    if machine[i] <= limit:
                        gaps.append(self._record(at, sid, MACHINE, machine[i]))
                    elif keep_far:
                        self._history(sid, MACHINE).add(at, machine[i])
        horizon = max(self.rule.window, self.rule.grace)
        for key in [k for k, s in self._pairs.items() if at - s.last_at > horizon]:
            del self._pairs[key]
        return gaps

    def _bottom_edges(self, hazards: list[Track], w: int, h: int) -> np.ndarray:
        if not hazards:
            return np.zeros((0, 2, 2))
        corners = np.array(
            [[[t.xyxy[0], t.xyxy[3]], [t.xyxy[2], t.xyxy[3]]] for t in hazards], dtype=np.float64
        )
        return self.plane.project(corners.reshape(-1, 2), w, h).reshape(-1, 2, 2)

    def _history(self, subject: int, hazard: int) -> Samples:
        samples = self._pairs.get((subject, hazard))
        if samples is None:
            samples = self._pairs[(subject, hazard)] = Samples(self.rule.window)
        return samples

    def _record(self, at: float, subject: int, hazard: int, distance: float) -> Gap:
        if self.rule.approaching is None:
            return Gap(subject, hazard, distance, None)  # no closing speed needed: no history
        samples = self._history(subject, hazard)
        samples.add(at, distance)
        rate = samples.rate()
        closing = None if rate is None else -float(rate[0])
        return Gap(subject, hazard, distance, closing)

    def _violates(self, gap: Gap) -> bool:
        if gap.distance > self.rule.max_distance.value:
            return False
        if self.rule.approaching is None:
            return True
        return gap.closing is not None and gap.closing >= self.rule.approaching.value

    def observe(self, tracked: TrackedFrame) -> list[Observation]:
        """Subjects too close to a hazard in this frame, in track order (nearest hazard each)."""
        nearest: dict[int, Gap] = {}
        # Only gaps within max_distance can violate; farther pairs (with `approaching`) still
        # extend their histories inside gaps(), without a closing speed being fitted.
        for gap in self.gaps(tracked, self.rule.max_distance.value):
            if self._violates(gap) and (
                gap.subject not in nearest or gap.distance < nearest[gap.subject].distance
            ):
                nearest[gap.subject] = gap
        if not nearest:
            return []
        by_id = {t.track_id: t for t in tracked.tracks}
        observations = []
        for person in [t for t in tracked.tracks if t.track_id in nearest]:
            subject = person.track_id
            gap = nearest[subject]
            ids: tuple[int, ...]
            if gap.hazard == MACHINE and self.machine is not None:
                what, ids, zone_id = f"machine zone {self.machine.id}", (subject,), self.machine.id
                confidence = float(person.confidence)
            else:
                hazard = by_id[gap.hazard]
                what, ids, zone_id = (
                    f"{hazard.label} #{hazard.track_id}",
                    (subject, gap.hazard),
                    None,
                )
                confidence = min(float(person.confidence), float(hazard.confidence))
            message = (
                f"{person.label} #{subject} {self.plane.distance_text(gap.distance)} from {what} "
                f"(min {self.plane.distance_text(self.rule.max_distance.value)})"
            )
            if self.rule.approaching is not None and gap.closing is not None:
                message += f", closing at {self.plane.speed_text(gap.closing)}"
            observations.append(
                Observation(
                    subject=subject,
                    track_ids=ids,
                    confidence=confidence,
                    message=message,
                    zone_id=zone_id,
                )
            )
        return observations
