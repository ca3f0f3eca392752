"""INT8 static quantisation of a detection model, calibrated on the site's own footage.

``safewatch models quantize MODEL VIDEO... -o OUT`` writes an ONNX Runtime QDQ model (weights
int8 per channel, activations uint8) whose scales come from frames of the given videos, fed
through exactly the detector's preprocessing and input shape. The result runs on the ordinary
CPU provider; point a model's ``path`` at it.

Only convolutions are quantised, and never the decode head's distribution-focal-loss layer: the
YOLOv8 head concatenates box coordinates (0-640 pixels) and class scores (0-1) into one output,
and one int8 scale over both rounds every score to zero (the published ``ppe14_best_int8.onnx``
is broken exactly so). Measured on the 2-core machine (docs/performance.md), yolov8n on PETS09
frames 1-100 at 640x480, conv-only against every quantisable operator:

=============  ================  ======  ======
model          CPU per frame     MOTA    IDF1
=============  ================  ======  ======
fp32           103.8 ms (1.00)   0.742   0.761
int8, convs     80.4 ms (0.77)   0.740   0.745
int8, all ops   67.4 ms (0.65)   0.730   0.688
=============  ================  ======  ======

Every operator quantised costs 0.07 IDF1 (identities swap on rounded scores), so the default
keeps the rest in float.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from safewatch.config.site import ModelConfig
from safewatch.domain import Image
from safewatch.errors import ModelError, SourceError

if TYPE_CHECKING:
    import av.container

__all__ = ["calibration_images", "quantize_model"]

log = logging.getLogger(__name__)


def calibration_images(videos: Sequence[Path], count: int) -> list[Image]:
    """``count`` BGR frames spread evenly over ``videos`` (every n-th decoded frame).

    The frames are counted first (the stream header, else a pass over the packets that decodes
    no pictures) so that only the kept frames are converted and held while decoding. Holding
    every decoded frame until the end took 518 MB for 32 frames of the 24 s 640x352 clip and
    would take about 90 GB for ten minutes of 1080p.

    Raises:
        SourceError: A video is missing or cannot be read.
        ModelError: No frame could be decoded.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    for video in videos:
        if not video.is_file():
            raise SourceError(f"video {video} does not exist or is not a file")
    total = sum(_frame_count(video) for video in videos)
    step = max(1, total // count)
    kept: list[Image] = []
    index = 0
    for video in videos:
        with _open_video(video) as container:
            for frame in container.decode(video=0):
                if index % step == 0:
                    kept.append(np.ascontiguousarray(frame.to_ndarray(format="bgr24")))
                    if len(kept) == count:
                        return kept
                index += 1
    if not kept:
        raise ModelError(f"no frames could be decoded from {', '.join(map(str, videos))}")
    return kept


def _open_video(video: Path) -> av.container.InputContainer:
    import av

    try:
        return av.open(str(video))
    except av.FFmpegError as exc:
        raise SourceError(f"cannot read video {video}: {exc}") from exc


def _frame_count(video: Path) -> int:
    """Frames in ``video``'s first video stream, from its header or by counting its packets."""
    import av

    with _open_video(video) as container:
        if not container.streams.video:
            raise SourceError(f"video {video} has no video stream")
        stream = container.streams.video[0]
        if stream.frames > 0:
            return int(stream.frames)
        try:
            return sum(1 for packet in container.demux(stream) if packet.size)
        except av.FFmpegError as exc:
            raise SourceError(f"cannot read video {video}: {exc}") from exc


def quantize_model(
    source: Path,
    dest: Path,
    images: Sequence[Image],
    config: ModelConfig | None = None,
    *,
    all_operators: bool = False,
) -> Path:
    """Write an INT8 QDQ copy of ``source`` to ``dest``, calibrated on ``images``.

    Args:
        source: The fp32 ONNX model.
        dest: Where the quantised model goes.
        images: BGR calibration frames (a few dozen from the cameras it will watch).
        config: The model's site config (format, input size); defaults detect everything.
        all_operators: Quantise every operator ONNX Runtime can (faster, less accurate; see the
            module docstring), not only the convolutions.

    Raises:
        ModelError: The model cannot be loaded or quantised.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from safewatch.detect.onnx_detector import OnnxDetector

    if not images:
        raise ModelError("quantisation needs at least one calibration frame")
    detector = OnnxDetector(config or ModelConfig(path=str(source)), source, source.stem)
    input_name = detector.input_name

    def batches() -> Iterator[dict[str, NDArray[np.float32]]]:
        for image in images:
            yield {input_name: detector.preprocess([image])}

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._items = batches()

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            return next(self._items, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            graph = onnx.load(str(prepared)).graph
            if all_operators:
                ops = None
                exclude = [n.name for n in graph.node if _in_decode_head(n.name)]
            else:
                ops = ["Conv"]
                exclude = [n.name for n in graph.node if "dfl" in n.name]
            quantize_static(
                str(prepared),
                str(dest),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=ops,
                nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as exc:  # onnx / ORT raise many unrelated types
            raise ModelError(
                f"model {source.name!r}: quantisation failed: {str(exc).splitlines()[0][:300]}"
            ) from exc
    log.info("quantised %s -> %s on %d frames", source, dest, len(images))
    return dest


def _in_decode_head(name: str) -> bool:
    """Nodes of a YOLOv8 ``Detect`` head that decode boxes and scores (not its convolutions)."""
    return name.startswith("/model.22/") and "/cv2" not in name and "/cv3" not in name
