"""A camera's tracker as the site file builds it (``build_tracker``, shared by serve, audit,
backtest and the PPE benches): head mode and PPE items decided from the models' labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from safewatch.config.loader import LoadedSite, load_site
from safewatch.domain import Detections, Frame, PPEState, TrackedFrame
from safewatch.pipeline.stages import build_tracker, ppe_items, ppe_vocabulary, track_heads
from safewatch.track import CameraTracker

IMAGE = np.zeros((360, 480, 3), np.uint8)
Row = tuple[str, float, float, float, float, float]  # label, confidence, x1, y1, x2, y2
COCO = {"path": "coco.onnx", "format": "yolox", "labels": {"person": "person", "car": "vehicle"}}
PPE = {"path": "ppe.onnx", "labels": {"Hardhat": "hardhat", "NO-Hardhat": "no_hardhat"}}


def _site(folder: Path, models: dict[str, dict[str, Any]]) -> LoadedSite:
    site = {
        "version": 1,
        "models": models,
        "cameras": {"yard": {"source": "x.mp4", "fps": 5, "models": list(models)}},
        "privacy": {"mode": "off"},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return load_site(path)


def _tracker(site: LoadedSite) -> CameraTracker:
    return build_tracker(site, "yard", site.config.cameras["yard"])


def _update(tracker: CameraTracker, seq: int, rows: Sequence[Row]) -> TrackedFrame:
    detections = Detections(
        np.array([r[2:] for r in rows], np.float32).reshape(-1, 4),
        np.array([r[1] for r in rows], np.float32),
        np.array([r[0] for r in rows], dtype=np.str_),
    )
    return tracker.update(detections, Frame("yard", seq, seq / 5, 1.7e9 + seq / 5, IMAGE))


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ({"coco": COCO, "ppe": PPE}, False),
        # ``class_names`` are read as the detector names its detections (``Person``: person).
        ({"ppe": {"path": "ppe.onnx", "class_names": ["Hardhat", "NO-Hardhat", "Person"]}}, False),
        # A person model decides even beside a model whose labels only its file knows.
        ({"coco": COCO, "other": {"path": "other.onnx"}}, False),
        ({"ppe": PPE}, True),  # a PPE head model alone
        ({"cars": {"path": "cars.onnx", "labels": {"car": "vehicle"}}}, False),
        ({"ppe": PPE, "other": {"path": "other.onnx"}}, None),  # only the detections can say
        # A catalogue COCO model named alone produces COCO's classes, person among them: no
        # automatic switch beside it (it was None, so a hat box and no person turned it on).
        ({"coco": {"path": "yolox_nano"}, "ppe": PPE}, False),
        ({"coco": {"path": "yolox_s"}, "ppe": PPE}, False),
        # A catalogue set only the file spells out (ppe14) is still read from the detections.
        ({"ppe": {"path": "ppe14_yolov8n_int8"}, "other": PPE}, None),
    ],
)
def test_head_mode_is_fixed_from_the_models_labels_where_they_are_known(
    tmp_path: Path, models: dict[str, dict[str, Any]], expected: bool | None
) -> None:
    site = _site(tmp_path, models)
    assert track_heads(site, site.config.cameras["yard"]) is expected


def test_a_static_false_hat_in_an_empty_yard_never_turns_a_person_camera_to_heads(
    tmp_path: Path,
) -> None:
    """Review repro: 12 s of an empty yard with one yellow bucket the PPE model calls a hat put a
    camera running a person model in head mode; the bucket became a person track and a worker
    walking in was tracked as his head only, then re-identified once head mode ended."""
    tracker = _tracker(_site(tmp_path, {"coco": COCO, "ppe": PPE}))
    bucket: Row = ("hardhat", 0.7, 300, 250, 330, 270)
    seq = 0
    for _ in range(60):
        out = _update(tracker, seq, [bucket])
        seq += 1
    assert not tracker.head_mode
    assert out.tracks == ()
    ids: set[int] = set()
    for i in range(25):
        worker: Row = ("person", 0.9, 50 + 3 * i, 100, 90 + 3 * i, 200)
        bare: Row = ("no_hardhat", 0.6, 60 + 3 * i, 96, 80 + 3 * i, 114)
        out = _update(tracker, seq, [bucket, worker, bare])
        seq += 1
        assert not tracker.head_mode
        ids |= {t.track_id for t in out.tracks}
        assert all(t.xyxy[3] - t.xyxy[1] == 100 for t in out.tracks)  # person boxes, no heads
    assert len(ids) == 1  # one worker, one track: no episode split by a mode switch


def test_an_item_the_models_report_as_x_and_no_x_is_worn_from_the_first_frame(
    tmp_path: Path,
) -> None:
    """``labels:`` maps ``helmet`` / ``no_helmet``: a helmet box on a worker is his helmet even
    before any bare head was seen, and every person reports the item from the start."""
    helmets = {"path": "ppe.onnx", "labels": {"Helmet": "helmet", "NO-Helmet": "no_helmet"}}
    tracker = _tracker(_site(tmp_path, {"coco": COCO, "ppe": helmets}))
    worker: Row = ("person", 0.9, 100, 100, 140, 200)
    other: Row = ("person", 0.9, 300, 100, 340, 200)
    for seq in range(6):
        out = _update(tracker, seq, [worker, other, ("helmet", 0.8, 110, 96, 130, 114)])
    assert [(t.label, dict(t.attributes)) for t in out.tracks] == [
        ("person", {"helmet": PPEState.PRESENT}),
        ("person", {"helmet": PPEState.UNKNOWN}),
    ]


def test_ppe_items_read_class_names_as_the_detector_names_its_detections(tmp_path: Path) -> None:
    names = ["Person", "Hardhat", "NO-Hardhat", "Safety Vest", "NO-Safety Vest", "Machinery"]
    site = _site(tmp_path, {"ppe": {"path": "ppe.onnx", "class_names": names}})
    camera = site.config.cameras["yard"]
    assert ppe_items(site, camera) == {"hardhat", "safety_vest"}
    assert ppe_vocabulary(site, camera).item_of("safety_vest") == ("safety_vest", PPEState.PRESENT)
    assert ppe_vocabulary(site, camera).item_of("machinery") is None


def test_a_local_file_named_like_a_catalogue_model_is_not_taken_for_it(tmp_path: Path) -> None:
    """``resolve`` prefers an existing file to a catalogue name, so its classes are unknown."""
    (tmp_path / "yolox_nano").write_bytes(b"not the catalogue's file")
    site = _site(tmp_path, {"coco": {"path": "yolox_nano"}, "ppe": PPE})
    assert track_heads(site, site.config.cameras["yard"]) is None


def test_a_catalogue_coco_model_gives_no_ppe_items(tmp_path: Path) -> None:
    site = _site(tmp_path, {"coco": {"path": "yolox_nano"}})
    assert ppe_items(site, site.config.cameras["yard"]) == set()
