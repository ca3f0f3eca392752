"""Backtest cost: a cached second run against the first, and N rule sets against one.

Run: ``python -m bench.backtest [--rounds 3]``. In one process, on the shared CCTV clip with the
example site's two models (yolox_nano for people, ppe14 for hard hats):

1. *first vs cached*: a backtest with an empty detection cache (decode + inference + tracking +
   rules), then the same footage with another rule change (the cache replays the detections).
   Target: the cached run's wall time at least 10x lower.
2. *N rule sets*: from the cache, N = 1 and N = 5 rule sets in one pass; the extra cost per extra
   rule set, against the first run's detection time, shows that N sets cost one detection pass
   plus N rule evaluations.

Rounds alternate the sides, medians are reported with CPU time beside wall time (CPU time moves
less on a shared machine) and the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from bench._common import ROOT, require_asset, write_results

CLIP = "video/construction_cctv_640x352_24s.mp4"


def _site(folder: Path) -> Path:
    coco = require_asset("models/yolox_nano_coco.onnx")
    ppe = require_asset("models/ppe14_yolov8n.onnx")
    path = folder / "site.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            site: {{name: Bench, timezone: UTC}}
            storage: {{database: "sqlite:///{folder / "site.db"}"}}
            models:
              coco: {{path: {coco}, format: yolox, labels: {{person: person, car: vehicle}}}}
              ppe:
                path: {ppe}
                format: yolov8
                labels: {{Hardhat: hardhat, NO-Hardhat: no_hardhat}}
            cameras:
              yard: {{source: {require_asset(CLIP)}, fps: 5, models: [coco, ppe]}}
            """
        )
    )
    return path


def _variant(folder: Path, index: int) -> Path:
    """The example rules with the drop zone's back edge moved by ``index`` percent."""
    target = folder / f"rules-{index}"
    shutil.copytree(ROOT / "examples" / "rules", target)
    path = target / "yard.yaml"
    edge = 0.42 + index / 100
    path.write_text(
        path.read_text().replace("[[0.40, 0.42], [0.74, 0.38]", f"[[0.40, {edge}], [0.74, {edge}]")
    )
    return target


def _timed(site: Any, sets: list[Any], options: Any) -> tuple[float, float, Any]:
    from safewatch.footage.backtest import run_backtest

    wall, cpu = time.perf_counter(), time.process_time()
    run = run_backtest(site, sets, options)
    result = time.perf_counter() - wall, time.process_time() - cpu, run
    shutil.rmtree(run.staging, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from safewatch.config.loader import load_site
    from safewatch.footage.backtest import BacktestOptions, NamedRules
    from safewatch.rules import load_rules

    folder = Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    try:
        site = load_site(_site(folder))
        sets = [
            NamedRules(f"set-{i}", load_rules(_variant(folder, i), site.config), folder)
            for i in range(5)
        ]
        clip = require_asset(CLIP)
        first: list[tuple[float, float]] = []
        cached: list[tuple[float, float]] = []
        one: list[tuple[float, float]] = []
        five: list[tuple[float, float]] = []
        detect: list[float] = []
        for round_ in range(args.rounds):
            cache = folder / f"cache-{round_}"
            options = BacktestOptions((clip,), folder / "out", cache_dir=cache, start=0.0)
            wall, cpu, run = _timed(site, sets[:2], options)
            first.append((wall, cpu))
            detect.append(next(iter(run.detect_seconds.values())))
            wall, cpu, run = _timed(site, [sets[0], sets[2]], options)
            assert all(run.cached.values())
            cached.append((wall, cpu))
            one.append(_timed(site, sets[:1], options)[:2])
            five.append(_timed(site, sets, options)[:2])
            print(
                f"round {round_ + 1}: first {first[-1][0]:.2f} s, cached {cached[-1][0]:.2f} s, "
                f"N=1 {one[-1][0]:.2f} s, N=5 {five[-1][0]:.2f} s"
            )

        def median(samples: list[tuple[float, float]], index: int) -> float:
            return statistics.median(s[index] for s in samples)

        per_set = (median(five, 0) - median(one, 0)) / 4
        results = {
            "load_average": os.getloadavg(),
            "rounds": args.rounds,
            "first_wall_s": median(first, 0),
            "first_cpu_s": median(first, 1),
            "first_detect_s": statistics.median(detect),
            "cached_wall_s": median(cached, 0),
            "cached_cpu_s": median(cached, 1),
            "speedup_wall": median(first, 0) / median(cached, 0),
            "speedup_cpu": median(first, 1) / median(cached, 1),
            "n1_wall_s": median(one, 0),
            "n5_wall_s": median(five, 0),
            "extra_rule_set_wall_s": per_set,
            "extra_rule_set_vs_detection": per_set / statistics.median(detect),
        }
        print(
            f"first run {results['first_wall_s']:.2f} s wall / {results['first_cpu_s']:.2f} s "
            f"CPU; cached {results['cached_wall_s']:.2f} s / {results['cached_cpu_s']:.2f} s: "
            f"{results['speedup_wall']:.1f}x wall, {results['speedup_cpu']:.1f}x CPU "
            "(target >= 10x)"
        )
        print(
            f"from the cache: N=1 {results['n1_wall_s']:.2f} s, N=5 {results['n5_wall_s']:.2f} s; "
            f"each extra rule set {per_set:.2f} s = {results['extra_rule_set_vs_detection']:.3f} "
            f"of the detection pass ({results['first_detect_s']:.2f} s); "
            f"load average {results['load_average'][0]:.1f}"
        )
        print(f"written: {write_results('backtest', results)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
