"""Session and execution-provider options: exactly what reaches ONNX Runtime.

CUDA and TensorRT cannot run on a machine without a GPU; what can be checked here is that the
options built for them are the documented ones, and that the CPU session options are applied.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from safewatch.config.site import GpuConfig, ModelConfig
from safewatch.detect.providers import (
    CPU,
    CUDA,
    OPENVINO,
    TENSORRT,
    GpuOptions,
    InputSpec,
    largest_batch,
    provider_options,
    session_options,
)


def test_cpu_session_options_turn_spinning_off() -> None:
    options = session_options(2)
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_cpu_provider_gets_no_options() -> None:
    assert provider_options([CPU], GpuOptions()) == [(CPU, {})]


def test_tensorrt_gets_fp16_engine_cache_and_a_batch_profile_up_to_32() -> None:
    spec = InputSpec("images", 640, 640, dynamic=True)
    gpu = GpuOptions(device_id=1, fp16=True, engine_cache=Path("/var/cache/trt"), max_batch=32)
    [(name, trt), (cuda_name, cuda), (cpu_name, cpu)] = provider_options(
        [TENSORRT, CUDA, CPU], gpu, spec
    )
    assert (name, cuda_name, cpu_name) == (TENSORRT, CUDA, CPU)
    assert trt == {
        "device_id": "1",
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": "/var/cache/trt",
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": "/var/cache/trt",
        "trt_profile_min_shapes": "images:1x3x32x32",
        "trt_profile_opt_shapes": "images:8x3x640x640",
        "trt_profile_max_shapes": "images:32x3x640x640",
    }
    assert cuda["device_id"] == "1" and cuda["cudnn_conv_algo_search"] == "HEURISTIC"
    assert cpu == {}


def test_tensorrt_fixed_shape_profile_fp32_and_no_cache() -> None:
    spec = InputSpec("images", 416, 416)
    [(_, trt)] = provider_options([TENSORRT], GpuOptions(fp16=False, max_batch=4), spec)
    assert trt["trt_fp16_enable"] == "False"
    assert "trt_engine_cache_enable" not in trt
    assert trt["trt_profile_min_shapes"] == "images:1x3x416x416"
    assert trt["trt_profile_opt_shapes"] == "images:4x3x416x416"
    assert trt["trt_profile_max_shapes"] == "images:4x3x416x416"


def test_openvino_provider_targets_the_cpu() -> None:
    assert provider_options([OPENVINO], GpuOptions()) == [(OPENVINO, {"device_type": "CPU"})]


@pytest.mark.parametrize("max_batch", [0, 33])
def test_batch_profile_is_bounded(max_batch: int) -> None:
    with pytest.raises(ValueError, match="1-32"):
        provider_options([TENSORRT], GpuOptions(max_batch=max_batch))


def test_site_config_defaults_and_limits() -> None:
    config = ModelConfig(path="m.onnx", providers=[TENSORRT, CUDA, CPU])
    assert config.gpu == GpuConfig()
    assert (config.gpu.fp16, config.gpu.max_batch, config.gpu.engine_cache) == (
        True,
        32,
        "trt-cache",
    )
    with pytest.raises(ValueError, match="less than or equal to 32"):
        GpuConfig(max_batch=64)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("yolov8n_coco", InputSpec("images", 640, 640, dynamic=True)),
        ("yolox_nano_coco", InputSpec("images", 416, 416, dynamic=False)),
    ],
)
def test_tensorrt_profile_reads_the_real_models_input(model: str, expected: InputSpec) -> None:
    from assets import asset
    from safewatch.detect.session import _input_spec

    assert _input_spec(asset(f"models/{model}.onnx")) == expected


@pytest.mark.parametrize("input_size", [320, 1280])
def test_tensorrt_profile_covers_the_configured_input_size(input_size: int) -> None:
    """The profile came from the export's imgsz (640) whatever ``input_size`` said, while the
    detector runs a dynamic model at ``input_size``: 1280 fell outside the profile."""
    from assets import asset
    from safewatch.detect.session import _input_spec

    spec = _input_spec(asset("models/yolov8n_coco.onnx"), input_size)
    assert spec == InputSpec("images", input_size, input_size, dynamic=True)
    [(_, trt)] = provider_options([TENSORRT], GpuOptions(max_batch=16), spec)
    assert trt["trt_profile_min_shapes"] == "images:1x3x32x32"
    assert trt["trt_profile_max_shapes"] == f"images:16x3x{input_size}x{input_size}"


def test_the_detector_gives_tensorrt_its_configured_input_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What OnnxDetector hands ONNX Runtime for a TensorRT model configured at 320: this ORT has
    no TensorRT, so it is made to look available and the session falls back to the CPU."""
    from assets import asset
    from safewatch.detect import OnnxDetector, session

    real = ort.get_available_providers()
    monkeypatch.setattr(session.ort, "get_available_providers", lambda: [TENSORRT, *real])
    seen: list[InputSpec | None] = []

    def spy(
        providers: list[str], gpu: GpuOptions, spec: InputSpec | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        seen.append(spec)
        return provider_options(providers, gpu, spec)

    monkeypatch.setattr(session, "provider_options", spy)
    path = asset("models/yolov8n_coco.onnx")
    config = ModelConfig(path=str(path), input_size=320, providers=[TENSORRT, CPU])
    detector = OnnxDetector(config, path, "m")
    assert detector.network_hw == (320, 320)
    assert seen == [InputSpec("images", 320, 320, dynamic=True)]


@pytest.mark.parametrize(
    ("providers", "profile", "expected"),
    [
        ([TENSORRT, CUDA, CPU], 8, 8),  # the profile stops at 8: larger batches fall outside it
        ([TENSORRT, CPU], 32, 16),  # the detector's own limit is lower
        ([CUDA, CPU], 8, 16),  # no TensorRT, no profile
        ([CPU], 4, 16),
    ],
)
def test_batches_are_split_within_the_tensorrt_profile(
    providers: list[str], profile: int, expected: int
) -> None:
    """Batches were split at the detector's max_batch (16) even where TensorRT's profile, sized
    by gpu.max_batch, covers fewer."""
    assert largest_batch(providers, GpuOptions(max_batch=profile), 16) == expected


def test_the_detector_runs_batches_no_larger_than_the_tensorrt_profile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This ORT has no TensorRT: the session is made to report it, and runs on the CPU."""
    import numpy as np

    from assets import asset
    from safewatch.detect import OnnxDetector, session
    from safewatch.domain import Frame

    real = ort.get_available_providers()
    monkeypatch.setattr(session.ort, "get_available_providers", lambda: [TENSORRT, *real])
    monkeypatch.setattr(ort.InferenceSession, "get_providers", lambda self: [TENSORRT, CPU])
    path = asset("models/yolov8n_coco.onnx")
    config = ModelConfig(path=str(path), providers=[TENSORRT, CPU], gpu=GpuConfig(max_batch=4))
    detector = OnnxDetector(config, path, "m")
    sizes: list[int] = []
    run = detector._session.run

    def spy(outputs: None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        sizes.append(len(feed["images"]))
        return run(outputs, feed)

    monkeypatch.setattr(detector._session, "run", spy)
    grey = np.full((64, 64, 3), 114, np.uint8)
    detector.detect([Frame("c", i, 0.0, 0.0, grey) for i in range(9)])
    assert sizes == [4, 4, 1]
