"""Where a source picture lands inside the network input, and how boxes come back.

Every supported model family resizes the picture one of two ways: a *letterbox* (keep the aspect
ratio, pad the rest with grey 114, centred for Ultralytics, top-left for YOLOX) or a plain
*stretch* to the input size (DETR family). Both are an axis-aligned scale plus an offset, so one
small value type describes them and maps boxes both ways; the detector keeps one per frame so a
batch may mix cameras of different resolutions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import NDArray

__all__ = ["ImageTransform", "Placement", "fit", "stride_aligned"]


class Placement(Enum):
    """How a picture is fitted into the network input."""

    LETTERBOX_CENTER = "letterbox_center"
    """Keep aspect ratio, pad equally on both sides (Ultralytics YOLOv5/v8/11)."""
    LETTERBOX_TOP_LEFT = "letterbox_top_left"
    """Keep aspect ratio, pad only right and bottom (YOLOX)."""
    STRETCH = "stretch"
    """Resize each axis independently to fill the input (DETR, RF-DETR)."""


@dataclass(frozen=True, slots=True)
class ImageTransform:
    """``network = source * scale + pad`` per axis.

    Attributes:
        scale_x: Horizontal scale from source to network pixels.
        scale_y: Vertical scale from source to network pixels (equal to ``scale_x`` for letterbox).
        pad_x: Left padding in network pixels.
        pad_y: Top padding in network pixels.
        resized_width: Width in network pixels of the resized picture (without padding).
        resized_height: Height in network pixels of the resized picture (without padding).
    """

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    resized_width: int
    resized_height: int

    def to_network(self, xyxy: NDArray[np.float32]) -> NDArray[np.float32]:
        """Map ``(N, 4)`` source-pixel boxes into network-input pixels."""
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], np.float64)
        pad = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float64)
        return (np.asarray(xyxy, np.float64) * scale + pad).astype(np.float32)

    def to_source(self, xyxy: NDArray[np.float32]) -> NDArray[np.float32]:
        """Map ``(N, 4)`` network-input boxes back to source pixels (not clipped)."""
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], np.float64)
        pad = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float64)
        return ((np.asarray(xyxy, np.float64) - pad) / scale).astype(np.float32)


def fit(
    source_hw: tuple[int, int],
    network_hw: tuple[int, int],
    placement: Placement,
    *,
    reference_hw: tuple[int, int] | None = None,
) -> ImageTransform:
    """Compute how a ``source_hw`` picture is placed into a ``network_hw`` input.

    The letterbox follows Ultralytics' arithmetic (gain ``min(H/h, W/w)``, resized size rounded,
    centred padding split with ``round(d - 0.1)`` on the top/left) so boxes match a reference
    export to the pixel. ``reference_hw`` is the square the gain is computed against when
    ``network_hw`` is the stride-aligned rectangle of :func:`stride_aligned` (as Ultralytics'
    ``LetterBox(auto=True)`` does: gain from ``imgsz``, padding only up to the stride).
    """
    src_h, src_w = source_hw
    net_h, net_w = network_hw
    if src_h <= 0 or src_w <= 0:
        raise ValueError(f"source size must be positive, got {source_hw}")
    if placement is Placement.STRETCH:
        return ImageTransform(net_w / src_w, net_h / src_h, 0, 0, net_w, net_h)
    ref_h, ref_w = reference_hw if reference_hw is not None else network_hw
    gain = min(ref_h / src_h, ref_w / src_w)
    new_w = min(net_w, max(1, round(src_w * gain)))
    new_h = min(net_h, max(1, round(src_h * gain)))
    if placement is Placement.LETTERBOX_TOP_LEFT:
        return ImageTransform(gain, gain, 0, 0, new_w, new_h)
    pad_x = round((net_w - new_w) / 2 - 0.1)
    pad_y = round((net_h - new_h) / 2 - 0.1)
    return ImageTransform(gain, gain, max(0, pad_x), max(0, pad_y), new_w, new_h)


def stride_aligned(
    source_hw: tuple[int, int], network_hw: tuple[int, int], stride: int
) -> tuple[int, int]:
    """The smallest stride-multiple input holding a ``source_hw`` picture letterboxed into
    ``network_hw``: a 640x352 camera runs at 640x352 (55 % of a 640 square's pixels), a 1080p
    one at 640x384, a 4:3 one at 640x480.

    Only for models whose height and width are dynamic; the gain stays that of ``network_hw``
    (pass it as ``reference_hw`` to :func:`fit`), so boxes are the square input's within
    rounding. Ultralytics' ``LetterBox(auto=True)`` computes the same shape when ``network_hw``
    is a multiple of ``stride``.
    """
    src_h, src_w = source_hw
    net_h, net_w = network_hw
    if src_h <= 0 or src_w <= 0 or stride <= 0:
        raise ValueError(f"source size and stride must be positive, got {source_hw}, {stride}")
    gain = min(net_h / src_h, net_w / src_w)
    new_h = min(net_h, max(1, round(src_h * gain)))
    new_w = min(net_w, max(1, round(src_w * gain)))
    return -(-new_h // stride) * stride, -(-new_w // stride) * stride
