"""safewatch's detector against the bench's independent minimal YOLOv8 implementation."""

from __future__ import annotations

import cv2
import numpy as np
from bench.accuracy import LABEL_MAP
from bench.reference_yolov8 import ReferenceYolov8, model_classes

from assets import asset
from safewatch.config.site import ModelConfig
from safewatch.detect import OnnxDetector
from safewatch.detect.nms import box_iou
from safewatch.domain import Frame

IMAGES = ("hard_hat_workers126", "hard_hat_workers190", "hard_hat_workers59")
"""Crowded, plain and close-up pictures, all of different sizes (416x415, 416x416, 415x416)."""


def test_reference_and_onnx_detector_give_the_same_boxes() -> None:
    model = asset("models/ppe14_yolov8n.onnx")
    folder = asset("images/hard_hat_workers/images")
    index = model_classes(str(model))
    reference = ReferenceYolov8(
        str(model), 640, {index[k]: v for k, v in LABEL_MAP.items()}, 0.05, 0.45
    )
    config = ModelConfig(path=str(model), labels=LABEL_MAP, confidence=0.05, nms_iou=0.45)
    detector = OnnxDetector(config, model, "ppe14")
    images = [np.asarray(cv2.imread(str(folder / f"{s}.png")), np.uint8) for s in IMAGES]
    ours = detector.detect([Frame("t", i, 0.0, 0.0, im) for i, im in enumerate(images)])
    total = 0
    for image, mine in zip(images, ours, strict=True):
        theirs = reference(image)
        assert len(mine) == len(theirs)
        total += len(mine)
        order_m = np.argsort(-mine.confidence, kind="stable")
        order_t = np.argsort(-theirs.confidence, kind="stable")
        np.testing.assert_allclose(mine.confidence[order_m], theirs.confidence[order_t], atol=1e-4)
        iou = box_iou(mine.xyxy, theirs.xyxy)
        iou[mine.label[:, None] != theirs.label[None, :]] = 0.0
        assert iou.max(axis=1).min() > 0.99
    assert total >= 10  # the pictures hold helmets: a comparison of empty lists proves nothing
