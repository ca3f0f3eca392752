"""What a live video stream costs and how old its frames are: one real RTSP camera (GStreamer
serving the construction clip, H.264 at 24.7 fps; ``--size 1280x720`` serves an upscaled copy),
one viewer, the ``blurred`` feed (decode, hide heads, H.264 re-encode) and the ``raw`` feed
(packet copy) alternated (raw, blurred, raw, blurred ...) so a change in the machine's load hits
both.

Per run:

* the feed thread's own CPU (``psutil`` per-thread times of ``live-video-cam-<mode>``) as a share
  of one core: the cost of one stream, RTSP demuxing included, however many viewers share it;
* frame age when the fragment is handed to the viewer: ``handed - wall``, where ``wall`` is the
  frame's time on the camera's clock (the connection's first packet stamped with the clock, later
  ones by presentation time), i.e. from the frame leaving the camera to its fragment leaving the
  server (p50 / p95); the browser's part (MSE buffer, decode, present) is measured by
  ``tests/e2e/test_e2e_live_video.py`` (frame age on screen);
* fragments per second against the camera's rate.

A thread publishes an analysed frame with two people five times a second, so the blurred feed
hides heads as it would under ``serve`` (not the fail-closed whole-picture blur).

With ``--browser``, the same camera is watched in headless Chromium (Debian's ``chromium``,
Playwright) on the dashboard's Live page, served by uvicorn in this process, raw and blurred
alternated: the tile's frame age on screen (``Date.now()`` at each presented frame,
``requestVideoFrameCallback``, minus that frame's wall time) sampled every 100 ms, p50 / p95,
and the frames presented per second. That is camera-to-screen on loopback, less the camera's own
encoding and the first packet's network delay.

    python -m bench.live_video [--seconds 20] [--pairs 2] [--size 1280x720] [--browser]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import psutil

from bench._common import require_asset, write_results
from bench.runtime import CLIP, rtsp_cameras
from safewatch.api.live import LiveHub
from safewatch.api.live_video import LiveVideo, VideoMode
from safewatch.config.site import CameraConfig, PrivacyConfig
from safewatch.domain import Track, TrackedFrame

WARMUP = 3.0


def _feed_cpu(mode: str) -> float:
    ids = {t.native_id for t in threading.enumerate() if t.name == f"live-video-cam-{mode}"}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def _analyse(hub: LiveHub, width: int, height: int, stop: threading.Event) -> None:
    image = np.zeros((height, width, 3), np.uint8)
    people = (
        Track(1, "person", (0.3 * width, 0.15 * height, 0.45 * width, 0.95 * height), 0.9),
        Track(2, "person", (0.6 * width, 0.2 * height, 0.72 * width, 0.9 * height), 0.9),
    )
    seq = 0
    while not stop.wait(0.2):
        seq += 1
        hub.publish_frame(
            TrackedFrame("cam", seq, seq / 5, time.time(), width, height, people), image
        )


def run(url: str, mode: VideoMode, seconds: float, size: tuple[int, int]) -> dict[str, Any]:
    hub = LiveHub()
    stop = threading.Event()
    analysis = threading.Thread(target=_analyse, args=(hub, *size, stop), daemon=True)
    analysis.start()
    camera = CameraConfig(source=url, models=["m"])
    site = SimpleNamespace(
        base_dir=Path("."),
        config=SimpleNamespace(cameras={"cam": camera}, privacy_for=lambda _c: PrivacyConfig()),
    )
    video = LiveVideo(hub, lambda: site)  # type: ignore[arg-type,return-value]
    opened = time.monotonic()
    viewer = video.watch("cam", mode)
    try:
        # a viewer starts at the camera's next keyframe (raw) or the encoder's first frame
        deadline = time.monotonic() + 60
        while not any(c.kind == "fragment" for c in viewer.take(0.5)):
            if time.monotonic() > deadline:
                raise SystemExit(f"no {mode} fragment in 60 s")
        started = time.monotonic()
        deadline = started + WARMUP
        while time.monotonic() < deadline:
            viewer.take(0.5)
        ages: list[float] = []
        fragments = 0
        c0, t0 = _feed_cpu(mode), time.monotonic()
        while time.monotonic() < t0 + seconds:
            for chunk in viewer.take(0.5):
                if chunk.kind == "fragment":
                    fragments += 1
                    ages.append(time.time() - chunk.wall)
        c1, t1 = _feed_cpu(mode), time.monotonic()
    finally:
        viewer.close()
        video.close()
        stop.set()
        analysis.join(2)
    elapsed = t1 - t0
    ages.sort()
    return {
        "mode": mode,
        "first_fragment_after_s": round(started - opened, 1),
        "seconds": round(elapsed, 1),
        "feed_cpu_pct_of_one_core": round(100 * (c1 - c0) / elapsed, 1),
        "fragments_per_s": round(fragments / elapsed, 2),
        "age_p50_ms": round(1000 * ages[len(ages) // 2]) if ages else None,
        "age_p95_ms": round(1000 * ages[int(len(ages) * 0.95)]) if ages else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def browser_runs(url: str, seconds: float, pairs: int) -> list[dict[str, Any]]:
    """Raw and blurred alternated in headless Chromium (see the module docstring)."""
    import sys

    from playwright.sync_api import sync_playwright

    from bench._common import ROOT
    from safewatch.api.dashboard import Dashboard
    from safewatch.config.loader import load_site
    from safewatch.incidents.site_storage import open_site_storage

    sys.path.insert(0, str(ROOT / "tests"))
    from api_support import PASSWORD, served_app, write_site  # type: ignore[import-not-found]

    rows = []
    with tempfile.TemporaryDirectory(prefix="safewatch-bench-live-") as folder:
        loaded = load_site(write_site(Path(folder), source=url))
        storage = open_site_storage(loaded)
        dashboard = Dashboard.create(lambda: loaded, Path(folder) / "rules", storage)
        dashboard.auth.add_user("admin", PASSWORD, "admin")
        stop = threading.Event()
        analysis = threading.Thread(
            target=_analyse, args=(dashboard.live, 640, 352, stop), daemon=True
        )
        analysis.start()
        sample = (
            "() => { const t = document.querySelector('article.tile[data-camera=yard]');"
            " return [performance.now(), +t.dataset.latency, +t.dataset.vframes]; }"
        )
        try:
            with served_app(dashboard) as base, sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
                )
                page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
                page.set_default_timeout(90_000)
                page.goto(f"{base}/live")
                page.fill("input[name=username]", "admin")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url("**/live*")
                for _ in range(pairs):
                    for mode in ("raw", "blurred"):
                        page.goto(f"{base}/live" + ("?video=raw" if mode == "raw" else ""))
                        page.wait_for_function(
                            "() => +document.querySelector('article.tile[data-camera=yard]')"
                            ".dataset.vframes > 0"
                        )
                        page.wait_for_timeout(WARMUP * 1000)
                        first = page.evaluate(sample)
                        ages = []
                        for _ in range(round(seconds * 10)):
                            page.wait_for_timeout(100)
                            ages.append(page.evaluate(sample)[1])
                        last = page.evaluate(sample)
                        ages.sort()
                        row = {
                            "mode": mode,
                            "where": "browser",
                            "presented_per_s": round(
                                (last[2] - first[2]) * 1000 / (last[0] - first[0]), 2
                            ),
                            "screen_age_p50_ms": ages[len(ages) // 2],
                            "screen_age_p95_ms": ages[int(len(ages) * 0.95)],
                            "load_average": [round(x, 2) for x in os.getloadavg()],
                        }
                        print(row, flush=True)
                        rows.append(row)
                browser.close()
        finally:
            stop.set()
            analysis.join(2)
            storage.close()
    return rows


def upscaled(width: int, height: int) -> Path:
    """The clip scaled to ``width`` x ``height`` (H.264, a keyframe every 2 s), made once."""
    out = Path(tempfile.gettempdir()) / "safewatch-bench" / f"construction_{width}x{height}.mp4"
    if out.exists():
        return out
    out.parent.mkdir(exist_ok=True)
    part = out.with_suffix(".part.mp4")
    with av.open(str(require_asset(CLIP))) as source, av.open(str(part), "w") as target:
        stream = source.streams.video[0]
        encoder = target.add_stream("libx264", rate=stream.average_rate)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.options = {"preset": "veryfast", "g": "50", "bf": "0"}
        for frame in source.decode(stream):
            scaled = frame.reformat(width=width, height=height, format="yuv420p")
            scaled.pts, scaled.time_base = frame.pts, frame.time_base
            target.mux(encoder.encode(scaled))
        target.mux(encoder.encode())
    part.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--size", default="640x352", help="camera picture size (WxH)")
    parser.add_argument("--browser", action="store_true", help="measure in headless Chromium")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    clip = None if (width, height) == (640, 352) else upscaled(width, height)
    rows = []
    print(f"load average at start {os.getloadavg()}; camera {width}x{height}", flush=True)
    with rtsp_cameras(1, clip=clip) as (camera,):
        if args.browser:
            rows = browser_runs(camera.url, args.seconds, args.pairs)
            write_results(
                f"live_video_browser_{width}x{height}",
                {"camera": f"{width}x{height} H.264 over RTSP", "runs": rows},
            )
            return
        for _ in range(args.pairs):
            for mode in ("raw", "blurred"):
                row = run(camera.url, mode, args.seconds, (width, height))
                print(row, flush=True)
                rows.append(row)

    def median(mode: str, key: str) -> float:
        return float(statistics.median(r[key] for r in rows if r["mode"] == mode))

    summary = {
        f"{mode}_{key}": median(mode, key)
        for mode in ("raw", "blurred")
        for key in ("feed_cpu_pct_of_one_core", "fragments_per_s", "age_p50_ms", "age_p95_ms")
    }
    summary["blurred_over_raw_cpu"] = round(
        summary["blurred_feed_cpu_pct_of_one_core"]
        / max(0.01, summary["raw_feed_cpu_pct_of_one_core"]),
        1,
    )
    print(summary)
    write_results(
        f"live_video_{width}x{height}",
        {
            "camera": f"{width}x{height} H.264 over RTSP",
            "cpu_count": os.cpu_count(),
            "runs": rows,
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
