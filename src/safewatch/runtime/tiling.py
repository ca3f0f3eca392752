"""Tiled inference for small, distant people.

A detector sees a 640x352 frame letterboxed into its 416 or 640 input, so a worker 30 px tall far
across a yard shrinks to a handful of pixels and is missed. Cutting the frame into overlapping
tiles and running each at the model's full input size enlarges everyone by the tiling factor, at
the cost of one inference per tile (the tiles travel in the same batch as other cameras' frames).

Merging: a box that touches a tile's *inner* edge (one that is not the frame's border) is cut by
the tile and is dropped; the overlap between tiles makes sure an object smaller than the overlap
appears whole in a neighbour, and the optional full-frame pass finds the ones larger than a tile.
What remains is shifted back to frame pixels and de-duplicated by class-aware NMS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from safewatch.config.runtime import TilingConfig
from safewatch.detect.nms import nms
from safewatch.domain import Detections, Frame

__all__ = ["Tile", "crop_tiles", "merge_tiles", "plan_tiles"]

EDGE_MARGIN = 2.0
"""Pixels from an inner tile edge within which a box counts as cut by it."""

MERGE_IOU = 0.5
"""IoU above which two boxes of one label (from different tiles or passes) are one object."""


@dataclass(frozen=True, slots=True)
class Tile:
    """One crop of the frame, in frame pixels (``x1``, ``y1`` exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int


def _spans(length: int, count: int, overlap: float) -> list[tuple[int, int]]:
    if count == 1:
        return [(0, length)]
    # count tiles of size s overlapping by overlap*s cover: s * (count - (count - 1) * overlap).
    size = math.ceil(length / (count - (count - 1) * overlap))
    step = (length - size) / (count - 1)
    return [(round(i * step), round(i * step) + size) for i in range(count)]


def plan_tiles(width: int, height: int, config: TilingConfig) -> list[Tile]:
    """The tiles of a ``width`` x ``height`` frame, row by row."""
    columns = _spans(width, config.columns, config.overlap)
    rows = _spans(height, config.rows, config.overlap)
    return [Tile(x0, y0, min(x1, width), min(y1, height)) for y0, y1 in rows for x0, x1 in columns]


def crop_tiles(frame: Frame, tiles: Sequence[Tile]) -> list[Frame]:
    """The tiles as frames of their own (views, no copy), for the detector's batch."""
    return [
        Frame(
            frame.camera_id,
            frame.seq,
            frame.pts,
            frame.timestamp,
            frame.image[t.y0 : t.y1, t.x0 : t.x1],
        )
        for t in tiles
    ]


def merge_tiles(
    width: int,
    height: int,
    tiles: Sequence[Tile],
    found: Sequence[Detections],
    full: Detections | None = None,
) -> Detections:
    """One frame's detections from its tiles' (and optionally the whole frame's).

    Args:
        width: Frame width.
        height: Frame height.
        tiles: The tiles, as planned.
        found: Detections of each tile, in tile pixels.
        full: Detections of the whole frame, if it was run too.
    """
    parts: list[Detections] = [] if full is None else [full]
    for tile, detections in zip(tiles, found, strict=True):
        if not len(detections):
            continue
        xyxy = detections.xyxy
        cut = np.zeros(len(detections), bool)
        if tile.x0 > 0:
            cut |= xyxy[:, 0] <= EDGE_MARGIN
        if tile.y0 > 0:
            cut |= xyxy[:, 1] <= EDGE_MARGIN
        if tile.x1 < width:
            cut |= xyxy[:, 2] >= (tile.x1 - tile.x0) - EDGE_MARGIN
        if tile.y1 < height:
            cut |= xyxy[:, 3] >= (tile.y1 - tile.y0) - EDGE_MARGIN
        kept = detections[~cut]
        if not len(kept):
            continue
        shifted = kept.xyxy + np.array([tile.x0, tile.y0, tile.x0, tile.y0], np.float32)
        parts.append(Detections(shifted, kept.confidence, kept.label))
    merged = Detections.merge(parts)
    if len(merged) < 2:
        return merged
    _, classes = np.unique(merged.label, return_inverse=True)
    order = nms(merged.xyxy, merged.confidence, classes, MERGE_IOU, max_detections=len(merged))
    return merged[np.sort(order)]
