"""``safewatch calibrate`` as a user runs it: the homography and its reprojection error, checked
against OpenCV's solver, and clear refusals of calibrations that cannot work."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_cli_audit import safewatch

# A camera looking down a 8 m x 12 m bay; the fifth point was measured 10 cm off.
IMAGE = [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4], [0.5, 0.6]]
FLOOR = [[0.0, 0.0], [8.0, 0.0], [8.0, 12.0], [0.0, 12.0], [4.0, 5.3]]


def site(folder: Path, calibration: str, *, name: str = "site.yaml") -> Path:
    path = folder / name
    path.write_text(
        "version: 1\n"
        "models:\n"
        "  coco: {path: model.onnx}\n"
        "cameras:\n"
        "  yard: {source: a.mp4, models: [coco]}\n"
        "  dock:\n"
        "    source: b.mp4\n"
        "    models: [coco]\n"
        f"{calibration}"
    )
    return path


def calibration_block(image: list[list[float]], floor: list[list[float]]) -> str:
    return f"    calibration:\n      image: {image}\n      floor: {floor}\n"


def test_prints_homography_and_error_that_agree_with_opencv(tmp_path: Path) -> None:
    result = safewatch("calibrate", "--config", site(tmp_path, calibration_block(IMAGE, FLOOR)))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "camera dock: 5 point pairs" in text
    assert "camera yard" not in text, "uncalibrated cameras are not listed"
    match = re.search(r"mean ([0-9.]+) m, max ([0-9.]+) m \(rms ([0-9.]+) m", text)
    assert match is not None, text
    mean, worst, _ = map(float, match.groups())
    # Independent reference: OpenCV's least-squares homography on the same pairs.
    h, _ = cv2.findHomography(np.array(IMAGE), np.array(FLOOR), 0)
    mapped = cv2.perspectiveTransform(np.array([IMAGE]), h)[0]
    errors = np.linalg.norm(mapped - np.array(FLOOR), axis=1)
    assert worst > 0.02, "the mistyped point must show"
    assert mean == pytest.approx(errors.mean(), abs=0.01)
    assert worst == pytest.approx(errors.max(), abs=0.01)
    rows = [line for line in text.splitlines() if re.match(r"^\s+[0-4]\s+0\.\d{3}, 0\.\d{3}", line)]
    assert len(rows) == 5
    printed = np.array(
        [[float(v) for v in re.findall(r"-?\d+\.\d+", row)[:2]] for row in rows], dtype=float
    )
    np.testing.assert_allclose(printed, IMAGE, atol=1e-3)
    # The homography printed is ours, up to scale the same mapping as OpenCV's.
    numbers = re.findall(r"-?\d+\.\d*(?:e[-+]\d+)?", text.split("homography")[1].split("reproj")[0])
    ours = np.array([float(n) for n in numbers]).reshape(3, 3)
    np.testing.assert_allclose(ours / ours[2, 2], h / h[2, 2], rtol=0.05, atol=0.05)
    assert "note:" not in text
    # Where the horizon is: above the picture, where an upright camera has it.
    match = re.search(r"horizon: above the picture \(y = (-[0-9.]+) at its middle\)", text)
    assert match is not None, text
    a, b, c = (h / h[2, 2])[2]
    assert float(match.group(1)) == pytest.approx(-(c + a * 0.5) / b, abs=0.01)


def test_the_horizon_crossing_the_picture_is_shown(tmp_path: Path) -> None:
    image = [[0.1, 0.9], [0.9, 0.9], [0.6, 0.4], [0.4, 0.4]]  # 40 m deep in the top 60 %
    floor = [[0.0, 0.0], [8.0, 0.0], [8.0, 40.0], [0.0, 40.0]]
    result = safewatch("calibrate", "-c", site(tmp_path, calibration_block(image, floor)))
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"horizon: crosses the picture from x, y = 0\.000, 0\.\d{3} to 1\.000, 0\.\d{3}",
        result.stdout,
    ), result.stdout


def test_image_y_measured_from_the_bottom_is_warned_about(tmp_path: Path) -> None:
    flipped = [[x, round(1.0 - y, 3)] for x, y in IMAGE]
    path = site(tmp_path, calibration_block(flipped, FLOOR))
    result = safewatch("calibrate", "-c", path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "normalised y is 0 at the top of the picture; were these measured from the bottom?" in (
        output
    )


def test_four_points_fit_exactly_and_say_so(tmp_path: Path) -> None:
    result = safewatch(
        "calibrate", "-c", site(tmp_path, calibration_block(IMAGE[:4], FLOOR[:4])),
        "--camera", "dock",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mean 0.000 m, max 0.000 m" in result.stdout
    assert "add a fifth point" in result.stdout


def test_fewer_than_four_pairs_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = site(tmp_path, calibration_block(IMAGE[:3], FLOOR[:3]))
    result = safewatch("calibrate", "-c", path)
    assert result.returncode == 2
    assert f"{path}:10: cameras.dock.calibration.image:" in result.stderr
    assert "at least 4" in result.stderr
    assert "Traceback" not in result.stderr


def test_points_on_one_line_are_refused(tmp_path: Path) -> None:
    image = [[0.1, 0.9], [0.5, 0.9], [0.9, 0.9], [0.5, 0.4]]
    floor = [[0.0, 0.0], [4.0, 0.0], [8.0, 0.0], [4.0, 12.0]]
    path = site(tmp_path, calibration_block(image, floor))
    result = safewatch("calibrate", "-c", path)
    assert result.returncode == 2
    assert f"{path}:9: cameras.dock.calibration:" in result.stderr
    assert "three or more on one line" in result.stderr


def test_a_camera_without_calibration(tmp_path: Path) -> None:
    path = site(tmp_path, calibration_block(IMAGE, FLOOR))
    result = safewatch("calibrate", "-c", path, "--camera", "yard")
    assert result.returncode == 2
    assert "camera 'yard' has no `calibration` block" in result.stderr
    result = safewatch("calibrate", "-c", site(tmp_path, "", name="none.yaml"))
    assert result.returncode == 2
    assert "no camera has a `calibration` block" in result.stderr


def test_a_repeated_pair_is_refused_not_counted(tmp_path: Path) -> None:
    """Five rows, one a copy of another, are four points: they fit exactly, and were shown as
    a checked five-point calibration."""
    path = site(tmp_path, calibration_block([*IMAGE[:4], IMAGE[0]], [*FLOOR[:4], FLOOR[0]]))
    result = safewatch("calibrate", "-c", path)
    assert result.returncode == 2
    assert (
        f"{path}:9: cameras.dock.calibration: image point 4 [0.1, 0.9] repeats point 0"
        in result.stderr
    )


def test_the_sample_output_in_the_docs_is_the_docs_example_calibrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/rules.md shows `safewatch calibrate` on the dock camera it configures above: the
    sample had drifted (other points, another homography)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()
    section = doc.split("## Camera calibration", 1)[1]
    camera = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    sample = doc.split("$ safewatch calibrate -c site.yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "site.yaml"
    path.write_text("version: 1\nmodels:\n  coco: {path: model.onnx}\n" + camera)
    monkeypatch.setenv("DOCK_PASSWORD", "secret")  # the camera's URL reads it
    result = safewatch("calibrate", "-c", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == sample
