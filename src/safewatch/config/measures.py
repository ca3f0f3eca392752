"""Distances and speeds as people write them in rule files: ``2m``, ``150px``, ``10km/h``.

A distance is only meaningful with its unit: ``2m`` on the floor needs a calibrated camera,
``150px`` works on any camera but shrinks with perspective. A bare number is refused rather than
guessed, and ``m`` here means metres (in durations it means minutes: the field decides, and the
error says which units a field takes). Values are stored in base units (metres, pixels, metres or
pixels per second) beside their unit, so the engine never converts text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Distance", "Length", "Speed", "SpeedLimit", "parse_length", "parse_speed"]

Unit = Literal["m", "px"]

_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_LENGTH = re.compile(rf"^\s*{_NUMBER}\s*(m|cm|px)\s*$")
_SPEED = re.compile(rf"^\s*{_NUMBER}\s*(km/h|kmh|m/s|px/s)\s*$")
_LENGTH_HELP = "expected a number with a unit: 2m, 50cm (metres, calibrated cameras) or 150px"
_SPEED_HELP = "expected a number with a unit: 10km/h, 3m/s (calibrated cameras) or 200px/s"


@dataclass(frozen=True, slots=True)
class Length:
    """A distance in metres (``unit == "m"``) or pixels (``unit == "px"``)."""

    value: float
    unit: Unit

    @property
    def metric(self) -> bool:
        """Whether it is measured on the floor (needs a calibrated camera)."""
        return self.unit == "m"

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit}"


@dataclass(frozen=True, slots=True)
class Speed:
    """A speed in metres per second (``unit == "m"``) or pixels per second (``unit == "px"``)."""

    value: float
    unit: Unit

    @property
    def metric(self) -> bool:
        """Whether it is measured on the floor (needs a calibrated camera)."""
        return self.unit == "m"

    def __str__(self) -> str:
        if self.unit == "m":
            return f"{self.value * 3.6:g}km/h"
        return f"{self.value:g}px/s"


def _finite(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be a finite number, zero or more")
    return value


def parse_length(value: Any) -> Length:
    """Turn ``2m``, ``50cm`` or ``150px`` into a :class:`Length`.

    Raises:
        ValueError: Not one of those forms (a bare number included: the unit matters).
    """
    if isinstance(value, Length):
        return value
    match = _LENGTH.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"invalid distance: {_LENGTH_HELP}")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "cm":
        return Length(_finite(number / 100.0), "m")
    return Length(_finite(number), "m" if unit == "m" else "px")


def parse_speed(value: Any) -> Speed:
    """Turn ``10km/h``, ``3m/s`` or ``200px/s`` into a :class:`Speed` (per second).

    Raises:
        ValueError: Not one of those forms.
    """
    if isinstance(value, Speed):
        return value
    match = _SPEED.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"invalid speed: {_SPEED_HELP}")
    number, unit = float(match.group(1)), match.group(2)
    if unit in ("km/h", "kmh"):
        return Speed(_finite(number / 3.6), "m")
    return Speed(_finite(number), "m" if unit == "m/s" else "px")


Distance = Annotated[Length, BeforeValidator(parse_length), PlainSerializer(str, return_type=str)]
"""A pydantic field type: accepts ``2m``, ``50cm``, ``150px``; dumps back as ``2m`` / ``150px``."""

SpeedLimit = Annotated[Speed, BeforeValidator(parse_speed), PlainSerializer(str, return_type=str)]
"""A pydantic field type: accepts ``10km/h``, ``3m/s``, ``200px/s``; dumps as km/h or px/s."""
