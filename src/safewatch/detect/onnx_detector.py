"""The ONNX Runtime detector: one model file, any supported family, batches of frames.

Construction does everything that can fail (open the file, read the input, run a warm-up batch,
recognise the output layout, resolve class names and the label map), so a bad model is reported
when the site starts, with a message naming the model, not on the first frame of the night shift.
"""

from __future__ import annotations

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
from safewatch.detect.selection import select
from safewatch.detect.session import ModelInput, describe_input, open_session, read_metadata
from safewatch.detect.transform import ImageTransform
from safewatch.domain import Detections, Frame
from safewatch.errors import ModelError

__all__ = ["DEFAULT_INPUT_SIZE", "OnnxDetector"]

log = logging.getLogger(__name__)

DEFAULT_INPUT_SIZE = 640
"""Input size for models with a dynamic input and no ``imgsz`` metadata."""


class OnnxDetector:
    """A :class:`~safewatch.detect.protocol.Detector` backed by one ONNX Runtime session.

    Several frames go through one ``session.run``; models whose batch axis is fixed (or declared
    dynamic but failing with more than one image, as some hand-edited exports do) are run in
    chunks of their fixed size instead. ``detect`` holds a lock, so one instance can be shared by
    camera threads; the inference itself already uses ``config.threads`` cores.

    Args:
        config: The model's site config (format, input size, labels, thresholds, providers).
        path: The resolved ``.onnx`` file.
        name: The model's key in the site file, used in messages.
        max_batch: Largest batch sent in one run; larger requests are split.
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
        self._session = open_session(name, Path(path), config.providers, config.threads)
        self._input = describe_input(name, self._session)
        self._output_names = [o.name for o in self._session.get_outputs()]
        self.metadata = read_metadata(self._session)
        self.network_hw = self._network_size(self._input, config.input_size)
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
        self._buffer = BatchBuffer(self.adapter.preprocessing, self.network_hw)
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

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """Detect objects in each frame; boxes in that frame's pixels, site labels."""
        results: list[Detections] = []
        with self._lock:
            for start in range(0, len(frames), self._chunk):
                chunk = frames[start : start + self._chunk]
                size = self._input.batch or len(chunk)
                batch, transforms = self._buffer.fill([f.image for f in chunk], size)
                outputs = self._run(batch)
                raw = self.adapter.decode(outputs, self.network_hw)
                for i, (frame, transform) in enumerate(zip(chunk, transforms, strict=True)):
                    results.append(self._finish(raw, i, frame, transform))
        return results

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
            return configured, configured
        size = metadata_image_size(self.metadata)
        if size is not None:
            return inp.height or size[0], inp.width or size[1]
        return inp.height or DEFAULT_INPUT_SIZE, inp.width or DEFAULT_INPUT_SIZE

    def _warm_up(self, max_batch: int) -> tuple[int, list[Shape]]:
        """Run a grey batch once: pays ORT's first-run cost now and reveals the output shapes.

        A dynamic batch axis is tried with two images; if the model cannot run them (a fixed
        reshape inside the graph), it is run one image at a time from then on.
        """
        grey = np.full((1, 3, *self.network_hw), 0.5, np.float32)
        if self._input.batch is not None:
            outputs = self._run(np.repeat(grey, self._input.batch, axis=0))
            return self._input.batch, [tuple(o.shape) for o in outputs]
        if max_batch > 1:
            try:
                outputs = self._run(np.repeat(grey, 2, axis=0))
                if all(o.shape[:1] == (2,) for o in outputs):
                    return max_batch, [(1, *o.shape[1:]) for o in outputs]
            except ModelError:
                pass
            log.warning("model %r cannot run batches despite its dynamic axis; looping", self.name)
        outputs = self._run(grey)
        self._input = ModelInput(
            self._input.name, 1, self._input.height, self._input.width, self._input.float16
        )
        return 1, [tuple(o.shape) for o in outputs]

    def _check_decodes(self, shapes: Sequence[Shape]) -> None:
        """Decode the warm-up shapes once so layout surprises surface at start-up."""
        fake = [np.zeros(s, np.float32) for s in shapes]
        try:
            raw = self.adapter.decode(fake, self.network_hw)
        except (ValueError, IndexError) as exc:
            raise layout_error(self.name, shapes, str(exc)) from exc
        select(raw, 0, self.plan, self.config.nms_iou)
