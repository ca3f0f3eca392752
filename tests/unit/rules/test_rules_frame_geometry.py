"""FrameGeometry gives every rule the answers each kind used to compute on its own.

Sharing is only allowed if it changes no verdict, so these tests compare the shared answers with
the per-rule ones they replace (point-in-polygon per zone, box overlap per box, the track's own
foot and centre, the calibration's projection), on random tracks and awkward zones.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from rules_factories import H, W, frame, person

from safewatch.domain.geometry import Zone, points_in_polygon
from safewatch.domain.tracks import PPEState, Track
from safewatch.rules import Calibration
from safewatch.rules.frame_geometry import FrameGeometry, ZoneTable
from safewatch.rules.measure import PolygonEdges, segment_distances
from safewatch.rules.overlap import box_overlaps_polygon

ZONES = (
    Zone("square", "cam", ((0.1, 0.1), (0.4, 0.1), (0.4, 0.5), (0.1, 0.5))),
    # Concave, with a horizontal edge level with grid points (y 0.6 -> 300 px).
    Zone("ell", "cam", ((0.3, 0.3), (0.9, 0.3), (0.9, 0.6), (0.5, 0.6), (0.5, 0.9), (0.3, 0.9))),
    Zone("sliver", "cam", ((0.0, 0.0), (1.0, 0.0), (0.5, 0.02))),
    Zone("triangle", "cam", ((0.2, 0.8), (0.6, 0.2), (0.95, 0.95))),
)
CALIBRATION = Calibration.from_points(  # steep: its horizon is a quarter of the way down
    [[0.05, 0.95], [0.95, 0.95], [0.6, 0.4], [0.4, 0.4]], [[0, 0], [40, 0], [40, 25], [0, 25]]
)


def _tracks(seed: int, count: int = 60) -> list[Track]:
    """Random boxes, half of them on a 50 px grid so feet and centres land on zone edges."""
    rng = random.Random(seed)
    tracks = []
    for i in range(count):
        w, h = rng.uniform(10, 200), rng.uniform(10, 200)
        x, y = rng.uniform(-50, W + 50), rng.uniform(0, H + 50)
        if i % 2:
            x, y, w = round(x / 50) * 50, round(y / 50) * 50, round(w / 100) * 100 or 100
        label = rng.choice(["person", "person", "vehicle", "forklift"])
        ppe = {"hardhat": rng.choice(list(PPEState)), "vest": rng.choice(list(PPEState))}
        tracks.append(
            person(i + 1, (x, y), size=(w, h), label=label, **(ppe if label == "person" else {}))
        )
    return tracks


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("table", [True, False])
def test_zone_membership_is_point_in_polygon_per_zone(seed: int, table: bool) -> None:
    tracks = _tracks(seed)
    zones = ZoneTable(ZONES) if table else None
    everyone = list(range(len(tracks)))
    # The first frame learns which zones each anchor needs (each tested alone), the second tests
    # them stacked: both must give the per-zone answers.
    for geometry in (
        FrameGeometry(frame(0, tracks), zones),
        FrameGeometry(frame(0, tracks), zones),
    ):
        for zone in ZONES:
            polygon = zone.to_pixels(W, H)
            for anchor, attribute in (("feet", "foot"), ("centre", "centre")):
                points = np.array([getattr(t, attribute) for t in tracks])
                expected = np.flatnonzero(zone.contains(points, W, H)).tolist()
                assert geometry.in_zone(zone, anchor, everyone) == expected, (zone.id, anchor)
            boxes = [i for i, t in enumerate(tracks) if box_overlaps_polygon(t.xyxy, polygon)]
            assert geometry.in_zone(zone, "box", everyone) == boxes, zone.id
            some = everyone[::3]
            assert geometry.in_zone(zone, "box", some) == [i for i in boxes if i in some]
    if zones is not None:
        for anchor in ("feet", "centre"):
            stack = zones.stack(anchor)
            assert stack is not None and stack.zones == ZONES


@pytest.mark.parametrize("table", [True, False])
def test_a_person_cut_off_by_the_frame_border_is_in_a_zone_drawn_to_that_border(
    table: bool,
) -> None:
    """Boxes are clipped to the frame, so the nearest person's feet are at y = H exactly; ray
    casting leaves a zone's bottom and right edges outside, so a zone drawn to y = 1.0 (the
    docs' loading bay) never held them. The same for the right border."""
    corner = Zone("corner", "cam", ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)))
    tracks = [
        person(1, (700.0, float(H))),  # cut off at the bottom
        person(2, (float(W), 400.0), size=(0.0, 100.0)),  # a zero-width box on the right border
        person(3, (700.0, H - 1.0)),
        person(4, (400.0, float(H))),  # at the bottom, left of the zone
    ]
    zones = ZoneTable([corner]) if table else None
    for geometry in (
        FrameGeometry(frame(0, tracks), zones),
        FrameGeometry(frame(0, tracks), zones),
    ):
        assert geometry.in_zone(corner, "feet", [0, 1, 2, 3]) == [0, 1, 2]
    points = np.array([t.foot for t in tracks])
    assert corner.contains(points, W, H).tolist() == [True, True, True, False]


def test_each_anchor_stacks_only_the_zones_asked_about_and_a_reload_twin_shares_them() -> None:
    tracks = _tracks(7)
    zones = ZoneTable(ZONES[:3])
    everyone = list(range(len(tracks)))
    twin = Zone("square", "cam", ZONES[0].polygon)  # a reload builds equal, not identical, zones
    elsewhere = ZONES[3]  # not the camera's: always tested alone
    for _ in range(3):
        geometry = FrameGeometry(frame(0, tracks), zones)
        for zone, anchor in ((ZONES[1], "centre"), (ZONES[0], "feet"), (twin, "centre")):
            points = geometry.points(anchor)
            expected = np.flatnonzero(points_in_polygon(points, zone.to_pixels(W, H))).tolist()
            assert geometry.in_zone(zone, anchor, everyone) == expected
        feet = np.array([t.foot for t in tracks])
        expected = np.flatnonzero(elsewhere.contains(feet, W, H)).tolist()
        assert geometry.in_zone(elsewhere, "feet", everyone) == expected
    centre, feet_stack = zones.stack("centre"), zones.stack("feet")
    assert centre is not None and centre.zones == (ZONES[1], ZONES[0])
    assert feet_stack is not None and feet_stack.zones == (ZONES[0],)
    assert zones.stack("box") is None


def test_an_empty_table_and_an_empty_frame() -> None:
    geometry = FrameGeometry(frame(0, []), ZoneTable(()))
    assert geometry.in_zone(ZONES[0], "feet", []) == []
    assert geometry.labelled(("person",)) == [] and geometry.labelled(None) == []
    assert geometry.points("feet").shape == (0, 2)
    assert geometry.floor(CALIBRATION, "feet").shape == (0, 2)


def test_points_are_the_tracks_own_to_the_last_bit() -> None:
    tracks = _tracks(3)
    geometry = FrameGeometry(frame(0, tracks))
    assert geometry.points("feet").tolist() == [list(t.foot) for t in tracks]
    assert geometry.points("centre").tolist() == [list(t.centre) for t in tracks]
    assert geometry.points("bottom_left").tolist() == [[t.xyxy[0], t.xyxy[3]] for t in tracks]
    assert geometry.points("bottom_right").tolist() == [[t.xyxy[2], t.xyxy[3]] for t in tracks]
    with pytest.raises(ValueError, match="unknown point 'top'"):
        geometry.points("top")


def test_floor_points_are_the_calibrations_projection() -> None:
    tracks = _tracks(4)
    geometry = FrameGeometry(frame(0, tracks))
    for name, attribute in (("feet", "foot"), ("centre", "centre")):
        expected = CALIBRATION.to_floor(np.array([getattr(t, attribute) for t in tracks]), W, H)
        # One matrix product for all points: equal up to the last bit of the product.
        np.testing.assert_allclose(
            geometry.floor(CALIBRATION, name), expected, rtol=1e-12, atol=1e-12
        )
    assert np.isnan(geometry.floor(CALIBRATION, "feet")).any(), "some feet above the horizon"
    assert geometry.floor(None, "feet") is geometry.points("feet")  # pixels: no projection


def test_labels_and_missing_items() -> None:
    tracks = _tracks(5)
    geometry = FrameGeometry(frame(0, tracks))
    people = [i for i, t in enumerate(tracks) if t.label == "person"]
    assert geometry.labelled(("person",)) == people
    assert geometry.labelled(("forklift", "vehicle")) == [
        i for i, t in enumerate(tracks) if t.label != "person"
    ]
    assert geometry.labelled(()) == []
    assert geometry.labelled(None) == list(range(len(tracks)))
    absent = PPEState.ABSENT
    for require in (("hardhat",), ("vest", "hardhat")):
        expected = [
            (i, tuple(item for item in require if tracks[i].attributes.get(item) == absent))
            for i in people
        ]
        assert geometry.missing(require, ("person",)) == [(i, m) for i, m in expected if m]


def test_first_listed_zone_wins() -> None:
    inside_both = person(1, (0.35 * W, 0.4 * H))  # in the square and in the ell
    only_ell = person(2, (0.8 * W, 0.5 * H))
    nowhere = person(3, (0.95 * W, 0.1 * H))
    geometry = FrameGeometry(frame(0, [inside_both, only_ell, nowhere]), ZoneTable(ZONES))
    assert geometry.first_zone(ZONES[:2], "feet", [0, 1, 2]) == [ZONES[0], ZONES[1], None]
    assert geometry.first_zone(ZONES[1::-1], "feet", [0, 1, 2]) == [ZONES[1], ZONES[1], None]


@pytest.mark.parametrize("seed", range(4))
def test_polygon_edges_are_segment_distances_and_point_in_polygon(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = np.round(rng.uniform(-2, 12, (200, 2)))  # grid: on vertices and edges too
    points[:3] = np.nan
    for zone in ZONES:
        polygon = zone.to_pixels(10, 10)
        edges = segment_distances(points, polygon, np.roll(polygon, -1, axis=0)).min(axis=1)
        inside = points_in_polygon(points, polygon) & np.isfinite(points).all(axis=1)
        expected = np.where(inside, 0.0, edges)
        np.testing.assert_array_equal(PolygonEdges(polygon).distances(points), expected)
