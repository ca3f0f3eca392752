"""Tiled inference: tiles cover the frame with overlap; cut boxes go, duplicates merge."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.config.runtime import TilingConfig
from safewatch.detect.tiling import Tile, crop_tiles, merge_tiles, plan_tiles
from safewatch.domain import Detections, Frame


def boxes(*rows: tuple[float, float, float, float, float, str]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([r[:4] for r in rows], np.float32),
        np.array([r[4] for r in rows], np.float32),
        np.array([r[5] for r in rows]),
    )


@pytest.mark.parametrize(("columns", "rows", "overlap"), [(2, 2, 0.2), (3, 2, 0.25), (2, 1, 0.0)])
def test_tiles_cover_the_frame_and_overlap(columns: int, rows: int, overlap: float) -> None:
    width, height = 640, 352
    tiles = plan_tiles(width, height, TilingConfig(columns=columns, rows=rows, overlap=overlap))
    assert len(tiles) == columns * rows
    covered = np.zeros((height, width), bool)
    for tile in tiles:
        assert 0 <= tile.x0 < tile.x1 <= width and 0 <= tile.y0 < tile.y1 <= height
        covered[tile.y0 : tile.y1, tile.x0 : tile.x1] = True
    assert covered.all()
    if columns > 1:
        shared = tiles[0].x1 - tiles[1].x0
        assert shared >= int(overlap * (tiles[0].x1 - tiles[0].x0)) - 1


def test_crops_are_views_of_the_frame() -> None:
    image = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    frame = Frame("cam", 3, 0.6, 100.6, image)
    (crop,) = crop_tiles(frame, [Tile(10, 5, 30, 25)])
    assert crop.image.shape == (20, 20, 3)
    assert np.shares_memory(crop.image, image)
    assert (crop.camera_id, crop.seq, crop.timestamp) == ("cam", 3, 100.6)
    assert np.array_equal(crop.image, image[5:25, 10:30])


def test_merge_shifts_to_frame_pixels_and_drops_boxes_cut_by_inner_edges() -> None:
    tiles = [Tile(0, 0, 60, 40), Tile(40, 0, 100, 40)]
    left = boxes(
        (10, 10, 20, 30, 0.9, "person"),  # whole, inside the left tile
        (50, 10, 60, 30, 0.8, "person"),  # touches the left tile's right (inner) edge: cut
    )
    right = boxes(
        (5, 10, 15, 30, 0.85, "person"),  # the same cut person, whole in the right tile (45-55)
        (45, 5, 60, 20, 0.7, "vehicle"),  # touches the frame's right border: kept
    )
    merged = merge_tiles(100, 40, tiles, [left, right])
    rows = sorted(zip(merged.xyxy.tolist(), merged.label.tolist(), strict=True))
    assert rows == [
        ([10.0, 10.0, 20.0, 30.0], "person"),
        ([45.0, 10.0, 55.0, 30.0], "person"),
        ([85.0, 5.0, 100.0, 20.0], "vehicle"),
    ]


def test_merge_deduplicates_a_person_seen_by_two_tiles_and_the_full_frame() -> None:
    tiles = [Tile(0, 0, 60, 40), Tile(40, 0, 100, 40)]
    left = boxes((42, 10, 52, 30, 0.7, "person"))
    right = boxes((2.5, 10, 12, 30, 0.8, "person"))  # 42.5-52 in frame pixels
    full = boxes((42, 10, 52, 31, 0.6, "person"), (42, 10, 52, 30, 0.5, "hardhat"))
    merged = merge_tiles(100, 40, tiles, [left, right], full)
    labels = sorted(merged.label.tolist())
    assert labels == ["hardhat", "person"]  # other labels never suppress each other
    person = merged[merged.label == "person"]
    assert float(person.confidence[0]) == pytest.approx(0.8)


def test_merge_of_nothing_is_nothing() -> None:
    tiles = [Tile(0, 0, 60, 40), Tile(40, 0, 100, 40)]
    assert len(merge_tiles(100, 40, tiles, [Detections.empty(), Detections.empty()])) == 0


def test_a_single_tile_is_not_tiling() -> None:
    with pytest.raises(ValueError, match="at least two tiles"):
        TilingConfig(columns=1, rows=1)


def test_a_tight_tile_box_inside_a_loose_full_frame_box_is_one_person() -> None:
    tiles = [Tile(0, 0, 60, 40), Tile(40, 0, 100, 40)]
    tight = boxes((12, 12, 18, 30, 0.9, "person"))  # IoU with the loose box is only 0.36
    loose = boxes((8, 6, 22, 34, 0.5, "person"), (70, 6, 80, 30, 0.5, "person"))
    merged = merge_tiles(100, 40, tiles, [tight, Detections.empty()], loose)
    rows = sorted(merged.xyxy.tolist())
    assert rows == [[12.0, 12.0, 18.0, 30.0], [70.0, 6.0, 80.0, 30.0]]
