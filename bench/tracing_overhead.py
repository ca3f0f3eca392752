"""Per-frame cost of the tracing calls on the frame path while tracing is off (target < 1 %).

The frame path makes three :func:`safewatch.tracing.span` calls per analysed frame (``decode``
in the decoder, ``rules`` per frame, ``inference`` per batch: at most one per frame), each with
its attribute dict, exactly as in the code. Two measurements, both printed with the load average:

* **micro**: those three calls (``with span(name, {...}): pass``), timed over many iterations:
  nanoseconds per frame, divided by the per-frame time of the cheapest real work a frame gets
  (yolov8n at 640x352 through ONNX Runtime, the shared model): the overhead as a share.
* **A/B**: rounds alternating the detector alone and the detector plus the three calls, CPU time
  per frame of this process; the ratio should be 1 within noise (it cannot resolve 0.01 %: the
  micro figure is the precise one, the A/B that nothing else costs).

Run: ``python -m bench.tracing_overhead [--rounds N]``; JSON goes to
``bench/results/tracing_overhead.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

from bench._common import require_asset, write_results
from safewatch import tracing


def spans_of_one_frame(camera: str) -> None:
    """What the frame path runs per frame with tracing off (same calls, same dicts)."""
    with tracing.span("decode", {"camera": camera}):
        pass
    with tracing.span("inference", {"frames": 1}):
        pass
    with tracing.span("rules", {"camera": camera}):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--frames", type=int, default=40, help="detector runs per round and side")
    args = parser.parse_args()
    assert not tracing.enabled(), "unset OTEL_EXPORTER_OTLP_ENDPOINT: this measures tracing off"

    calls = 200_000
    micro = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            spans_of_one_frame("cam-1")
        micro.append((time.perf_counter() - start) / calls)
    span_seconds = min(micro)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(require_asset("models/yolov8n_coco.onnx")), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    shape = session.get_inputs()[0].shape
    height = 352 if not isinstance(shape[2], int) else shape[2]
    width = 640 if not isinstance(shape[3], int) else shape[3]
    tensor = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
    session.run(None, {name: tensor})

    def side(with_spans: bool) -> float:
        start = time.process_time()
        for _ in range(args.frames):
            session.run(None, {name: tensor})
            if with_spans:
                spans_of_one_frame("cam-1")
        return float((time.process_time() - start) / args.frames)

    plain: list[float] = []
    traced: list[float] = []
    for round_no in range(args.rounds):
        order = (False, True) if round_no % 2 == 0 else (True, False)
        for with_spans in order:
            (traced if with_spans else plain).append(side(with_spans))
    frame_seconds = statistics.median(plain)
    result = {
        "load_average": os.getloadavg(),
        "span_calls_per_frame_ns": span_seconds * 1e9,
        "detector_cpu_seconds_per_frame": frame_seconds,
        "micro_overhead_share": span_seconds / frame_seconds,
        "ab_ratio_traced_over_plain": statistics.median(traced) / frame_seconds,
        "rounds": args.rounds,
        "frames_per_side": args.frames,
    }
    print(
        f"tracing off: 3 span calls per frame {span_seconds * 1e9:.0f} ns; "
        f"yolov8n {frame_seconds * 1e3:.1f} ms CPU per frame; "
        f"overhead {100 * span_seconds / frame_seconds:.4f} % (target < 1 %); "
        f"A/B CPU ratio {result['ab_ratio_traced_over_plain']:.3f}; "
        f"load {', '.join(f'{x:.1f}' for x in result['load_average'])}"
    )
    print(f"wrote {write_results('tracing_overhead', result)}")


if __name__ == "__main__":
    main()
