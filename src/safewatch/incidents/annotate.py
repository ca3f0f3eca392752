"""Draw what the pipeline saw on a frame: tracks, PPE states, zones, the violators.

Used for evidence stills and, frame by frame, for the annotated MP4 of ``safewatch audit``, so it is
pure (returns a new image, never touches its input) and cheap: OpenCV's built-in Hershey font (no
font files to load), one translucent blend for all zones, and a size scale computed once per call.
Colours are BGR. Text always sits on a filled box so it stays legible on busy CCTV backgrounds at
640x352 and up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from safewatch.domain import Image, PPEState, Track, TrackedFrame, Zone

__all__ = ["draw_overlay"]

Colour = tuple[int, int, int]

RED: Colour = (40, 40, 230)
GREEN: Colour = (60, 170, 60)
GREY: Colour = (130, 130, 130)
TRACK: Colour = (230, 170, 30)
ZONE: Colour = (0, 200, 255)
WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_ZONE_ALPHA = 0.25
_STATE_TAG = {PPEState.PRESENT: "OK", PPEState.ABSENT: "NO", PPEState.UNKNOWN: "?"}
_STATE_COLOUR = {PPEState.PRESENT: GREEN, PPEState.ABSENT: RED, PPEState.UNKNOWN: GREY}


@dataclass(frozen=True, slots=True)
class _Style:
    """Sizes for one image height: text must stay readable from 352 px CCTV to 1080p."""

    scale: float
    thickness: int
    line: int
    pad: int

    @classmethod
    def for_height(cls, height: int) -> _Style:
        scale = min(max(height / 900.0, 0.38), 1.1)
        thickness = 1 if height < 720 else 2
        (_, text_h), baseline = cv2.getTextSize("Ag", _FONT, scale, thickness)
        pad = max(2, round(3 * scale))
        return cls(scale, thickness, text_h + baseline + pad, pad)


def _label(image: Image, text: str, origin: tuple[int, int], colour: Colour, style: _Style) -> int:
    """Draw ``text`` on a filled box whose top-left is ``origin``, kept inside the image.

    Returns:
        The x just right of the box, to chain tags on one line.
    """
    x, y = origin
    height, width = image.shape[:2]
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, style.scale, style.thickness)
    box_w = text_w + 2 * style.pad
    box_h = text_h + baseline + style.pad
    x = int(min(max(x, 0), max(width - box_w, 0)))
    y = int(min(max(y, 0), max(height - box_h, 0)))
    cv2.rectangle(image, (x, y), (x + box_w, y + box_h), colour, cv2.FILLED)
    cv2.putText(
        image,
        text,
        (x + style.pad, y + text_h + style.pad // 2),
        _FONT,
        style.scale,
        WHITE,
        style.thickness,
        cv2.LINE_AA,
    )
    return x + box_w + 1


def _draw_zones(image: Image, zones: Sequence[Zone], style: _Style) -> None:
    height, width = image.shape[:2]
    polygons = [np.round(z.to_pixels(width, height)).astype(np.int32) for z in zones]
    fill = image.copy()
    cv2.fillPoly(fill, polygons, ZONE)
    cv2.addWeighted(fill, _ZONE_ALPHA, image, 1 - _ZONE_ALPHA, 0, dst=image)
    cv2.polylines(image, polygons, True, ZONE, style.thickness, cv2.LINE_AA)
    for zone, polygon in zip(zones, polygons, strict=True):
        top = polygon[np.argmin(polygon[:, 1])]
        _label(image, zone.id, (int(top[0]), int(top[1])), (0, 140, 190), style)


def _draw_detections(image: Image, tracked: TrackedFrame) -> None:
    """Thin boxes for detections that are not tracked objects (PPE items), so a reviewer can see
    what the PPE verdicts were based on."""
    tracked_labels = {t.label for t in tracked.tracks}
    det = tracked.detections
    for box, label in zip(det.xyxy, det.label, strict=True):
        name = str(label)
        if name in tracked_labels:
            continue
        colour = RED if name.startswith("no_") else GREEN
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 1, cv2.LINE_AA)


def _draw_track(image: Image, track: Track, violating: bool, style: _Style) -> None:
    """Box, then ``label #id`` above it and one coloured tag per PPE item on the line between."""
    colour = RED if violating else TRACK
    x1, y1, x2, y2 = (round(v) for v in track.xyxy)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, style.thickness + (1 if violating else 0))
    tags = [
        (f"{item}:{_STATE_TAG[state]}", _STATE_COLOUR[state])
        for item, state in sorted(track.attributes.items())
    ]
    top = y1 - style.line * (2 if tags else 1)
    if top < 0:  # no room above: write inside the box instead
        top = max(y1, 0)
    _label(image, f"{track.label} #{track.track_id}", (x1, top), colour, style)
    x = x1
    for text, tag_colour in tags:
        x = _label(image, text, (x, top + style.line), tag_colour, style)


def draw_overlay(
    image: Image,
    tracked: TrackedFrame,
    zones: Sequence[Zone],
    highlight: set[int] | None = None,
) -> Image:
    """Return a copy of ``image`` with zones, tracks and PPE states drawn on it.

    Args:
        image: ``(H, W, 3)`` BGR ``uint8`` frame; not modified.
        tracked: The tracker's output for this frame (boxes in this image's pixels).
        zones: Zones of this camera, drawn translucent with their id.
        highlight: Track ids of the violators: drawn red and thicker, on top of the others.

    Returns:
        A new image of the same shape and dtype.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    out: Image = np.ascontiguousarray(image).copy()
    style = _Style.for_height(out.shape[0])
    if zones:
        _draw_zones(out, zones, style)
    _draw_detections(out, tracked)
    marked = highlight or set()
    # Violators last, so their labels are never hidden under a neighbour's.
    for track in sorted(tracked.tracks, key=lambda t: t.track_id in marked):
        _draw_track(out, track, track.track_id in marked, style)
    return out
