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
keeps the rest in float. Even then the decode head stays float: it is found in the graph (the
last Ultralytics module, ``/model.22/`` in YOLOv8, ``/model.23/`` in YOLO11), and a copy whose
scores collapsed anyway is refused by the check below.

Per-channel weights need ``DequantizeLinear``'s ``axis``, which ONNX added in opset 13: a model
exported at an older opset (the catalogue's yolox_nano is opset 11) is upgraded with ONNX's
version converter first, or ONNX Runtime refuses the result as an invalid graph. Per-tensor
weights would avoid the upgrade but are no substitute: on yolox_nano they gave one box at 0.49
on every frame of the construction clip where fp32 and per-channel found 1-5 people.

The result is written beside ``OUT`` under a temporary name, loaded and run on the calibration
frames exactly as a site would load it, and only then renamed into place: a copy that does not
load or run is deleted and reported, never left where a site's ``path`` points.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import uuid
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
    import onnx

    from safewatch.detect.onnx_detector import OnnxDetector

__all__ = ["calibration_images", "check_destination", "quantize_model"]

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
    force: bool = False,
) -> Path:
    """Write an INT8 QDQ copy of ``source`` to ``dest``, calibrated on ``images``.

    Args:
        source: The fp32 ONNX model.
        dest: Where the quantised model goes.
        images: BGR calibration frames (a few dozen from the cameras it will watch).
        config: The model's site config (format, input size); defaults detect everything.
        all_operators: Quantise every operator ONNX Runtime can (faster, less accurate; see the
            module docstring), not only the convolutions.
        force: Replace a file already at ``dest`` (never ``source`` itself).

    Raises:
        ModelError: The model cannot be loaded or quantised, is already quantised, or the
            quantised copy does not load or run (then nothing is written to ``dest``); ``dest``
            is ``source``, or exists and ``force`` is not set.
    """
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
    check_destination(source, dest, force=force)
    config = config or ModelConfig(path=str(source))
    detector = OnnxDetector(config, source, source.stem)
    model = _float_model(source)
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
        upgraded = _at_least_opset_13(source, model, Path(tmp))
        partial = _partial_beside(dest)
        try:
            try:
                quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
                graph = _load(prepared).graph
                if all_operators:
                    ops = None
                    head = _decode_head(graph)
                    exclude = [n.name for n in graph.node if _in_decode_head(n.name, head)]
                else:
                    ops = ["Conv"]
                    exclude = [n.name for n in graph.node if "dfl" in n.name]
                quantize_static(
                    str(prepared),
                    str(partial),
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
            _check_quantised(source, detector, partial, images, config, all_operators)
            try:
                os.replace(partial, dest)
            except OSError as exc:
                raise ModelError(f"cannot write {dest}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
    log.info("quantised %s -> %s on %d frames", source, dest, len(images))
    return dest


_QUANTISED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "ConvInteger",
        "MatMulInteger",
    }
)


def _load(path: Path) -> onnx.ModelProto:
    import onnx

    return onnx.load(str(path))


def _float_model(source: Path) -> onnx.ModelProto:
    """``source`` as an ONNX graph, refused if it is already quantised.

    Quantising a QDQ model again does not fail in ONNX Runtime's quantiser: it writes a second
    set of Q/DQ nodes under the names of the first, and the copy then fails to load ("duplicate
    node name"); its scales would be calibrated on already-rounded activations anyway.
    """
    try:
        model = _load(source)
    except Exception as exc:  # DecodeError and friends; OnnxDetector already loaded it
        raise ModelError(f"model {source.name!r}: cannot read it as ONNX: {exc}") from exc
    quantised = sorted(
        {
            n.op_type
            for n in model.graph.node
            if n.op_type in _QUANTISED_OPS or n.op_type.startswith("QLinear")
        }
    )
    if quantised:
        raise ModelError(
            f"model {source.name!r} is already quantised (it has {', '.join(quantised)} "
            "nodes); quantise the fp32 model it was made from"
        )
    return model


def _at_least_opset_13(source: Path, model: onnx.ModelProto, folder: Path) -> Path:
    """``source``, or a copy in ``folder`` upgraded to opset 13 if it is older (see the module
    docstring: per-channel ``DequantizeLinear`` needs it)."""
    import onnx
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 13:
        return source
    try:
        upgraded = version_converter.convert_version(model, 13)
    except Exception as exc:  # the converter raises RuntimeError / ValueError / its own
        raise ModelError(
            f"model {source.name!r} is ONNX opset {opset} and could not be upgraded to opset 13, "
            f"which per-channel INT8 needs ({str(exc).splitlines()[0][:200]}); re-export it "
            "with opset 13 or newer"
        ) from exc
    path = folder / "opset13.onnx"
    onnx.save(upgraded, str(path))
    log.info("model %s: upgraded from opset %d to 13 for quantisation", source.name, opset)
    return path


def check_destination(source: Path, dest: Path, *, force: bool) -> None:
    """Refuse to write over the source model, or over any existing file without ``force``.

    ``-o`` used to overwrite whatever it named, the fp32 source included, which a mistyped
    ``-o`` then destroyed. As ``models import`` does for a cached name, replacing a file takes
    ``--force``. ``safewatch models quantize`` calls this before decoding the calibration
    frames too, so the refusal does not wait for a long video.

    Raises:
        ModelError: ``dest`` is ``source``, or exists and ``force`` is not set.
    """
    if dest.resolve() == source.resolve() or (dest.exists() and dest.samefile(source)):
        raise ModelError(f"{dest} is the model being quantised; write the INT8 copy elsewhere")
    if dest.exists() and not force:
        raise ModelError(f"{dest} already exists; choose another --out or replace it with --force")


def _partial_beside(dest: Path) -> Path:
    """A free temporary name in ``dest``'s folder, so the finished copy is renamed into place
    (atomically, on one file system) and a failed one never sits at ``dest``. Only named here:
    the quantiser creates the file, with the mode any new file gets."""
    if not dest.parent.is_dir():
        raise ModelError(f"cannot write {dest}: {dest.parent} is not a folder")
    return dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.part"


def _check_quantised(
    source: Path,
    reference: OnnxDetector,
    path: Path,
    images: Sequence[Image],
    config: ModelConfig,
    all_operators: bool,
) -> None:
    """Load the quantised copy at ``path`` as a site would and run it on the calibration frames.

    ``OnnxDetector`` refuses a graph ONNX Runtime cannot load and outputs that are not finite on
    a grey frame; the frames then show it runs on real pictures, and that its scores survived:
    its best class score over the frames must be at least half the fp32 ``reference``'s. One
    int8 scale over the head's concatenated pixel boxes and 0-1 scores rounds every score to
    zero, and the copy would run without error and never detect anything. Too few calibration
    frames can do much the same: yolox_nano calibrated on one frame scored 0.209 on it where
    fp32 scores 0.745.

    Raises:
        ModelError: It does not load, does not run, or its scores collapsed; the message says so
            and that nothing was written.
    """
    from safewatch.detect.onnx_detector import OnnxDetector

    what = f"model {source.name!r}: the quantised copy"
    try:
        quantised = OnnxDetector(config, path, f"{source.stem} (int8)")
        best = best_fp32 = 0.0
        for image in images:
            scores = quantised.raw([image]).scores
            if not np.isfinite(scores).all():
                raise ModelError("its scores are not finite on a calibration frame")
            best = max(best, float(scores.max(initial=0.0)))
            best_fp32 = max(best_fp32, float(reference.raw([image]).scores.max(initial=0.0)))
    except ModelError as exc:
        raise ModelError(f"{what} failed its check, so nothing was written: {exc}") from exc
    floor = min([config.confidence, *config.label_confidence.values()])
    if best_fp32 < floor:
        # Frames in which the fp32 model sees nothing give noise-level scores (0.0002-0.03 on
        # grey or noise frames) whose ratio means nothing either way: say what is wrong with
        # the frames instead of judging the copy on them.
        raise ModelError(
            f"{what} cannot be checked, so nothing was written: the fp32 model finds nothing "
            f"in the calibration frames (best class score {best_fp32:.3f}, below its lowest "
            f"threshold {floor:g}); calibrate on frames that show what it detects"
        )
    if best < best_fp32 / 2:
        advice = (
            "quantise without --all-operators"
            if all_operators
            else "calibrate on more frames (--frames) or keep the fp32 model"
        )
        raise ModelError(
            f"{what} lost its scores, so nothing was written: its best class score on the "
            f"calibration frames is {best:.3f} against {best_fp32:.3f} in fp32; {advice}"
        )


_MODULE = re.compile(r"/model\.(\d+)/")


def _decode_head(graph: onnx.GraphProto) -> str | None:
    """The node-name prefix of an Ultralytics export's ``Detect`` head: ``/model.N/`` with the
    highest N, since the head is the model's last module (22 in YOLOv8, 23 in YOLO11). ``None``
    for graphs not named that way; the score check in :func:`_check_quantised` still guards them.
    """
    indices = [int(m.group(1)) for n in graph.node if (m := _MODULE.match(n.name))]
    return f"/model.{max(indices)}/" if indices else None


def _in_decode_head(name: str, head: str | None) -> bool:
    """Nodes of a YOLO ``Detect`` head that decode boxes and scores (not its convolutions)."""
    return head is not None and name.startswith(head) and "/cv2" not in name and "/cv3" not in name
