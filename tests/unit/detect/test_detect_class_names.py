"""Where class names come from: config, ONNX metadata, COCO."""

from __future__ import annotations

import logging

import pytest

from safewatch.detect.class_names import (
    metadata_class_names,
    metadata_image_size,
    resolve_class_names,
)
from safewatch.detect.coco import COCO_CLASSES
from safewatch.errors import ModelError

ULTRALYTICS = {"names": "{0: 'Hardhat', 1: 'NO-Hardhat', 2: 'Safety Vest'}", "task": "detect"}


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("{0: 'person', 1: 'car'}", ["person", "car"]),
        ("{1: 'car', 0: 'person'}", ["person", "car"]),
        ("['a', 'b', 'c']", ["a", "b", "c"]),
        ("{0: 'person', 1: 'bicycle'} ... (standard 80 COCO classes, YOLOX order)", None),
        ("{0: 'a', 2: 'c'}", None),
        ("__import__('os').system('true')", None),
        ("42", None),
    ],
)
def test_metadata_class_names(raw: str, names: list[str] | None) -> None:
    assert metadata_class_names({"names": raw}) == names


def test_unreadable_metadata_names_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Logged at info: free-text notes are common (the YOLOX asset has one) and the fallback
    (config class names, else COCO-80) is the right answer, so a warning on every run is noise."""
    with caplog.at_level(logging.INFO):
        assert metadata_class_names({"names": "{0: 'x'} and more"}) is None
    assert "not a literal" in caplog.text


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        ("[640, 640]", (640, 640)),
        ("[384, 640]", (384, 640)),
        ("416", (416, 416)),
        ("[0]", None),
        ("x", None),
    ],
)
def test_metadata_image_size(raw: str, size: tuple[int, int] | None) -> None:
    assert metadata_image_size({"imgsz": raw}) == size


def test_metadata_names_are_used_when_the_config_has_none() -> None:
    assert resolve_class_names("m", 3, ULTRALYTICS, None) == (
        "Hardhat",
        "NO-Hardhat",
        "Safety Vest",
    )


def test_config_names_override_metadata() -> None:
    assert resolve_class_names("m", 3, ULTRALYTICS, ["a", "b", "c"]) == ("a", "b", "c")


def test_coco_is_assumed_for_80_classes_without_names() -> None:
    assert resolve_class_names("m", 80, {}, None) == COCO_CLASSES
    assert COCO_CLASSES[0] == "person" and COCO_CLASSES[7] == "truck" and len(COCO_CLASSES) == 80


def test_config_count_mismatch_is_an_error() -> None:
    with pytest.raises(ModelError, match="outputs 3 classes but class_names lists 2"):
        resolve_class_names("m", 3, {}, ["a", "b"])


def test_metadata_count_mismatch_is_an_error() -> None:
    with pytest.raises(ModelError, match="outputs 4 classes but its metadata names 3"):
        resolve_class_names("m", 4, ULTRALYTICS, None)


def test_no_names_at_all_is_an_error() -> None:
    with pytest.raises(ModelError, match="outputs 5 classes and carries no class names"):
        resolve_class_names("m", 5, {}, None)
