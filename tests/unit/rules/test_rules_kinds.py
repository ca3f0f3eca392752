"""The two rule kinds on single frames: who violates, with which message and confidence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_factories import RIGHT_HALF, H, W, frame, person, rule

from safewatch.config.rules import PPERule, ZoneIntrusionRule
from safewatch.domain.geometry import Zone
from safewatch.domain.tracks import PPEState, Track
from safewatch.rules.ppe import observe_ppe
from safewatch.rules.zone_intrusion import observe_zone_intrusion

ABSENT, PRESENT, UNKNOWN = PPEState.ABSENT, PPEState.PRESENT, PPEState.UNKNOWN
ZONE = Zone("press", "cam", RIGHT_HALF)


def _ppe(**fields: object) -> PPERule:
    built = rule(id="ppe", kind="ppe", **{"require": ["hardhat"], **fields})
    assert isinstance(built, PPERule)
    return built


def _zone_rule(**fields: object) -> ZoneIntrusionRule:
    built = rule(id="zone", kind="zone_intrusion", zone="press", **fields)
    assert isinstance(built, ZoneIntrusionRule)
    return built


@pytest.mark.parametrize(
    ("require", "ppe", "message"),
    [
        (["hardhat"], {"hardhat": ABSENT}, "person #4 without hardhat"),
        (["hardhat"], {"hardhat": UNKNOWN}, None),
        (["hardhat"], {"hardhat": PRESENT}, None),
        (["hardhat"], {}, None),
        (
            ["hardhat", "vest"],
            {"hardhat": ABSENT, "vest": ABSENT},
            "person #4 without hardhat and vest",
        ),
        (["hardhat", "vest"], {"hardhat": PRESENT, "vest": ABSENT}, "person #4 without vest"),
        (["vest"], {"hardhat": ABSENT}, None),
    ],
)
def test_ppe_only_absent_violates(
    require: list[str], ppe: dict[str, PPEState], message: str | None
) -> None:
    observations = observe_ppe(_ppe(require=require), frame(0, [person(4, **ppe)]), [])
    assert [o.message for o in observations] == ([message] if message else [])


def test_ppe_confidence_is_the_absent_items() -> None:
    track = Track(
        4,
        "person",
        (0, 0, 10, 10),
        0.9,
        {"hardhat": ABSENT, "vest": PRESENT},
        {"hardhat": 0.61, "vest": 0.99},
    )
    (observation,) = observe_ppe(_ppe(require=["hardhat", "vest"]), frame(0, [track]), [])
    assert observation.confidence == pytest.approx(0.61)
    assert observation.track_ids == (4,)


def test_ppe_objects_filter_labels() -> None:
    tracks = [person(1, hardhat=ABSENT), person(2, label="vehicle", hardhat=ABSENT)]
    assert [o.subject for o in observe_ppe(_ppe(), frame(0, tracks), [])] == [1]


def test_ppe_zone_scope_uses_the_foot_point() -> None:
    tracks = [
        person(1, (400, 400), size=(400, 100), hardhat=ABSENT),  # box reaches in, foot outside
        person(2, (600, 400), hardhat=ABSENT),
    ]
    (observation,) = observe_ppe(_ppe(zones=["press"]), frame(0, tracks), [ZONE])
    assert (observation.subject, observation.zone_id) == (2, "press")
    assert observation.message == "person #2 without hardhat in zone press"


# Box 100 x 200 px; the foot is at (x, 450), the centre at (x, 350).
@pytest.mark.parametrize(
    ("anchor", "foot_x", "inside"),
    [
        ("feet", 501, True),
        ("feet", 499, False),
        ("centre", 501, True),
        ("center", 499, False),
        ("box", 449, False),  # right edge at 499, zone starts at 500
        ("box", 450, True),  # touching counts
        ("box", 451, True),
        ("box", 400, False),
    ],
)
def test_zone_anchor(anchor: str, foot_x: float, inside: bool) -> None:
    track = person(7, (foot_x, 450), size=(100, 200))
    observations = observe_zone_intrusion(_zone_rule(anchor=anchor), frame(0, [track]), ZONE)
    assert bool(observations) is inside
    if inside:
        assert observations[0].message == "person #7 in zone press"
        assert observations[0].zone_id == "press"
        assert observations[0].confidence == pytest.approx(0.9)


def test_feet_and_centre_anchors_differ() -> None:
    top = Zone("top", "cam", ((0, 0), (1, 0), (1, 0.5), (0, 0.5)))  # y < 250 px
    track = person(1, (500, 300), size=(40, 120))  # centre y = 240, foot y = 300
    assert observe_zone_intrusion(_zone_rule(anchor="centre"), frame(0, [track]), top)
    assert not observe_zone_intrusion(_zone_rule(anchor="feet"), frame(0, [track]), top)


@pytest.mark.parametrize(
    ("x", "y", "inside"),
    [
        (0.5 + 1e-6, 0.5, True),
        (0.5 - 1e-6, 0.5, False),
        (0.999999, 0.5, True),
        (0.75, 0.999999, True),
        (0.75, 0.000001, True),
    ],
)
def test_polygon_edges(x: float, y: float, inside: bool) -> None:
    track = person(1, (x * W, y * H), size=(2, 2))
    assert bool(observe_zone_intrusion(_zone_rule(), frame(0, [track]), ZONE)) is inside


def test_zone_objects_filter_labels() -> None:
    tracks = [person(1, (700, 400)), person(2, (700, 400), label="vehicle")]
    observed = observe_zone_intrusion(_zone_rule(objects=["vehicle"]), frame(0, tracks), ZONE)
    assert [o.subject for o in observed] == [2]


_unit = st.floats(0.05, 0.95)


@settings(max_examples=200, deadline=None)
@given(
    x1=_unit,
    y1=_unit,
    dx=st.floats(0.01, 0.5),
    dy=st.floats(0.01, 0.5),
    fx=st.floats(0.001, 0.999),
    fy=st.floats(0.001, 0.999),
    width=st.integers(64, 4096),
    height=st.integers(64, 4096),
)
def test_point_inside_stays_inside_after_normalise(
    x1: float, y1: float, dx: float, dy: float, fx: float, fy: float, width: int, height: int
) -> None:
    """A pixel point inside a pixel polygon is inside the normalised zone, denormalised again."""
    px = np.array([[x1, y1], [x1 + dx, y1], [x1 + dx, y1 + dy], [x1, y1 + dy]]) * [width, height]
    point = np.array(
        [[px[0, 0] + fx * (px[1, 0] - px[0, 0]), px[0, 1] + fy * (px[2, 1] - px[0, 1])]]
    )
    normalised = tuple((float(x) / width, float(y) / height) for x, y in px)
    zone = Zone("z", "cam", normalised)
    assert bool(zone.contains(point, width, height)[0])
