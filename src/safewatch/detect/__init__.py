"""Detection: turn frames into labelled boxes with ONNX models of several families.

``Detector`` is the contract; ``OnnxDetector`` runs one model (YOLOv8/YOLO11, YOLOv5, YOLOX or
DETR-family export); :func:`detect_requests` runs a camera's models and tiling over frames of any
cameras (``CameraDetector`` is one camera's view of it); ``DetectorPool`` shares sessions between
cameras.
"""

from safewatch.detect.coco import COCO_CLASSES
from safewatch.detect.multi import (
    CameraDetector,
    DetectionRequest,
    MultiModelDetector,
    detect_requests,
)
from safewatch.detect.nms import nms
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.detect.pool import DetectorFactory, DetectorPool, build_detector
from safewatch.detect.protocol import Detector
from safewatch.detect.transform import ImageTransform, Placement, fit

__all__ = [
    "COCO_CLASSES",
    "CameraDetector",
    "DetectionRequest",
    "Detector",
    "DetectorFactory",
    "DetectorPool",
    "ImageTransform",
    "MultiModelDetector",
    "OnnxDetector",
    "Placement",
    "build_detector",
    "detect_requests",
    "fit",
    "nms",
]
