"""OpenVINO's own runtime against ONNX Runtime's CPU provider, same model, same inputs.

``onnxruntime-openvino`` replaces the ``onnxruntime`` package (both install the same module), so
it cannot sit beside safewatch's ONNX Runtime in one environment; the ``openvino`` package's own
runtime reads the same ``.onnx`` file and can. This bench needs neither in safewatch's venv: run it
with any interpreter that has ``openvino``, ``onnxruntime``, ``numpy`` and ``opencv-python``
(``python -m venv V && V/bin/pip install openvino onnxruntime numpy opencv-python-headless``):
``V/bin/python bench/openvino_speed.py [--frames N] [--rounds R]``. It imports nothing from
safewatch and skips with the reason when a package is missing.

On the construction clip's frames, letterboxed to 640x352 as safewatch feeds yolov8n, both
runtimes run batch 1 in alternation, ``--rounds`` times; printed: CPU time per frame of each and
their ratio (the load average too: the machine is shared), and how far OpenVINO's outputs stray
from ONNX Runtime's (largest class-score difference, and whether the same anchors pass 0.25).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
MODEL = ASSETS / "models" / "yolov8n_coco.onnx"
CLIP = ASSETS / "video" / "construction_cctv_640x352_24s.mp4"


def main() -> None:
    """Measure both runtimes, print the ratio, write JSON next to the other results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import cv2
        import numpy as np
        import onnxruntime as ort
        import openvino as ov  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        print(f"bench.openvino_speed skipped: {exc.name} is not installed in {sys.prefix}")
        return
    if not MODEL.exists() or not CLIP.exists():
        print(f"bench.openvino_speed skipped: needs {MODEL} and {CLIP} (shared assets)")
        return
    capture = cv2.VideoCapture(str(CLIP))
    inputs: list[Any] = []
    while len(inputs) < args.frames:
        ok, image = capture.read()
        if not ok:
            break
        rgb = image[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        inputs.append(np.ascontiguousarray(rgb))  # 640x352: the stride-aligned input as is
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(MODEL)), "CPU", {"PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()

    def run_ort(x: Any) -> Any:
        return session.run(None, {"images": x})[0]

    def run_ov(x: Any) -> Any:
        return request.infer({0: x})[compiled.output(0)]

    worst, same = 0.0, 0
    for x in inputs[:10]:
        a, b = run_ort(x), run_ov(x)
        worst = max(worst, float(np.abs(a[:, 4:] - b[:, 4:]).max()))
        same += int(np.array_equal(a[:, 4:].max(axis=1) > 0.25, b[:, 4:].max(axis=1) > 0.25))
    cpu: dict[str, list[float]] = {"onnxruntime": [], "openvino": []}
    load_start = [round(v, 2) for v in os.getloadavg()]
    for _ in range(args.rounds):
        for name, fn in (("onnxruntime", run_ort), ("openvino", run_ov)):
            start = time.process_time()
            for x in inputs:
                fn(x)
            cpu[name].append((time.process_time() - start) / len(inputs))
    ort_ms = 1000 * statistics.median(cpu["onnxruntime"])
    ov_ms = 1000 * statistics.median(cpu["openvino"])
    result = {
        "model": MODEL.name,
        "input": [1, 3, 352, 640],
        "frames": len(inputs),
        "openvino": ov.__version__,
        "onnxruntime": ort.__version__,
        "load_average_at_start": load_start,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "onnxruntime_cpu_ms_per_frame": round(ort_ms, 1),
        "openvino_cpu_ms_per_frame": round(ov_ms, 1),
        "openvino_over_onnxruntime_cpu": round(ov_ms / ort_ms, 3),
        "max_class_score_difference": round(worst, 5),
        "frames_with_identical_anchors_over_0_25": f"{same}/10",
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "openvino_speed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
