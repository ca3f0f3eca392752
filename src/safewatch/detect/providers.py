"""ONNX Runtime session and execution-provider options, built from a model's config.

Kept apart from opening the session so the options can be unit-tested on a machine without a GPU:
what reaches ``InferenceSession`` is exactly what these functions return.

CPU (measured on the 2-core development machine, yolov8n at 640x352, batch 4, docs/performance.md):

* ``session.intra_op.allow_spinning = 0``: ORT's worker threads otherwise busy-wait between
  operators and runs. On a shared or busy machine that spinning is pure CPU cost: 117 ms of CPU
  per frame with spinning against 76 ms without (0.65x), at no loss of wall time there.
* ``ORT_ENABLE_ALL`` graph optimisation (layout transforms, fusions) beat ``ENABLE_EXTENDED``
  (95 ms of CPU per frame); the CPU memory arena stays on (82 ms without it).

GPU (CUDA, TensorRT; not measured here, no GPU was lent to issue 17): TensorRT gets FP16 kernels,
an engine and timing cache on disk (building an engine takes minutes; the cache makes the next
start take seconds) and an optimisation profile covering batches 1 to ``max_batch`` (at most 32)
up to the size the model runs at (its configured ``input_size``, else its own), so a batch size
or camera aspect seen for the first time does not rebuild the engine.
CUDA gets the device and a heuristic cuDNN algorithm search (exhaustive search costs seconds per
new shape, and the inference worker's shapes vary with the batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

__all__ = [
    "CPU",
    "CUDA",
    "OPENVINO",
    "TENSORRT",
    "GpuOptions",
    "InputSpec",
    "largest_batch",
    "provider_options",
    "session_options",
]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"


@dataclass(frozen=True, slots=True)
class GpuOptions:
    """What a site sets for GPU providers (see ``ModelConfig.gpu``).

    Attributes:
        device_id: CUDA device ordinal.
        fp16: Let TensorRT pick FP16 kernels (about twice the FP32 throughput on tensor cores).
        engine_cache: Folder for TensorRT engines and timing caches; ``None`` disables caching.
        max_batch: Largest batch the TensorRT profile covers (1-32).
    """

    device_id: int = 0
    fp16: bool = True
    engine_cache: Path | None = None
    max_batch: int = 32


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The model's image input, for TensorRT's optimisation profile.

    ``dynamic`` models run stride-aligned rectangles up to ``height`` x ``width`` (a 640x352
    camera at 640x352), so their profile starts at 32x32.
    """

    name: str
    height: int
    width: int
    dynamic: bool = False


def session_options(threads: int) -> ort.SessionOptions:
    """CPU-side session options: full graph optimisation, ``threads`` intra-op threads
    (0: ONNX Runtime's choice, one per physical core), one inter-op thread (the graphs are
    sequential), and no spinning (see the module docstring for the measurement)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = True
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _shape(spec: InputSpec, batch: int, height: int, width: int) -> str:
    return f"{spec.name}:{batch}x3x{height}x{width}"


def provider_options(
    providers: Sequence[str], gpu: GpuOptions, spec: InputSpec | None = None
) -> list[tuple[str, dict[str, str]]]:
    """Each provider with the options ONNX Runtime should get for it, in the given order.

    Args:
        providers: Provider names, in order of preference (already filtered to available ones).
        gpu: The model's GPU settings.
        spec: The image input, when known: TensorRT then gets a profile for batches 1 to
            ``gpu.max_batch`` at that size (batch 8 as the shape it optimises for).

    Returns:
        ``(name, options)`` pairs; options are strings, as ONNX Runtime's Python API wants them.
    """
    if not 1 <= gpu.max_batch <= 32:
        raise ValueError(f"max_batch must be within 1-32, got {gpu.max_batch}")
    out: list[tuple[str, dict[str, str]]] = []
    for name in providers:
        options: dict[str, str] = {}
        if name == TENSORRT:
            options["device_id"] = str(gpu.device_id)
            options["trt_fp16_enable"] = "True" if gpu.fp16 else "False"
            if gpu.engine_cache is not None:
                cache = str(gpu.engine_cache)
                options["trt_engine_cache_enable"] = "True"
                options["trt_engine_cache_path"] = cache
                options["trt_timing_cache_enable"] = "True"
                options["trt_timing_cache_path"] = cache
            if spec is not None:
                low_h, low_w = (32, 32) if spec.dynamic else (spec.height, spec.width)
                options["trt_profile_min_shapes"] = _shape(spec, 1, low_h, low_w)
                options["trt_profile_opt_shapes"] = _shape(
                    spec, min(8, gpu.max_batch), spec.height, spec.width
                )
                options["trt_profile_max_shapes"] = _shape(
                    spec, gpu.max_batch, spec.height, spec.width
                )
        elif name == CUDA:
            options["device_id"] = str(gpu.device_id)
            options["cudnn_conv_algo_search"] = "HEURISTIC"
            options["arena_extend_strategy"] = "kSameAsRequested"
            options["do_copy_in_default_stream"] = "True"
        elif name == OPENVINO:
            options["device_type"] = "CPU"
        out.append((name, options))
    return out


def largest_batch(providers: Sequence[str], gpu: GpuOptions, requested: int) -> int:
    """The most images to send in one run: ``requested``, capped at ``gpu.max_batch`` when
    TensorRT is among the session's ``providers``.

    TensorRT's optimisation profile covers batches 1 to ``gpu.max_batch`` only
    (:func:`provider_options`); the detector used to split batches at its own limit (16) alone,
    so ``gpu.max_batch: 8`` sent batches of 16 outside the profile.
    """
    return min(requested, gpu.max_batch) if TENSORRT in providers else requested
