"""Camera calibration: homography recovery, errors, the site's calibration block, metres at load."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safewatch.config.loader import load_site
from safewatch.config.ruleset import load_rules
from safewatch.config.site import SiteConfig
from safewatch.domain.events import Phase
from safewatch.domain.tracks import Track, TrackedFrame
from safewatch.errors import ConfigError
from safewatch.rules import RuleEngine
from safewatch.rules.calibration import (
    Calibration,
    CalibrationError,
    apply_homography,
    calibrations_from_site,
    solve_homography,
)

# A camera looking down a floor at an angle: normalised image -> floor metres. Built from a
# known floor-to-image mapping so every expected value is computed, not copied.
FLOOR_TO_IMAGE = np.array([[0.08, 0.01, 0.1], [0.0, -0.02, 0.9], [0.0, 0.08, 1.0]])
FLOOR = np.array([[0.0, 0.0], [8.0, 0.0], [8.0, 6.0], [0.0, 6.0], [4.0, 3.0], [2.0, 5.0]])
IMAGE = apply_homography(FLOOR_TO_IMAGE, FLOOR)
W, H = 1280, 720


def test_four_points_recover_the_mapping_exactly() -> None:
    calibration = Calibration.from_points(IMAGE[:4], FLOOR[:4])
    assert calibration.rms_error < 1e-9
    # The two points not used for solving land where they should.
    pixels = IMAGE[4:] * [W, H]
    np.testing.assert_allclose(calibration.to_floor(pixels, W, H), FLOOR[4:], atol=1e-9)


def test_more_points_report_their_reprojection_error() -> None:
    exact = Calibration.from_points(IMAGE, FLOOR)
    assert exact.max_error < 1e-9
    moved = FLOOR.copy()
    moved[5] += [0.3, 0.0]  # one floor point measured 30 cm off
    calibration = Calibration.from_points(IMAGE, moved)
    errors = calibration.errors()
    assert int(errors.argmax()) == 5
    assert 0.05 < calibration.max_error < 0.3
    assert calibration.rms_error == pytest.approx(float(np.sqrt(np.mean(errors**2))))


@pytest.mark.parametrize(
    ("image", "floor", "message"),
    [
        (IMAGE[:3], FLOOR[:3], "at least 4 point pairs"),
        (IMAGE[:4], FLOOR[:5], "4 image points but 5 floor points"),
        ([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.4, 0.4]], FLOOR[:4], "do not fix a mapping"),
        ([[0.1, 0.1]] * 4, FLOOR[:4], "all points are the same"),
        (IMAGE[:4], [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], "do not fix a mapping"),
        ([[0.1, 0.1], [0.2], [0.3, 0.3], [0.4, 0.4]], FLOOR[:4], "list of \\[x, y\\] pairs"),
        ([[0.1, np.nan], [0.2, 0.5], [0.3, 0.3], [0.4, 0.4]], FLOOR[:4], "finite"),
        # A repeated pair fitted itself: four points whose zero error looked like a check.
        (
            [*IMAGE[:4].tolist(), IMAGE[0].tolist()],
            [*FLOOR[:4].tolist(), FLOOR[0].tolist()],
            "image point 4 \\[.*\\] repeats point 0: each pair must be a different point",
        ),
        (IMAGE[:5], [*FLOOR[:4].tolist(), [8.0, 6.0]], "floor point 4 \\[8, 6\\] repeats point 2"),
        # The last two floor points typed the other way round: a bow-tie on the floor only.
        (
            [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4]],
            [[0, 0], [8, 0], [0, 20], [8, 20]],
            "the image corners 0-1-2-3 draw a quadrilateral but the floor corners 0-1-2-3 draw "
            "a bow-tie \\(edge 1-2 crosses edge 3-0: corners 2 and 3 or 0 and 1 swapped\\?\\)",
        ),
        # A far corner typed short of the near edge: a dent the picture does not have.
        (
            [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4]],
            [[0, 0], [8, 0], [4, 1], [0, 20]],
            "draw a quadrilateral dented in at corner 2",
        ),
        # Points off the floor still straddle the horizon.
        (
            [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4], [0.5, 0.1]],
            [[0, 0], [8, 0], [8, 20], [0, 20], [4, -5]],
            "both sides of the horizon; every point must be on the floor",
        ),
    ],
)
def test_unusable_points(image: object, floor: object, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        Calibration.from_points(image, floor)  # type: ignore[arg-type]


def test_points_above_the_horizon_have_no_floor_position() -> None:
    calibration = Calibration.from_points(IMAGE, FLOOR)
    # This camera's horizon is at y = -0.25 (normalised): anything above it is sky.
    sky = (0.5 * W, -0.5 * H)
    assert np.isnan(calibration.to_floor([sky], W, H)).all()
    assert np.isnan(calibration.floor_distance(sky, (0.5 * W, 0.9 * H), W, H))
    assert np.isfinite(calibration.to_floor([(0.5 * W, -0.2 * H)], W, H)).all()


DOCK_IMAGE = [[0.12, 0.91], [0.88, 0.93], [0.71, 0.42], [0.30, 0.41], [0.50, 0.60]]
DOCK_FLOOR = [[0, 0], [8, 0], [8, 20], [0, 20], [4, 9.6]]


def test_image_y_measured_from_the_bottom_is_warned_about() -> None:
    """y -> 1 - y fits as exactly (zero error) but puts the horizon below the points, and
    measured two feet 100 px apart at the bottom of a 1080p frame 3.3 m apart, not 0.5 m. A
    warning, not a refusal: an upside-down camera has the same layout and measures right."""
    upright = Calibration.from_points(DOCK_IMAGE, DOCK_FLOOR)
    assert upright.warnings == ()
    flipped = [[x, 1.0 - y] for x, y in DOCK_IMAGE]
    (warning,) = Calibration.from_points(flipped, DOCK_FLOOR).warnings
    assert "were these measured from the bottom" in warning and "upside down" in warning
    # Straight down there is no perspective: upside down is a mirror image, whose distances
    # are right, so it is not judged.
    square = [[0, 0], [1, 0], [1, 1], [0, 1]]
    top_down = Calibration.from_points(
        [[x, 1 - y] for x, y in square], [[0, 0], [8, 0], [8, 5], [0, 5]]
    )
    assert top_down.warnings == ()


def test_a_sideways_camera_with_a_low_horizon_is_only_warned_about() -> None:
    """A camera turned sideways (its horizon runs down the picture) is not refused for a
    horizon that also leans toward the bottom; the doubt is a warning."""
    centre = np.array([0.5, 0.5])
    turn = np.radians(120.0)  # the dock's picture turned: its horizon now left and a bit below
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    image = (np.array(DOCK_IMAGE) - centre) * 0.6 @ rotation.T + centre
    calibration = Calibration.from_points(image, DOCK_FLOOR)
    gx, gy, _ = calibration.homography[2]
    assert abs(gx) > abs(gy) > 0 > gy
    assert len(calibration.warnings) == 1
    assert "measured from the bottom?" in calibration.warnings[0]


def test_the_horizon_crossing_the_picture() -> None:
    assert Calibration.from_points(DOCK_IMAGE, DOCK_FLOOR).horizon() is None  # above it
    raised = Calibration.from_points(  # looking far down a yard: 40 m in the top 60 %
        [[0.1, 0.9], [0.9, 0.9], [0.6, 0.4], [0.4, 0.4]], [[0, 0], [8, 0], [8, 40], [0, 40]]
    )
    crossing = raised.horizon()
    assert crossing is not None
    (x0, y0), (x1, y1) = crossing
    assert (x0, x1) == (0.0, 1.0)
    assert y0 == pytest.approx(y1) and 0.2 < y0 < 0.4
    # Just below the horizon is floor, just above it is not.
    assert np.isfinite(raised.to_floor([[0.5, y0 + 0.01]], 1, 1)).all()
    assert np.isnan(raised.to_floor([[0.5, y0 - 0.01]], 1, 1)).all()


def test_site_file_with_image_y_from_the_bottom_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        SITE.replace(
            "[[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4]%s]",
            "[[0.1, 0.1], [0.9, 0.1], [0.7, 0.6], [0.3, 0.6]]",
        ).replace("%s", ""),
        encoding="utf-8",
    )
    site = load_site(path)  # an upside-down camera has this layout too
    calibrations_from_site(site.config)  # as serve and audit build them: the doubt is logged
    assert "camera yard: calibration: the horizon of these points lies below" in caplog.text
    assert "normalised y is 0 at the top of the picture" in caplog.text


def test_distances_and_scale() -> None:
    calibration = Calibration.from_points(IMAGE, FLOOR)
    a, b = IMAGE[0] * [W, H], IMAGE[1] * [W, H]
    assert calibration.floor_distance(tuple(a), tuple(b), W, H) == pytest.approx(8.0)
    # Far from the camera a pixel covers more floor than near it.
    near = calibration.metres_per_pixel(tuple(IMAGE[0] * [W, H]), W, H)
    far = calibration.metres_per_pixel(tuple(IMAGE[3] * [W, H]), W, H)
    assert far > near > 0


def test_solve_homography_is_scaled_to_positive_w() -> None:
    h = solve_homography(FLOOR, IMAGE)
    assert h[2, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(h, FLOOR_TO_IMAGE / FLOOR_TO_IMAGE[2, 2], atol=1e-9)


@given(
    x=st.floats(min_value=0.05, max_value=0.95),
    y=st.floats(min_value=0.35, max_value=0.95),
    width=st.sampled_from([640, 1280, 1920]),
)
@settings(max_examples=60, deadline=None)
def test_pixels_to_metres_and_back(x: float, y: float, width: int) -> None:
    calibration = Calibration.from_points(IMAGE, FLOOR)
    height = width * 9 // 16
    pixel = np.array([[x * width, y * height]])
    floor = calibration.to_floor(pixel, width, height)
    assert np.isfinite(floor).all()
    np.testing.assert_allclose(calibration.to_image(floor, width, height), pixel, atol=1e-6)
    # The same picture point at another resolution is the same floor point.
    np.testing.assert_allclose(
        calibration.to_floor(pixel * 2, width * 2, height * 2), floor, atol=1e-9
    )
    # And the synthetic ground truth agrees.
    truth = apply_homography(np.linalg.inv(FLOOR_TO_IMAGE), [[x, y]])
    np.testing.assert_allclose(floor, truth, atol=1e-6)


SITE = """\
version: 1
models:
  coco: {path: m.onnx}
cameras:
  yard:
    source: a.mp4
    models: [coco]
    calibration:
      image: [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4]%s]
      floor: [[0, 0], [10, 0], [10, 20], [0, 20]%s]
  dock:
    source: b.mp4
    models: [coco]
"""


def _site(tmp_path: Path, image_extra: str = "", floor_extra: str = "") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE % (image_extra, floor_extra), encoding="utf-8")
    return path


def test_site_calibration_block_loads(tmp_path: Path) -> None:
    loaded = load_site(_site(tmp_path))
    calibrations = calibrations_from_site(loaded.config)
    assert set(calibrations) == {"yard"}
    corner = calibrations["yard"].to_floor([[0.9 * 640, 0.9 * 360]], 640, 360)
    np.testing.assert_allclose(corner, [[10.0, 0.0]], atol=1e-9)


@pytest.mark.parametrize(
    ("image_extra", "floor_extra", "message"),
    [
        ("", ", [5, 5]", "site.yaml:8: cameras.yard.calibration: 4 image points but 5 floor"),
        (
            ", [1.2, 0.5]",
            ", [5, 5]",
            "site.yaml:9: cameras.yard.calibration.image: point [1.2, 0.5] is not normalised",
        ),
        (  # pixels of a 1920 x 1080 picture
            ", [960, 648]",
            ", [5, 5]",
            "point [960.0, 648.0] is not normalised (0 <= x, y <= 1): divide x by the frame "
            "width and y by its height",
        ),
        # A fifth point far from where the other four put it (5, 6.67).
        (", [0.5, 0.65]", ", [8, 10]", "site.yaml:8: cameras.yard.calibration: reprojection"),
    ],
)
def test_site_calibration_errors(
    tmp_path: Path, image_extra: str, floor_extra: str, message: str
) -> None:
    path = _site(tmp_path, image_extra, floor_extra)
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert message in str(info.value).replace(str(path), "site.yaml")


def test_a_bow_tie_of_corners_is_refused_naming_the_camera_and_corners(tmp_path: Path) -> None:
    """Four corners, the two far ones typed the other way round on the floor: the outline
    crosses itself there and not in the picture. Refused before, but as "the points lie on both
    sides of the horizon", which named neither the corners nor the shape; now both."""
    path = tmp_path / "site.yaml"
    path.write_text(
        SITE.replace("[10, 20], [0, 20]%s", "[0, 20], [10, 20]%s") % ("", ""), encoding="utf-8"
    )
    with pytest.raises(ConfigError) as info:
        load_site(path)
    message = str(info.value).replace(str(path), "site.yaml")
    assert "site.yaml:8: cameras.yard.calibration: " in message
    assert "floor corners 0-1-2-3 draw a bow-tie (edge 1-2 crosses edge 3-0" in message
    assert "corners 2 and 3 or 0 and 1 swapped?" in message


@pytest.mark.parametrize(
    "floor",
    [
        [[0, 20], [10, 20], [10, 0], [0, 0]],  # Y toward the camera: a mirrored floor frame
        [[0, 0], [10, 0], [0, 20], [10, 20]],  # a bow-tie, but listed so in the picture too
    ],
)
def test_corners_listed_alike_in_both_lists_load(floor: list[list[float]]) -> None:
    """The shape check compares the two outlines, not their direction: a floor measured in the
    other handedness (any orientation is allowed) turns every corner the other way, and stays."""
    image = [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4]]
    if floor[2] == [0, 20]:
        image[2], image[3] = image[3], image[2]
    calibration = Calibration.from_points(image, floor)
    assert calibration.max_error < 1e-9


def test_a_small_max_error_refuses_a_sloppy_point(tmp_path: Path) -> None:
    ok = SiteConfig.model_validate(
        {
            "models": {"coco": {"path": "m.onnx"}},
            "cameras": {
                "yard": {
                    "source": "a.mp4",
                    "models": ["coco"],
                    "calibration": {
                        "image": [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4], [0.5, 0.65]],
                        "floor": [[0, 0], [10, 0], [10, 20], [0, 20], [5, 6.9]],
                    },
                }
            },
        }
    )
    assert ok.cameras["yard"].calibration is not None
    strict = ok.cameras["yard"].calibration.model_dump() | {"max_error": 0.01}
    with pytest.raises(ValueError, match=r"exceeds max_error 0\.01 m"):
        type(ok.cameras["yard"].calibration).model_validate(strict)


RULES = """\
version: 1
rules:
  - id: forklift-distance
    kind: proximity
    objects: [forklift]
    max_distance: 2m
  - id: yard-speed
    kind: speed
    cameras: [yard]
    max_speed: 10km/h
  - id: pixel-distance
    kind: proximity
    objects: [forklift]
    max_distance: 150px
"""


def test_rules_in_metres_need_calibrated_cameras(tmp_path: Path) -> None:
    site = load_site(_site(tmp_path)).config
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(textwrap.dedent(RULES), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rules(rules_path, site)
    text = str(info.value).replace(str(tmp_path) + "/", "")
    assert text == (
        "rules.yaml:6: rules[0].max_distance: rule 'forklift-distance' measures in metres but "
        "runs on every camera, including uncalibrated camera 'dock': add a `calibration` block "
        "to the camera in the site file, list only calibrated `cameras`, or use pixels (px)"
    )
    # Without the site nothing can be checked; with only the calibrated camera it loads.
    assert len(load_rules(rules_path).rules) == 3
    scoped = RULES.replace("max_distance: 2m", "max_distance: 2m\n    cameras: [yard]")
    rules_path.write_text(scoped, encoding="utf-8")
    assert [r.id for r in load_rules(rules_path, site).rules] == [
        "forklift-distance",
        "yard-speed",
        "pixel-distance",
    ]


# A raised camera looking far down a yard: the horizon crosses the picture at y ~ 0.22.
HORIZON_SITE = SITE.replace(
    "[[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4]%s]",
    "[[0.1, 0.9], [0.9, 0.9], [0.6, 0.4], [0.4, 0.4]]",
).replace("[[0, 0], [10, 0], [10, 20], [0, 20]%s]", "[[0, 0], [8, 0], [8, 40], [0, 40]]")

PRESS_RULES = """\
version: 1
zones:
  press: {camera: yard, polygon: %s}
rules:
  - id: press-distance
    kind: proximity
    machine_zone: press
    max_distance: 2m
"""


def _press_rules(tmp_path: Path, polygon: str) -> tuple[SiteConfig, Path]:
    site_path = tmp_path / "site.yaml"
    site_path.write_text(HORIZON_SITE, encoding="utf-8")
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(PRESS_RULES % polygon, encoding="utf-8")
    return load_site(site_path).config, rules_path


def test_a_machine_zone_above_the_horizon_is_refused(tmp_path: Path) -> None:
    # The press's outline in the picture: its top corners (y = 0.1) are above the horizon, with
    # no floor position; the rule would measure nothing to it and never fire.
    site, rules_path = _press_rules(tmp_path, "[[0.4, 0.1], [0.6, 0.1], [0.6, 0.6], [0.4, 0.6]]")
    with pytest.raises(ConfigError) as info:
        load_rules(rules_path, site)
    text = str(info.value).replace(str(tmp_path) + "/", "")
    assert text == (
        "rules.yaml:7: rules[0].machine_zone: rule 'press-distance' measures in metres to machine "
        "zone 'press', but its corners [0.4, 0.1], [0.6, 0.1] are at or above the horizon of "
        "camera 'yard''s calibration, where nothing is on the floor, so the rule could never "
        "measure to the machine: draw the zone round the machine's footprint on the floor"
    )
    assert len(load_rules(rules_path).rules) == 1  # without the site, nothing to check


def test_a_machine_footprint_below_the_horizon_loads_and_fires(tmp_path: Path) -> None:
    site, rules_path = _press_rules(tmp_path, "[[0.4, 0.5], [0.6, 0.5], [0.6, 0.6], [0.4, 0.6]]")
    engine = RuleEngine(load_rules(rules_path, site), calibrations=calibrations_from_site(site))
    worker = Track(1, "person", (480.0, 350.0, 520.0, 550.0), 0.9)  # feet on the footprint
    events = engine.evaluate(TrackedFrame("yard", 0, 0.0, 0.0, 1000, 1000, (worker,)))
    assert [(e.rule_id, e.phase, e.zone_id) for e in events] == [
        ("press-distance", Phase.STARTED, "press")
    ]
