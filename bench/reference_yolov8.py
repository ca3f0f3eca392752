"""A plain, independent YOLOv8 ONNX detector, to cross-check safewatch's detector path.

Written from the Ultralytics export's contract (see the shared assets' README), sharing no code
with :mod:`safewatch.detect`: its own letterbox (``cv2.copyMakeBorder`` with grey 114, centred),
its own ONNX Runtime session with default options, one image per ``session.run``, its own decoding
and a greedy class-aware NMS written as a Python loop. It keeps safewatch's documented semantics
so the two can be compared box for box: only the mapped classes are considered, each anchor keeps
its best mapped class, boxes scoring below ``conf`` are dropped, a box is suppressed when its IoU
with a kept box of its class is above ``iou``, at most ``max_det`` boxes per image.

It is slow and has no error handling worth the name; that is the point: it is short enough to
check by reading.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from safewatch.domain import Detections

__all__ = ["ReferenceYolov8", "letterbox", "model_classes"]


def letterbox(image: NDArray[np.uint8], size: int) -> tuple[NDArray[np.float32], float, int, int]:
    """``(1, 3, size, size)`` RGB 0-1 input, the scale, and the left and top padding."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = round(w * r), round(h * r)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114)
    )
    rgb = padded[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
    return rgb[None], r, left, top


def model_classes(path: str) -> dict[str, int]:
    """Class name -> index, from the export's ``names`` metadata (a Python dict literal)."""
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = ast.literal_eval(session.get_modelmeta().custom_metadata_map["names"])
    return {str(name): int(index) for index, name in names.items()}


def _iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class ReferenceYolov8:
    """Detect with a YOLOv8 ONNX export, the plain way.

    Args:
        path: The ``.onnx`` file.
        size: Square network input.
        classes: Model class index -> label to report (other classes are ignored).
        conf: Lowest confidence kept.
        iou: NMS IoU threshold.
        max_det: Most boxes kept per image.
    """

    def __init__(
        self,
        path: str,
        size: int,
        classes: Mapping[int, str],
        conf: float,
        iou: float,
        max_det: int = 300,
    ) -> None:
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.size = size
        self.ids = np.array(sorted(classes), np.intp)
        self.names = np.array([classes[i] for i in self.ids], np.str_)
        self.conf, self.iou, self.max_det = conf, iou, max_det

    def __call__(self, image: NDArray[np.uint8]) -> Detections:
        """Boxes in ``image``'s pixels."""
        blob, r, left, top = letterbox(image, self.size)
        out = np.asarray(self.session.run(None, {self.input: blob})[0][0], np.float64)
        scores = out[4 + self.ids]  # (K, A): the mapped classes only
        cls = scores.argmax(axis=0)
        conf = scores.max(axis=0)
        keep = conf >= self.conf
        cx, cy, w, h = out[:4, keep]
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        cls, conf = cls[keep], conf[keep]
        chosen: list[int] = []
        for i in np.argsort(-conf, kind="stable"):
            if len(chosen) >= self.max_det:
                break
            if all(cls[j] != cls[i] or _iou(xyxy[i], xyxy[j]) <= self.iou for j in chosen):
                chosen.append(int(i))
        if not chosen:
            return Detections.empty()
        boxes = (xyxy[chosen] - [left, top, left, top]) / r
        ih, iw = image.shape[:2]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, iw)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, ih)
        return Detections(
            boxes.astype(np.float32), conf[chosen].astype(np.float32), self.names[cls[chosen]]
        )
