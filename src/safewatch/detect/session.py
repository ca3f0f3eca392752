"""Opening an ONNX Runtime session, with errors a user can act on.

ONNX Runtime's own messages for a wrong file ("Protobuf parsing failed") do not say *why*; the most
common causes are recognisable from the first bytes (a Git LFS pointer instead of the weights, an
HTML error page saved by a failed download, an image renamed by mistake), so the error says that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from safewatch.detect.class_names import metadata_image_size
from safewatch.detect.providers import (
    TENSORRT,
    GpuOptions,
    InputSpec,
    provider_options,
    session_options,
)
from safewatch.errors import ModelError

__all__ = ["ModelInput", "describe_input", "open_session", "read_metadata"]

log = logging.getLogger(__name__)

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"version https://git-lfs", "a Git LFS pointer, not the weights (run `git lfs pull`)"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"PK\x03\x04", "a zip archive (a PyTorch .pt checkpoint? export it to ONNX first)"),
    (b"<!doctype html", "an HTML page (a failed download?)"),
    (b"<html", "an HTML page (a failed download?)"),
)


@dataclass(frozen=True, slots=True)
class ModelInput:
    """The image input of a model; ``None`` for axes the model leaves dynamic."""

    name: str
    batch: int | None
    height: int | None
    width: int | None
    float16: bool


def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    lowered = head.lstrip().lower()
    for signature, meaning in _SIGNATURES:
        if lowered.startswith(signature.lower()):
            return meaning
    if not head:
        return "empty"
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "a text file"
    return "not a valid ONNX model"


def open_session(
    model: str,
    path: Path,
    providers: Sequence[str],
    threads: int,
    gpu: GpuOptions | None = None,
    input_size: int | None = None,
) -> ort.InferenceSession:
    """Load ``path`` with the first available of ``providers``.

    Providers this ONNX Runtime build lacks (CUDA on a CPU-only install) are skipped with a
    warning, so one site file serves GPU and CPU hosts. Session and provider options come from
    :mod:`safewatch.detect.providers` (no thread spinning on CPU; FP16, engine cache and a batch
    profile for TensorRT). ``input_size`` is the model's configured square input, which a
    dynamic model runs at and TensorRT's profile must therefore cover.

    Raises:
        ModelError: The file is missing or is not a loadable ONNX model, or none of the providers
            is available.
    """
    if not path.is_file():
        raise ModelError(f"model {model!r}: file not found: {path}")
    available = set(ort.get_available_providers())
    chosen = [p for p in providers if p in available]
    skipped = [p for p in providers if p not in available]
    if skipped:
        log.warning("model %r: execution providers not available here: %s", model, skipped)
    if not chosen:
        raise ModelError(
            f"model {model!r}: none of the providers {list(providers)} is available; "
            f"this ONNX Runtime offers {sorted(available)}"
        )
    options = session_options(threads)
    gpu = gpu if gpu is not None else GpuOptions()
    spec = _input_spec(path, input_size) if TENSORRT in chosen else None
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=provider_options(chosen, gpu, spec)
        )
    except Exception as exc:  # ORT raises its own pybind exception types
        kind = _sniff(path)
        raise ModelError(
            f"model {model!r}: {path} is not a loadable ONNX model: the file is {kind} "
            f"(ONNX Runtime: {str(exc).splitlines()[0][:200]})"
        ) from exc


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _input_spec(path: Path, input_size: int | None = None) -> InputSpec | None:
    """The image input's name and size, read with an unoptimised CPU session (milliseconds),
    for TensorRT's profile.

    Dynamic sides get the size the detector will run them at (``OnnxDetector._network_size``):
    the configured ``input_size``, else the model's ``imgsz`` metadata, else 640. The profile
    used to ignore ``input_size``: a 640 export configured at 1280 ran shapes beyond the
    profile's maximum, and one at 320 got an engine tuned for 640.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        probe = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:  # reported properly by the real session's error path
        return None
    inputs = probe.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        return None
    height, width = _dim(inputs[0].shape[2]), _dim(inputs[0].shape[3])
    size = (
        (input_size, input_size)
        if input_size is not None
        else metadata_image_size(read_metadata(probe)) or (640, 640)
    )
    return InputSpec(
        inputs[0].name, height or size[0], width or size[1], dynamic=height is None or width is None
    )


def describe_input(model: str, session: ort.InferenceSession) -> ModelInput:
    """The single ``[B, 3, H, W]`` image input of a detection model.

    Raises:
        ModelError: The model has no such input (several inputs, wrong rank, not 3 channels).
    """
    inputs = session.get_inputs()
    described = ", ".join(f"{i.name} {i.shape}" for i in inputs)
    if len(inputs) != 1:
        raise ModelError(
            f"model {model!r}: expected one image input [B, 3, H, W], got {described or 'none'}"
        )
    inp = inputs[0]
    shape = list(inp.shape)
    if len(shape) != 4 or _dim(shape[1]) not in (3, None):
        raise ModelError(f"model {model!r}: expected one image input [B, 3, H, W], got {described}")
    if inp.type not in ("tensor(float)", "tensor(float16)"):
        raise ModelError(f"model {model!r}: expected a float image input, got {inp.type}")
    return ModelInput(
        inp.name, _dim(shape[0]), _dim(shape[2]), _dim(shape[3]), inp.type == "tensor(float16)"
    )


def read_metadata(session: ort.InferenceSession) -> dict[str, str]:
    """The model's custom metadata properties (``names``, ``imgsz``, ``task`` ...)."""
    return dict(session.get_modelmeta().custom_metadata_map)
