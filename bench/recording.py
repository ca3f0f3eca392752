"""What recording a camera costs: the live server on one real RTSP camera (GStreamer serving the
construction clip, H.264 640x352 at 24.7 fps), measured without and with ``recording:``.

Two figures, because the machine is shared and the server's own CPU moves by more than the
recorder costs:

* the recorder thread's own CPU time (``psutil`` per-thread times of ``record-cam0``), as a share
  of one core; this is the cost of recording, demuxing the RTSP stream included;
* the server's CPU (its process and decode workers) with recording over without, runs
  alternated (A B A B) so a change in the machine's load hits both.

    python -m bench.recording [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench._common import write_results
from bench.runtime import WARMUP, header, rtsp_cameras, write_site


def _recorder_cpu() -> float:
    """CPU seconds of this process's recorder threads so far."""
    ids = {t.native_id for t in threading.enumerate() if t.name.startswith("record-cam")}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def run(url: str, seconds: float, *, recording: bool) -> dict[str, Any]:
    from bench.runtime import cpu_seconds
    from safewatch.config.loader import load_site
    from safewatch.runtime.service import RuntimeService, ServeOptions

    with tempfile.TemporaryDirectory(prefix="safewatch-bench-rec-") as folder:
        path = write_site(Path(folder), [url], decode="process")
        site = yaml.safe_load(path.read_text())
        if recording:
            site["cameras"]["cam0"]["recording"] = {"segment_seconds": 10}
        path.write_text(yaml.safe_dump(site))
        loaded = load_site(path)
        service = RuntimeService(
            loaded, ServeOptions(rules=path.parent / "rules", http=False, watch_site=False)
        )
        service.start()
        try:
            time.sleep(WARMUP)
            me = os.getpid()

            def pids() -> list[int]:
                return [me] + [
                    s.pid for s in service.supervisor.statuses() if s.pid not in (None, me)
                ]

            c0, r0, t0 = cpu_seconds(pids()), _recorder_cpu(), time.monotonic()
            time.sleep(seconds)
            c1, r1, t1 = cpu_seconds(pids()), _recorder_cpu(), time.monotonic()
        finally:
            service.stop()
        segments = sorted((Path(folder) / "safewatch-data" / "recordings").glob("cam0/*/*.mp4"))
    elapsed = t1 - t0
    return {
        "recording": recording,
        "seconds": round(elapsed, 1),
        "server_cpu_pct": round(100 * (c1 - c0) / elapsed, 2),
        "recorder_cpu_pct": round(100 * (r1 - r0) / elapsed, 3),
        "segments": len(segments),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args(argv)
    rows = []
    with rtsp_cameras(1) as (camera,):
        for _ in range(args.pairs):
            for recording in (False, True):
                row = run(camera.url, args.seconds, recording=recording)
                print(row, flush=True)
                rows.append(row)
    without = [r["server_cpu_pct"] for r in rows if not r["recording"]]
    with_rec = [r["server_cpu_pct"] for r in rows if r["recording"]]
    recorder = [r["recorder_cpu_pct"] for r in rows if r["recording"]]
    summary = {
        "server_cpu_pct_without": round(statistics.median(without), 2),
        "server_cpu_pct_with": round(statistics.median(with_rec), 2),
        "recorder_thread_cpu_pct_of_one_core": round(statistics.median(recorder), 3),
        "recorder_over_server_without": round(
            statistics.median(recorder) / statistics.median(without), 4
        ),
    }
    print(summary)
    write_results("recording", {**header(), "runs": rows, "summary": summary})


if __name__ == "__main__":
    main()
