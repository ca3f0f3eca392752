"""Decoding each family's raw outputs, and telling the families apart."""

from __future__ import annotations

import re

import numpy as np
import pytest

from safewatch.detect.formats import (
    DetrAdapter,
    Yolov5Adapter,
    Yolov8Adapter,
    YoloxAdapter,
    adapter_for,
    detect_format,
)
from safewatch.detect.formats.base import EXPECTED_LAYOUTS, BoxFormat
from safewatch.detect.formats.yolox import grid_cells, make_grid
from safewatch.errors import ModelError


def test_yolov8_splits_channels_without_copying() -> None:
    out = np.zeros((2, 4 + 3, 5), np.float32)
    out[1, :4, 2] = [100, 50, 20, 10]
    out[1, 4 + 2, 2] = 0.9
    raw = Yolov8Adapter().decode([out], (64, 64))
    assert raw.boxes.shape == (2, 4, 5) and raw.scores.shape == (2, 3, 5)
    assert np.shares_memory(raw.boxes, out)
    assert raw.boxes[1, :, 2].tolist() == [100, 50, 20, 10]
    assert raw.scores[1, 2, 2] == pytest.approx(0.9)
    assert raw.box_format is BoxFormat.CXCYWH and raw.needs_nms


def test_yolov5_multiplies_objectness_into_class_scores() -> None:
    out = np.zeros((1, 4, 5 + 2), np.float32)
    out[0, 3] = [10, 20, 4, 6, 0.5, 0.2, 0.8]
    raw = Yolov5Adapter().decode([out], (64, 64))
    assert raw.scores.shape == (1, 2, 4)
    assert raw.scores[0, :, 3].tolist() == pytest.approx([0.1, 0.4])
    assert raw.boxes[0, :, 3].tolist() == [10, 20, 4, 6]


def test_yolox_grid_follows_stride_order() -> None:
    grid, stride = make_grid((64, 64))
    assert grid.shape == (64 + 16 + 4, 2) == (grid_cells((64, 64)), 2)
    assert grid[:3].tolist() == [[0, 0], [1, 0], [2, 0]]  # x varies fastest
    assert grid[8].tolist() == [0, 1]
    assert stride[0, 0] == 8 and stride[64, 0] == 16 and stride[-1, 0] == 32
    assert grid[-1].tolist() == [1, 1]


def test_yolox_raw_head_is_grid_decoded() -> None:
    cells = grid_cells((64, 64))
    out = np.zeros((1, cells, 5 + 1), np.float32)
    # cell (x=3, y=2) of stride 8: row 2 * 8 + 3 = 19
    out[0, 19] = [0.5, 0.25, np.log(2.0), np.log(3.0), 0.8, 0.5]
    raw = YoloxAdapter().decode([out], (64, 64))
    assert raw.boxes[0, :, 19].tolist() == pytest.approx([(3.5) * 8, (2.25) * 8, 16.0, 24.0])
    assert raw.scores[0, 0, 19] == pytest.approx(0.4)


def test_yolox_decoded_export_is_passed_through() -> None:
    cells = grid_cells((64, 64))
    out = np.zeros((1, cells, 6), np.float32)
    out[0, :, 0] = np.linspace(4, 60, cells)  # pixel centres, mean 32 > 64 / 8
    out[0, 5, :4] = [30, 31, 10, 12]
    raw = YoloxAdapter().decode([out], (64, 64))
    assert raw.boxes[0, :, 5].tolist() == pytest.approx([30, 31, 10, 12])


def test_yolox_rejects_an_output_that_is_not_the_grid() -> None:
    with pytest.raises(ValueError, match="grid cells"):
        YoloxAdapter().decode([np.zeros((1, 10, 6), np.float32)], (64, 64))


def test_detr_sigmoid_scores_and_pixel_boxes() -> None:
    boxes = np.array([[[0.5, 0.5, 0.25, 0.5]]], np.float32)
    logits = np.array([[[0.0, 2.0, -50.0]]], np.float32)
    raw = DetrAdapter().decode([boxes, logits], (100, 200))
    assert raw.boxes[0, :, 0].tolist() == pytest.approx([100, 50, 50, 50])
    assert raw.scores[0, :, 0].tolist() == pytest.approx(
        [0.5, 1 / (1 + np.exp(-2.0)), 0.0], abs=1e-6
    )
    assert not raw.needs_nms


def test_detr_outputs_in_either_order() -> None:
    boxes = np.array([[[0.5, 0.5, 0.2, 0.2]]], np.float32)
    logits = np.zeros((1, 1, 7), np.float32)
    raw = DetrAdapter().decode([logits, boxes], (10, 10))
    assert raw.scores.shape == (1, 7, 1)
    assert raw.boxes[0, :, 0].tolist() == pytest.approx([5, 5, 2, 2])


def test_detr_with_no_object_column_uses_softmax_and_drops_it() -> None:
    logits = np.array([[[np.log(3.0), 0.0, 0.0]]], np.float32)  # softmax 0.6, 0.2, 0.2
    adapter = DetrAdapter(no_object=True)
    assert adapter.num_classes("m", [(1, 1, 4), (1, 1, 3)]) == 2
    raw = adapter.decode([np.zeros((1, 1, 4), np.float32), logits], (10, 10))
    assert raw.scores[0, :, 0].tolist() == pytest.approx([0.6, 0.2])


def test_adapter_for_picks_no_object_from_the_class_count() -> None:
    shapes = [(1, 100, 4), (1, 100, 4)]  # four logits, four box numbers: names decide
    names = ["pred_boxes", "pred_logits"]
    detr = adapter_for("detr", "m", shapes, names, ["a", "b", "c"])
    assert isinstance(detr, DetrAdapter) and detr.no_object
    assert not adapter_for("detr", "m", shapes, names, ["a", "b", "c", "d"]).no_object  # type: ignore[attr-defined]


S = (640, 640)
G = grid_cells(S)  # 8400


@pytest.mark.parametrize(
    ("shapes", "metadata", "expected"),
    [
        pytest.param([(1, 84, G)], {}, "yolov8", id="v8 by grid"),
        pytest.param([(1, 18, G)], {"task": "detect"}, "yolov8", id="v8 ppe"),
        pytest.param([(1, 84, 5000)], {"task": "detect"}, "yolov8", id="v8 by metadata"),
        pytest.param([(1, 84, 5000)], {}, "yolov8", id="v8 by axis lengths"),
        pytest.param([(1, G, 85)], {}, "yolox", id="yolox by grid"),
        pytest.param(
            [(1, G, 85)], {"imgsz": "[640, 640]"}, "yolox", id="yolox with other metadata"
        ),
        pytest.param(
            [(1, 3 * G, 85)], {"stride": "32", "names": "{}"}, "yolov5", id="v5 by 3 anchors"
        ),
        pytest.param([(1, 5000, 85)], {}, "yolov5", id="v5 by axis lengths"),
        pytest.param([(1, 300, 4), (1, 300, 91)], {}, "detr", id="rf-detr"),
        pytest.param([(1, 100, 92), (1, 100, 4)], {}, "detr", id="detr logits first"),
    ],
)
def test_detect_format(
    shapes: list[tuple[int, ...]], metadata: dict[str, str], expected: str
) -> None:
    assert detect_format("m", shapes, metadata, S) == expected


@pytest.mark.parametrize(
    "shapes",
    [
        pytest.param([(1, 1000)], id="rank 2"),
        pytest.param([(1, 3, 4, 5)], id="rank 4"),
        pytest.param([(1, 3, 3)], id="too few channels"),
        pytest.param([(1, 300, 5), (1, 300, 91)], id="detr boxes not 4"),
        pytest.param([(1, 300, 4), (1, 200, 91)], id="detr query mismatch"),
        pytest.param([], id="no outputs"),
    ],
)
def test_unsupported_layouts_say_what_was_expected(shapes: list[tuple[int, ...]]) -> None:
    with pytest.raises(ModelError) as info:
        detect_format("bad", shapes, {}, S)
    message = str(info.value)
    assert EXPECTED_LAYOUTS in message
    assert "model 'bad'" in message
    assert "got" in message


def test_end_to_end_ultralytics_exports_are_refused() -> None:
    with pytest.raises(ModelError, match="end2end=False"):
        detect_format("m", [(1, 300, 6)], {"task": "detect", "end2end": "True"}, S)
    assert detect_format("m", [(1, 84, G)], {"task": "detect", "end2end": "False"}, S) == "yolov8"


@pytest.mark.parametrize(
    ("adapter", "shapes"),
    [
        (Yolov8Adapter(), [(1, 4, 100)]),
        (Yolov5Adapter(), [(1, 100, 5)]),
        (YoloxAdapter(), [(1, 100)]),
        (DetrAdapter(), [(1, 100, 4)]),
    ],
)
def test_forced_format_with_wrong_layout_is_a_model_error(
    adapter: object, shapes: list[tuple[int, ...]]
) -> None:
    with pytest.raises(ModelError, match="unsupported output layout"):
        adapter.num_classes("m", shapes)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("adapter", "shapes", "hint"),
    [
        (YoloxAdapter(), [(1, 18, 2100)], "this is [B, 4+nc, A], the yolov8 layout"),
        (Yolov5Adapter(), [(1, 18, 2100)], "this is [B, 4+nc, A], the yolov8 layout"),
        (Yolov8Adapter(), [(1, 3549, 85)], "this is [B, A, 5+nc], the yolox or yolov5 layout"),
    ],
)
def test_a_format_of_the_other_family_says_so(
    adapter: object, shapes: list[tuple[int, ...]], hint: str
) -> None:
    """``format: yolox`` on a yolov8 model used to read its 2,100 anchors as classes and fail
    with "outputs 2095 classes but its metadata names 14; set class_names", advice that cannot
    work. The real models' shapes: ppe14 at 320 px, yolox_nano at 416 px."""
    with pytest.raises(ModelError, match=re.escape(hint)):
        adapter.num_classes("m", shapes)  # type: ignore[attr-defined]
    # The right family still reads them.
    right = YoloxAdapter() if shapes[0][1] > shapes[0][2] else Yolov8Adapter()
    assert right.num_classes("m", shapes) in (80, 14)
