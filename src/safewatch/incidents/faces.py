"""Find faces in evidence frames, so privacy also hides people the person detector missed.

Head regions from the pipeline's own boxes (:mod:`safewatch.incidents.privacy`) cover only people
some detector found. On the Hard Hat Workers evaluation photos about a fifth of the labelled
persons are never detected by the example site's person model (small heads in crowds), and their
faces were left visible in every still. A face detector run on the evidence frame itself finds
them without depending on the person detector.

The detector is YuNet (libfacedetection, Apache-2.0; OpenCV's model zoo ships the same file as
``face_detection_yunet_2023mar.onnx`` under MIT), about 0.23 MB with a fixed 640x640 input. The
frame is resized to fit 640 on its longer side (aspect kept) and padded bottom / right with zeros,
as the model's own reference code does; the raw heads are decoded here (per stride 8/16/32:
score = sqrt(cls * obj), box centre = (cell + offset) * stride, size = exp(log size) * stride)
and overlapping faces are merged by NMS at IoU 0.3. Landmarks are not needed to hide a face and
are not decoded.

It runs on evidence only (stills and clip frames), never on every analysed frame: see
``bench/face_privacy`` for its cost per still and how many missed persons' faces it hides.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from safewatch.detect.nms import nms
from safewatch.detect.session import open_session
from safewatch.domain import Image
from safewatch.errors import ModelError

__all__ = ["FACE_SCORE", "FaceDetector", "face_detector"]

_SIDE = 640
_STRIDES = (8, 16, 32)
_NMS_IOU = 0.3
FACE_SCORE = 0.3
"""Lowest face score kept, chosen on the training photos (``bench/face_privacy --data train``,
479 photos): faces of persons the person detector missed hidden 0.682 without faces, 0.723 at
0.3, 0.699 at 0.5; hat domes hidden 225 of 1,302 without faces, 236 at 0.3 (face regions never
grow above the dome of a hat the PPE model found; the extra ones are hats it missed). Privacy
prefers hiding a non-face to showing a face. A 2x2 tiled run hid 6 more of 336 missed faces at
5x the cost, so the frame is read once."""


class FaceDetector:
    """YuNet on one ONNX Runtime session (one intra-op thread: a small model on a busy host).

    Args:
        path: The YuNet ``.onnx`` file (input ``[1, 3, 640, 640]`` BGR 0-255).
        score: Lowest face score kept.

    Raises:
        ModelError: The file is missing or not loadable.
    """

    def __init__(self, path: Path, *, score: float = FACE_SCORE) -> None:
        self._session = open_session("faces", path, ["CPUExecutionProvider"], threads=1)
        self._input = self._session.get_inputs()[0].name
        names = [o.name for o in self._session.get_outputs()]
        self._outputs = [f"{kind}_{s}" for s in _STRIDES for kind in ("cls", "obj", "bbox")]
        missing = sorted(set(self._outputs) - set(names))
        if missing:
            raise ModelError(f"{path}: not a YuNet face detector (no outputs {missing})")
        self.score = score
        # One session may be called from the recorder and the incident thread at once; ORT
        # sessions are thread-safe, the lock only keeps two 640x640 runs from competing.
        self._lock = threading.Lock()
        self._grids = {s: _grid(_SIDE // s) for s in _STRIDES}

    def detect(self, image: Image) -> NDArray[np.float32]:
        """``(N, 5)`` faces of ``image``: ``x1, y1, x2, y2`` in its pixels, and the score."""
        height, width = image.shape[:2]
        scale = _SIDE / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        canvas = np.zeros((_SIDE, _SIDE, 3), np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        with self._lock:
            raw = self._session.run(self._outputs, {self._input: blob})
        boxes: list[NDArray[np.float32]] = []
        scores: list[NDArray[np.float32]] = []
        for k, stride in enumerate(_STRIDES):
            cls, obj, bbox = (np.asarray(a, np.float32)[0] for a in raw[3 * k : 3 * k + 3])
            score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
            keep = np.flatnonzero(score >= self.score)
            if len(keep) == 0:
                continue
            cells = self._grids[stride][keep]
            centre = (cells + bbox[keep, :2]) * stride
            size = np.exp(bbox[keep, 2:]) * stride
            boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
            scores.append(score[keep])
        if not boxes:
            return np.zeros((0, 5), np.float32)
        xyxy = np.concatenate(boxes) / scale
        conf = np.concatenate(scores)
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, width)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, height)
        ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        xyxy, conf = xyxy[ok], conf[ok]
        kept = nms(xyxy, conf, np.zeros(len(conf), np.int32), _NMS_IOU)
        return np.concatenate([xyxy[kept], conf[kept, None]], axis=1).astype(np.float32)


def _grid(cells: int) -> NDArray[np.float32]:
    """``(cells * cells, 2)`` column, row of each cell, row-major (the model's output order)."""
    rows, cols = np.divmod(np.arange(cells * cells), cells)
    return np.stack([cols, rows], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=4)
def face_detector(name_or_path: str) -> FaceDetector:
    """The process's detector for a site's ``privacy.faces`` (loaded once, then shared).

    Args:
        name_or_path: A catalogue or imported model name (``yunet``), or a file path (relative
            paths from the working directory; a site file's own relative paths are made
            absolute when it loads, :func:`safewatch.config.loader.load_site`).

    Raises:
        ModelError: Not found (the message says how to pull it) or not loadable.
    """
    from safewatch.detect.catalogue import resolve

    return FaceDetector(resolve(name_or_path, Path.cwd()))
