"""Turn BGR frames into one float32 NCHW batch, the way a model family was trained to see them.

A batch buffer is preallocated and reused across calls: at 640x640 a batch of four is 20 MB, and
allocating, zero-filling and freeing that for every frame on a 24/7 stream is wasted memory traffic.
Each picture is resized once with OpenCV and written straight into its slot with the channel swap,
scale and normalisation fused into one NumPy pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from safewatch.detect.transform import ImageTransform, Placement, fit
from safewatch.domain import Image

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "BatchBuffer", "Preprocessing"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""RGB channel means on the 0-1 scale, used by DETR-family backbones."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""RGB channel standard deviations on the 0-1 scale."""


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """What a model expects as input.

    Attributes:
        placement: Letterbox (centred or top-left) or stretch.
        rgb: ``True`` to feed RGB channel order, ``False`` to keep OpenCV's BGR.
        scale: Factor applied to the 0-255 pixel values (``1/255`` or ``1``).
        mean: Per-channel mean (in network channel order, after ``scale``) to subtract, if any.
        std: Per-channel standard deviation to divide by, if any.
        pad_value: Grey level (0-255) of letterbox padding.
    """

    placement: Placement
    rgb: bool
    scale: float
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    pad_value: int = 114

    def affine(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Per-channel ``(gain, offset)`` so that ``network = pixel * gain + offset``."""
        mean = np.asarray(self.mean if self.mean is not None else (0.0, 0.0, 0.0), np.float64)
        std = np.asarray(self.std if self.std is not None else (1.0, 1.0, 1.0), np.float64)
        gain = self.scale / std
        offset = -mean / std
        return gain.astype(np.float32), offset.astype(np.float32)


class BatchBuffer:
    """A reusable ``(B, 3, H, W)`` float32 input batch for one model and one input shape.

    ``reference_hw`` is the model's square size when ``network_hw`` is a stride-aligned rectangle
    (see :func:`~safewatch.detect.transform.stride_aligned`): the resize gain comes from it.

    Not thread-safe: the array returned by :meth:`fill` is overwritten by the next call, so the
    owner (one detector) must finish its inference first.
    """

    def __init__(
        self,
        spec: Preprocessing,
        network_hw: tuple[int, int],
        reference_hw: tuple[int, int] | None = None,
    ) -> None:
        self.spec = spec
        self.network_hw = network_hw
        self.reference_hw = reference_hw
        self._gain, self._offset = spec.affine()
        pad = (np.full(3, float(spec.pad_value), np.float32) * self._gain) + self._offset
        self._pad = pad.reshape(3, 1, 1)
        self._gain_chw = self._gain.reshape(3, 1, 1)
        self._offset_chw = self._offset.reshape(3, 1, 1)
        self._identity = bool(np.all(self._gain == 1.0) and np.all(self._offset == 0.0))
        self._batch = np.empty((0, 3, *network_hw), np.float32)

    def fill(
        self, images: Sequence[Image], size: int | None = None
    ) -> tuple[NDArray[np.float32], list[ImageTransform]]:
        """Write ``images`` into the batch and return it with one transform per image.

        Args:
            images: BGR ``uint8`` pictures of any size.
            size: Batch size to return, at least ``len(images)``; extra slots are padding for
                models with a fixed batch size and hold grey images.

        Returns:
            The ``(size, 3, H, W)`` batch (a view of the reused buffer) and the transforms that map
            each image's boxes back to its own pixels.
        """
        n = len(images)
        size = n if size is None else size
        if size < n:
            raise ValueError(f"size {size} is smaller than the {n} images given")
        if self._batch.shape[0] < size:
            self._batch = np.empty((size, 3, *self.network_hw), np.float32)
        batch = self._batch[:size]
        transforms = [self._write(image, batch[i]) for i, image in enumerate(images)]
        if size > n:
            batch[n:] = self._pad
        return batch, transforms

    def _write(self, image: Image, slot: NDArray[np.float32]) -> ImageTransform:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}"
            )
        t = fit(
            (image.shape[0], image.shape[1]),
            self.network_hw,
            self.spec.placement,
            reference_hw=self.reference_hw,
        )
        w, h = t.resized_width, t.resized_height
        if (h, w) != image.shape[:2]:
            image = np.asarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)
        if (h, w) != self.network_hw:
            slot[...] = self._pad
        pixels = image[:, :, ::-1] if self.spec.rgb else image
        region = slot[:, t.pad_y : t.pad_y + h, t.pad_x : t.pad_x + w]
        chw = pixels.transpose(2, 0, 1)
        if self._identity:
            region[...] = chw
        else:
            np.multiply(chw, self._gain_chw, out=region)
            if np.any(self._offset):
                region += self._offset_chw
        return t
