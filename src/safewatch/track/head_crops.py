"""Where a person's head is, and the fixed-size crops the head classifier reads.

Shared by the runtime head verifier (:mod:`safewatch.track.head_check`) and the training script
(``training/head_classifier``) so the classifier is trained on exactly the crops it sees at run
time, located the same way.

A head is located from the best evidence available, in this order:

1. a PPE head box (``hardhat`` / ``no_hardhat``) the association gave to the person: it sits on
   the head, so it is used as is;
2. otherwise the person box: a square of side ``min(HEAD_WIDTH x width, HEAD_HEIGHT x height)``,
   centred horizontally, whose top is the box's top. The fractions were measured on the training
   photos (``training/head_classifier/extract.py`` prints them): over 1,545 detected persons matched
   to a labelled head, the head's width is a median 0.475 of the person's width (quartiles 0.40 /
   0.57) and its centre lies a median 0.10 of the person's height below the top edge (0.08 /
   0.14), i.e. a head about 0.2 person heights tall; the height cap keeps a standing full-body
   person's square on the head, and a floor of 0.3 widths keeps a short (cut-off) box's square
   from shrinking below a head.

The crop is the head box grown to a square of :data:`CONTEXT` x its longer side (so the hat brim,
hair and forehead are all in it, and a geometry estimate that is a little off still holds the
head), padded with the image's edge where it leaves the frame, and resized to the model's input.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from safewatch.domain import Image

__all__ = [
    "CONTEXT",
    "HEAD_HEIGHT",
    "HEAD_WIDTH",
    "MIN_WIDTH",
    "crop_heads",
    "head_from_person",
    "square",
]

HEAD_WIDTH = 0.45
"""Head width as a share of the person box's width (median 0.475 over the training photos)."""
HEAD_HEIGHT = 0.2
"""Cap on the head size as a share of the person box's height (median head depth 0.1 x height)."""
MIN_WIDTH = 0.3
"""Floor of the head size as a share of the person box's width."""
CONTEXT = 1.6
"""Crop side as a multiple of the head box's longer side."""


def head_from_person(persons: NDArray[np.floating]) -> NDArray[np.float64]:
    """Estimated head boxes ``(P, 4)`` xyxy of ``(P, 4)`` person boxes (see the module doc)."""
    p = np.asarray(persons, np.float64).reshape(-1, 4)
    w = p[:, 2] - p[:, 0]
    h = p[:, 3] - p[:, 1]
    side = np.minimum(HEAD_WIDTH * w, np.maximum(HEAD_HEIGHT * h, MIN_WIDTH * w))
    cx = (p[:, 0] + p[:, 2]) / 2
    return np.stack([cx - side / 2, p[:, 1], cx + side / 2, p[:, 1] + side], axis=1)


def square(boxes: NDArray[np.floating], scale: float = CONTEXT) -> NDArray[np.float64]:
    """Squares around ``(N, 4)`` boxes: same centre, side ``scale`` x the longer side."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = scale * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def crop_heads(image: Image, heads: NDArray[np.floating], size: int) -> NDArray[np.float32]:
    """Context crops of ``(N, 4)`` head boxes as ``(N, size, size, 3)`` BGR floats in 0-1.

    The square is cut on whole pixels, the part outside the frame filled by repeating the frame's
    edge (as a head cut by the frame edge continues), and resized with area averaging, which keeps
    a small hat's colour instead of aliasing it away.
    """
    squares = np.round(square(heads)).astype(np.int64)
    height, width = image.shape[:2]
    out = np.empty((len(squares), size, size, 3), np.float32)
    for i, (x1, y1, right, bottom) in enumerate(squares.tolist()):
        x2, y2 = max(right, x1 + 1), max(bottom, y1 + 1)
        cx1, cy1 = min(max(x1, 0), width - 1), min(max(y1, 0), height - 1)
        cx2, cy2 = max(min(x2, width), cx1 + 1), max(min(y2, height), cy1 + 1)
        crop = image[cy1:cy2, cx1:cx2]
        top, below, left, beyond = cy1 - y1, max(y2 - cy2, 0), cx1 - x1, max(x2 - cx2, 0)
        if top or below or left or beyond:
            crop = np.asarray(
                cv2.copyMakeBorder(crop, top, below, left, beyond, cv2.BORDER_REPLICATE), np.uint8
            )
        interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        resized = cv2.resize(crop, (size, size), interpolation=interpolation)
        out[i] = resized.astype(np.float32) / 255.0
    return out
