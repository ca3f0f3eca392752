"""The ONNX Runtime detector: one model file, any supported family, batches of frames.

Construction does everything that can fail (open the file, read the input, run a warm-up batch
and refuse non-finite outputs, recognise the output layout, resolve class names and the label
map), so a bad model is reported when the site starts (or by ``check-config``), with a message
naming the model, not on the first frame of the night shift.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from safewatch.config.site import ModelConfig
from safewatch.detect.class_names import metadata_image_size, resolve_class_names
from safewatch.detect.formats import Adapter, ConcreteFormat, Shape, adapter_for, detect_format
from safewatch.detect.formats.base import RawBatch, layout_error
from safewatch.detect.labels import LabelPlan, plan_labels
from safewatch.detect.preprocess import BatchBuffer
from safewatch.detect.providers import GpuOptions, largest_batch
from safewatch.detect.selection import select
from safewatch.detect.session import ModelInput, describe_input, open_session, read_metadata
from safewatch.detect.transform import ImageTransform, Placement, stride_aligned
from safewatch.domain import Detections, Frame, Image
from safewatch.errors import ModelError

__all__ = ["DEFAULT_INPUT_SIZE", "OnnxDetector"]

log = logging.getLogger(__name__)

DEFAULT_INPUT_SIZE = 640
"""Input size for models with a dynamic input and no ``imgsz`` metadata."""

DEFAULT_STRIDE = 32
"""Largest feature stride of the YOLO families, when the model's metadata has no ``stride``."""


class OnnxDetector:
    """A :class:`~safewatch.detect.protocol.Detector` backed by one ONNX Runtime session.

    Several frames go through one ``session.run``; models whose batch axis is fixed (or declared
    dynamic but failing with more than one image, as some hand-edited exports do) are run in
    chunks of their fixed size instead. ``detect`` holds a lock, so one instance can be shared by
    camera threads; the inference itself already uses ``config.threads`` cores.

    A model with a dynamic height and width (Ultralytics exports) gets each picture as the
    smallest stride-aligned rectangle inside its square (``config.rectangular``), like
    Ultralytics' own predictor: the construction clip's 640x352 frames run at 640x352 instead
    of a 640x640 letterbox, 55 % of the pixels, and a whole audit of that clip took 0.55x the CPU
    (1.83x the frames per CPU-second, yolov8n and ppe14 alike; docs/performance.md). Frames of
    one call are grouped by that shape, so a batch mixing camera aspects runs one session call
    per shape. Fixed-shape models and stretch-placed ones (DETR) keep their square.

    Args:
        config: The model's site config (format, input size, labels, thresholds, providers).
        path: The resolved ``.onnx`` file.
        name: The model's key in the site file, used in messages.
        max_batch: Largest batch sent in one run; larger requests are split. Under TensorRT
            at most ``config.gpu.max_batch``, the largest its optimisation profile covers.
        max_detections: Most boxes kept per frame after NMS.
    """

    def __init__(
        self,
        config: ModelConfig,
        path: Path,
        name: str,
        *,
        max_batch: int = 16,
        max_detections: int = 300,
    ) -> None:
        self.name = name
        self.config = config
        self.max_detections = max_detections
        gpu = GpuOptions(
            config.gpu.device_id,
            config.gpu.fp16,
            None
            if config.gpu.engine_cache is None
            else Path(path).parent / config.gpu.engine_cache,
            config.gpu.max_batch,
        )
        self._session = open_session(
            name, Path(path), config.providers, config.threads, gpu, config.input_size
        )
        self._input = describe_input(name, self._session)
        self._output_names = [o.name for o in self._session.get_outputs()]
        self.metadata = read_metadata(self._session)
        self.network_hw = self._network_size(self._input, config.input_size)
        max_batch = largest_batch(self._session.get_providers(), gpu, max_batch)
        self._chunk, shapes = self._warm_up(max_batch)
        fmt: ConcreteFormat = (
            detect_format(name, shapes, self.metadata, self.network_hw)
            if config.format == "auto"
            else config.format
        )
        self.format = fmt
        self.adapter: Adapter = adapter_for(
            fmt, name, shapes, self._output_names, config.class_names
        )
        num_classes = self.adapter.num_classes(name, shapes)
        self.class_names = resolve_class_names(name, num_classes, self.metadata, config.class_names)
        self.plan: LabelPlan = plan_labels(
            name, self.class_names, config.labels, config.confidence, config.label_confidence
        )
        placement = self.adapter.preprocessing.placement
        self.rectangular = (
            config.rectangular
            and self._input.height is None
            and self._input.width is None
            and placement is not Placement.STRETCH
        )
        self.stride = _metadata_stride(self.metadata)
        self._buffers: dict[tuple[int, int], BatchBuffer] = {}
        self._shapes: dict[tuple[int, int], tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._check_decodes(shapes)
        log.info(
            "model %r: %s, %d classes, input %dx%d, batch %s, providers %s",
            name,
            fmt,
            num_classes,
            self.network_hw[0],
            self.network_hw[1],
            self._chunk,
            self._session.get_providers(),
        )

    def twin(self) -> OnnxDetector:
        """Another detector over the same ONNX Runtime session, for a second calling thread.

        ``detect`` holds a per-instance lock around its reused batch buffers, so two threads
        sharing one instance take turns. A twin has its own buffers and lock but runs the same
        session, which ORT allows from several threads at once: with one intra-op thread each
        call runs on its caller, so two twins keep two cores busy, as two sessions would, without
        a second load, graph optimisation and warm-up (0.3 CPU-s for yolov8n here) or a
        second copy of the weights. ``safewatch audit`` runs its side-by-side batches this way
        (:func:`~safewatch.pipeline.stages.build_file_run_detectors`).
        """
        twin = copy.copy(self)
        twin._buffers = {}
        twin._shapes = {}
        twin._lock = threading.Lock()
        return twin

    @property
    def input_name(self) -> str:
        """The model's image input name."""
        return self._input.name

    def preprocess(self, images: Sequence[Image]) -> NDArray[np.float32]:
        """A copy of the network input ``detect`` would feed for ``images`` (all one size);
        for calibrating quantisation on exactly what the model will see."""
        with self._lock:
            shape = self.input_shape((images[0].shape[0], images[0].shape[1]))
            batch, _ = self._buffer(shape).fill(images)
            return batch.copy()

    def raw(self, images: Sequence[Image]) -> RawBatch:
        """The decoded output for ``images`` (all one size) before any threshold, label map or
        NMS: every class's score at every anchor; for checking a quantised copy against its
        source on the same frames."""
        batch = self.preprocess(images)
        with self._lock:
            return self.adapter.decode(self._run(batch), (batch.shape[2], batch.shape[3]))

    def input_shape(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """The network input ``(H, W)`` a picture of ``image_hw`` pixels is run at."""
        shape = self._shapes.get(image_hw)
        if shape is None:
            shape = (
                stride_aligned(image_hw, self.network_hw, self.stride)
                if self.rectangular
                else self.network_hw
            )
            self._shapes[image_hw] = shape
        return shape

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """Detect objects in each frame; boxes in that frame's pixels, site labels."""
        results: list[Detections | None] = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, frame in enumerate(frames):
            shape = self.input_shape((frame.image.shape[0], frame.image.shape[1]))
            groups.setdefault(shape, []).append(index)
        with self._lock:
            for shape, indices in groups.items():
                buffer = self._buffer(shape)
                for start in range(0, len(indices), self._chunk):
                    chunk = [frames[i] for i in indices[start : start + self._chunk]]
                    size = self._input.batch or len(chunk)
                    batch, transforms = buffer.fill([f.image for f in chunk], size)
                    raw = self.adapter.decode(self._run(batch), shape)
                    for i, (frame, transform) in enumerate(zip(chunk, transforms, strict=True)):
                        results[indices[start + i]] = self._finish(raw, i, frame, transform)
        return [r if r is not None else Detections.empty() for r in results]

    def _buffer(self, shape: tuple[int, int]) -> BatchBuffer:
        buffer = self._buffers.get(shape)
        if buffer is None:
            reference = self.network_hw if shape != self.network_hw else None
            buffer = BatchBuffer(self.adapter.preprocessing, shape, reference)
            self._buffers[shape] = buffer
        return buffer

    def _finish(
        self, raw: RawBatch, index: int, frame: Frame, transform: ImageTransform
    ) -> Detections:
        found = select(
            raw, index, self.plan, self.config.nms_iou, max_detections=self.max_detections
        )
        if not len(found.score):
            return Detections.empty()
        xyxy = transform.to_source(found.xyxy)
        np.clip(xyxy[:, 0::2], 0, frame.width, out=xyxy[:, 0::2])
        np.clip(xyxy[:, 1::2], 0, frame.height, out=xyxy[:, 1::2])
        return Detections(xyxy, found.score, self.plan.labels[found.kept])

    def _run(self, batch: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        feed = batch.astype(np.float16) if self._input.float16 else batch
        try:
            outputs = self._session.run(None, {self._input.name: feed})
        except Exception as exc:  # ORT's pybind exceptions share no useful base class
            raise ModelError(
                f"model {self.name!r}: inference failed on a batch of shape {list(batch.shape)}: "
                f"{str(exc).splitlines()[0][:300]}"
            ) from exc
        return [np.asarray(o, np.float32) for o in outputs]

    def _network_size(self, inp: ModelInput, configured: int | None) -> tuple[int, int]:
        if inp.height is not None and inp.width is not None:
            fixed = (inp.height, inp.width)
            if configured is not None and (configured, configured) != fixed:
                raise ModelError(
                    f"model {self.name!r} has a fixed {fixed[0]}x{fixed[1]} input but the config "
                    f"sets input_size {configured}; remove input_size or re-export the model"
                )
            return fixed
        if configured is not None:
            self._check_stride(configured)
            return configured, configured
        size = metadata_image_size(self.metadata)
        if size is not None:
            return inp.height or size[0], inp.width or size[1]
        return inp.height or DEFAULT_INPUT_SIZE, inp.width or DEFAULT_INPUT_SIZE

    def _check_stride(self, size: int) -> None:
        """Refuse a configured size that is not a multiple of the model's largest stride.

        A YOLO network halves the picture five times and concatenates upsampled maps with
        earlier ones, so at 500 px ONNX Runtime fails in a Concat node ("mismatched dimensions
        of 63 and 64"), after a warm-up retried without batching; rectangular input would also
        round past the square. DETR models have no such grid and are not checked: ``format:
        detr``, and under ``auto`` (the format is known only after the warm-up this size is
        for) a model with more than one output, as DETR's boxes and logits are, where every YOLO
        layout has one (RF-DETR sizes are multiples of 56, e.g. 560).
        """
        stride = _metadata_stride(self.metadata)
        detr_like = self.config.format == "auto" and len(self._output_names) > 1
        if self.config.format == "detr" or detr_like or size % stride == 0:
            return
        below = size // stride * stride
        nearest = f"{below} or {below + stride}" if below else str(stride)
        raise ModelError(
            f"model {self.name!r}: input_size {size} is not a multiple of {stride}, the model's "
            f"largest stride, so its feature maps cannot line up; use {nearest}"
        )

    def _warm_up(self, max_batch: int) -> tuple[int, list[Shape]]:
        """Run a grey batch once: pays ORT's first-run cost now and reveals the output shapes.

        A dynamic batch axis is tried with two images; if the model cannot run them (a fixed
        reshape inside the graph), it is run one image at a time from then on.
        """
        grey = np.full((1, 3, *self.network_hw), 0.5, np.float32)
        if self._input.batch is not None:
            outputs = self._finite(self._run(np.repeat(grey, self._input.batch, axis=0)))
            return self._input.batch, [tuple(o.shape) for o in outputs]
        if max_batch > 1:
            try:
                outputs = self._finite(self._run(np.repeat(grey, 2, axis=0)))
                if all(o.shape[:1] == (2,) for o in outputs):
                    return max_batch, [(1, *o.shape[1:]) for o in outputs]
            except ModelError:
                pass
            log.warning("model %r cannot run batches despite its dynamic axis; looping", self.name)
        outputs = self._finite(self._run(grey))
        self._input = ModelInput(
            self._input.name, 1, self._input.height, self._input.width, self._input.float16
        )
        return 1, [tuple(o.shape) for o in outputs]

    def _finite(self, outputs: list[NDArray[np.float32]]) -> list[NDArray[np.float32]]:
        """Refuse a model whose outputs on the grey warm-up frame are not all finite.

        NaN scores never pass a threshold, so such a model would run silently and see nothing.
        """
        for name, output in zip(self._output_names, outputs, strict=True):
            bad = int(output.size - np.count_nonzero(np.isfinite(output)))
            if bad:
                raise ModelError(
                    f"model {self.name!r}: output {name!r} has {bad} of {output.size} values "
                    "NaN or infinite on a plain grey frame; the file is broken (a bad export or "
                    "quantisation): re-export it or use another model"
                )
        return outputs

    def _check_decodes(self, shapes: Sequence[Shape]) -> None:
        """Decode the warm-up shapes once so layout surprises surface at start-up."""
        fake = [np.zeros(s, np.float32) for s in shapes]
        try:
            raw = self.adapter.decode(fake, self.network_hw)
        except (ValueError, IndexError) as exc:
            raise layout_error(self.name, shapes, str(exc)) from exc
        select(raw, 0, self.plan, self.config.nms_iou)


def _metadata_stride(metadata: dict[str, str]) -> int:
    """The model's largest stride from its ``stride`` metadata (Ultralytics writes it)."""
    try:
        stride = int(float(metadata.get("stride", DEFAULT_STRIDE)))
    except ValueError:
        return DEFAULT_STRIDE
    return stride if stride > 0 else DEFAULT_STRIDE
