"""Durations as people write them in rule files: ``3s``, ``500ms``, ``2m``, ``1h`` or ``2.5``.

Stored as float seconds, the unit of the frame clock, so the engine never converts. A bare number
means seconds because that is what ``min_duration: 3`` reads as to a safety officer.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["Duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h)?\s*$")
_HELP = "expected seconds or a number with a unit: 500ms, 3s, 2m, 1h"


def parse_duration(value: Any) -> float:
    """Turn a duration as written into seconds.

    Raises:
        ValueError: Not a duration, negative, or not finite; the message says what is accepted
            (the caller adds the offending value, so secrets never enter it here).
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration: {_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(f"invalid duration: {_HELP}")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"invalid duration: {_HELP}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("duration must be a finite number of seconds, zero or more")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: accepts the forms above and stores float seconds."""
