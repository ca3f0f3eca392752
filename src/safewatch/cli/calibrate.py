"""``safewatch calibrate``: show each calibrated camera's picture-to-floor mapping and its error.

Calibration points are typed into the site file by hand (tape marks measured on the floor, found in
the picture), so typos happen. This command solves the homography the rules in metres will use
and prints how far each point lands from where it was measured: one point far off is a mistyped
or misplaced pair. It also says where the horizon is (nothing beyond it is on the floor): above
the picture, or where it crosses it. Too few points, a degenerate layout (three on a line) or a
picture read upside down is refused, with the file and line, when the site file is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safewatch.cli.app import app, out
from safewatch.errors import ConfigError

if TYPE_CHECKING:
    from safewatch.rules.calibration import Calibration

__all__ = ["calibrate"]


@app.command()
def calibrate(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file.")],
    camera: Annotated[
        str | None, typer.Option(help="Only this camera (default: every calibrated camera).")
    ] = None,
) -> None:
    """Print each calibrated camera's homography and reprojection error (metres)."""
    import numpy as np

    from safewatch.config.loader import load_site
    from safewatch.rules.calibration import MIN_POINTS, Calibration, CalibrationError

    site = load_site(config)
    cameras = site.config.cameras
    if camera is not None:
        if camera not in cameras:
            known = ", ".join(sorted(cameras))
            raise ConfigError(f"camera {camera!r} is not in the site file (cameras: {known})")
        if cameras[camera].calibration is None:
            raise ConfigError(
                f"camera {camera!r} has no `calibration` block (image and floor points)",
                file=str(site.path),
            )
        chosen = [camera]
    else:
        chosen = [key for key, cam in cameras.items() if cam.calibration is not None]
        if not chosen:
            raise ConfigError(
                "no camera has a `calibration` block (image and floor points)", file=str(site.path)
            )
    for key in chosen:
        block = cameras[key].calibration
        assert block is not None
        try:
            calibration = Calibration.from_config(block)
        except CalibrationError as exc:  # the site model checks this; kept for clear output
            raise ConfigError(f"camera {key!r}: {exc}", file=str(site.path)) from exc
        errors = calibration.errors()
        count = len(calibration.image_points)
        out.print(f"camera {key}: {count} point pairs", highlight=False)
        out.print("  homography (normalised image x, y -> floor metres):", highlight=False)
        matrix = np.array2string(calibration.homography, precision=6, suppress_small=True)
        for row in matrix.splitlines():
            out.print(f"    {row}", highlight=False, soft_wrap=True)
        out.print(
            f"  reprojection error: mean {errors.mean():.3f} m, max {calibration.max_error:.3f} m"
            f" (rms {calibration.rms_error:.3f} m; allowed max {block.max_error:g} m)",
            highlight=False,
            soft_wrap=True,
        )
        mapped = calibration.to_floor(
            [[x * 1000.0, y * 1000.0] for x, y in calibration.image_points], 1000, 1000
        )
        out.print("  point  image x, y      floor X, Y (m)    maps to (m)       error (m)")
        for index, ((ix, iy), (fx, fy), (mx, my), error) in enumerate(
            zip(calibration.image_points, calibration.floor_points, mapped, errors, strict=True)
        ):
            out.print(
                f"  {index:>5}  {ix:5.3f}, {iy:5.3f}   {fx:7.2f}, {fy:7.2f}   "
                f"{mx:7.2f}, {my:7.2f}   {error:.3f}",
                highlight=False,
                soft_wrap=True,
            )
        out.print(f"  horizon: {_horizon(calibration)}", highlight=False, soft_wrap=True)
        for warning in calibration.warnings:
            out.print(f"  warning: {warning}", highlight=False, soft_wrap=True)
        if count == MIN_POINTS:
            out.print(
                f"  note: {MIN_POINTS} points always fit exactly, so the error says nothing; "
                "add a fifth point to check the calibration",
                highlight=False,
                soft_wrap=True,
            )


def _horizon(calibration: Calibration) -> str:
    """Where the calibration's horizon is, for people: nothing beyond it is on the floor, so it
    belongs above the points (a horizon below them is the picture read upside down)."""
    crossing = calibration.horizon()
    if crossing is not None:
        (x0, y0), (x1, y1) = crossing
        return (
            f"crosses the picture from x, y = {x0:.3f}, {y0:.3f} to {x1:.3f}, {y1:.3f} "
            "(nothing beyond it is on the floor)"
        )
    a, b, c = (float(v) for v in calibration.homography[2])
    if max(abs(a), abs(b)) < 1e-9:
        return "none (the floor is seen straight on, without perspective)"
    if abs(b) >= abs(a):
        side = "above" if b > 0 else "below"
        return f"{side} the picture (y = {-(c + a * 0.5) / b:.3f} at its middle)"
    side = "left" if a > 0 else "right"
    return f"{side} of the picture (x = {-(c + b * 0.5) / a:.3f} at its middle)"
