"""GPU throughput: inference images/s per batch size, and full-pipeline 1080p streams.

Needs an NVIDIA GPU and an ONNX Runtime build with the CUDA (and ideally TensorRT) execution
provider (``pip install onnxruntime-gpu`` in place of ``onnxruntime``); without one it prints why
and skips, writing the reason to ``bench/results/gpu.json``.

* **inference**: yolov8n at 640x640 through :class:`~safewatch.detect.OnnxDetector` with the
  site's provider options (TensorRT FP16 with an engine cache when available, else CUDA), for
  batches 1, 2, 4, 8, 16 and 32: images per second of ``session.run`` alone and of the whole
  ``detect`` call (preprocessing, NMS and the mapping back to source pixels included). Goal:
  >= 3,000 img/s at batch >= 8 with FP16.
* **pipeline**: 1080p frames (the construction clip upscaled) through detect + tracking + rules
  per camera, batch 8 across cameras; streams = frames per second / 30. Goal: >= 50 streams of
  1080p30 at every frame.

Run: ``python -m bench.gpu [--seconds S]``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

import av
import cv2
import numpy as np
import onnxruntime as ort

from bench._common import ASSETS, RESULTS, write_results
from safewatch.config.site import GpuConfig, ModelConfig, TrackerConfig
from safewatch.detect import OnnxDetector
from safewatch.detect.providers import CPU, CUDA, TENSORRT
from safewatch.domain import Frame
from safewatch.track import CameraTracker

MODEL = ASSETS / "models" / "yolov8n_coco.onnx"
CLIP = ASSETS / "video" / "construction_cctv_640x352_24s.mp4"
BATCHES = (1, 2, 4, 8, 16, 32)


def gpu_providers() -> tuple[list[str], str]:
    """The GPU providers this ONNX Runtime offers, or none and the reason to skip."""
    available = ort.get_available_providers()
    chosen = [p for p in (TENSORRT, CUDA) if p in available]
    if not chosen:
        return [], (
            f"no GPU execution provider in this ONNX Runtime ({ort.__version__}: "
            f"{', '.join(available)}); install onnxruntime-gpu on a machine with an NVIDIA GPU"
        )
    try:
        import ctypes

        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return [], "onnxruntime-gpu is installed but no NVIDIA driver (libcuda.so.1) is present"
    return chosen, ""


def frames_1080p(count: int) -> list[Frame]:
    """``count`` frames of the clip, upscaled to 1920x1080."""
    out: list[Frame] = []
    with av.open(str(CLIP)) as container:
        for decoded in container.decode(video=0):
            image = np.asarray(
                cv2.resize(decoded.to_ndarray(format="bgr24"), (1920, 1080)), np.uint8
            )
            out.append(Frame("cam", len(out), len(out) / 30, len(out) / 30, image))
            if len(out) == count:
                break
    return out


def inference(detector: OnnxDetector, frames: Sequence[Frame], seconds: float) -> dict[str, Any]:
    """Images/s of the detector per batch size (each size run for about ``seconds``)."""
    rows: dict[str, Any] = {}
    for batch in BATCHES:
        chunk = list(frames[:batch])
        detector.detect(chunk)  # engine build / warm-up for this shape
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            detector.detect(chunk)
            done += batch
        rate = done / (time.perf_counter() - start)
        rows[str(batch)] = round(rate, 1)
        print(f"batch {batch:2d}: {rate:8.1f} img/s (detect, 1080p source)", flush=True)
    return rows


def pipeline(detector: OnnxDetector, frames: Sequence[Frame], seconds: float) -> dict[str, Any]:
    """Detect + track for 8 cameras round-robin at batch 8; 1080p30 streams sustained."""
    cameras = 8
    trackers = [  # a person model, so no head mode (as build_tracker decides)
        CameraTracker(TrackerConfig(), f"cam{i}", frame_rate=30, track_heads=False)
        for i in range(cameras)
    ]
    done, index, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = [frames[(index + i) % len(frames)] for i in range(cameras)]
        for tracker, found, frame in zip(trackers, detector.detect(batch), batch, strict=True):
            tracker.update(found, frame)
        done += cameras
        index += 1
    fps = done / (time.perf_counter() - start)
    print(f"pipeline: {fps:.1f} frames/s = {fps / 30:.1f} streams of 1080p30", flush=True)
    return {"frames_per_second": round(fps, 1), "streams_1080p30": round(fps / 30, 1)}


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, or say why not."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    args = parser.parse_args(argv)
    providers, reason = gpu_providers()
    if not providers:
        print(f"bench.gpu skipped: {reason}")
        write_results("gpu", {"skipped": reason})
        return
    if not MODEL.exists() or not CLIP.exists():
        print(f"bench.gpu skipped: needs {MODEL} and {CLIP} (the team's shared assets)")
        return
    config = ModelConfig(
        path=str(MODEL),
        labels={"person": "person"},
        providers=[*providers, CPU],
        gpu=GpuConfig(engine_cache=str(RESULTS / "trt-cache")),
        rectangular=False,
    )
    detector = OnnxDetector(config, MODEL, "yolov8n", max_batch=32)
    frames = frames_1080p(32)
    results: dict[str, Any] = {
        "providers": providers,
        "onnxruntime": ort.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "inference_img_per_s": inference(detector, frames, args.seconds),
        "pipeline": pipeline(detector, frames, args.seconds),
    }
    print(f"wrote {write_results('gpu', results)}")


if __name__ == "__main__":
    main()
