"""Decode speed of safewatch's FileSource against the ``ffmpeg`` program on the same file.

Run from the repository root: ``python -m bench.speed_decode``. Prints the ratios and writes
``bench/results/speed_decode.json``.

What is compared, each the median of several runs in this process's lifetime:

* ``safewatch``: ``FileSource`` at an analysis rate above the native one, so every frame is decoded
  *and* converted to a BGR array (what the pipeline receives), timed from open to the last frame.
* ``ffmpeg``: ``ffmpeg -threads T -i clip -f null -`` (decode only), the target's reference;
  timed by ffmpeg's own ``-benchmark`` real time, which leaves out process start-up.
* ``ffmpeg_bgr``: the same with ``-pix_fmt bgr24``: decode plus the same colour conversion, the
  like-for-like reference.
* ``safewatch_5fps``: ``FileSource`` at 5 fps (every frame decoded, only sampled ones converted),
  to show what skipping the conversion of unsampled frames buys.

Both decoders use FFmpeg's automatic thread count (``threads=0``: one per core plus one, frame and
slice threading); the JSON records it. PyAV bundles its own FFmpeg build, which may be a different
version from the system ``ffmpeg``; both versions are recorded too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av

from safewatch.ingest import FileSource

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "assets" / "video" / "construction_cctv_640x352_24s.mp4"
RESULTS = ROOT / "bench" / "results"
REPEATS = 7
THREADS = 0  # FFmpeg's "auto" for both sides
TARGET = 0.9


def time_file_source(clip: Path, fps: float) -> tuple[float, int]:
    """Seconds to open ``clip`` and take every sampled frame, and how many frames were decoded."""
    start = time.perf_counter()
    source = FileSource("bench", clip, fps=fps, threads=THREADS)
    for _frame in source.frames():
        pass
    return time.perf_counter() - start, source.stats.decoded


def time_ffmpeg(ffmpeg: str, clip: Path, *extra: str) -> float:
    """Real time ``ffmpeg`` reports for decoding ``clip`` to the null muxer."""
    command = [ffmpeg, "-hide_banner", "-nostdin", "-benchmark", "-threads", str(THREADS)]
    command += ["-i", str(clip), *extra, "-f", "null", "-"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"rtime=([0-9.]+)s", result.stderr)
    if match is None:
        raise SystemExit(f"ffmpeg printed no benchmark line:\n{result.stderr}")
    return float(match.group(1))


def ffmpeg_version(ffmpeg: str) -> str:
    """First line of ``ffmpeg -version``."""
    out = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


def main() -> int:
    """Run the benchmark, print the ratios and write the JSON; exit 1 below target."""
    if not CLIP.exists():
        print(f"needs {CLIP}: the team's shared assets are not on this machine", file=sys.stderr)
        return 2
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("needs the ffmpeg program (apt install ffmpeg) as the reference", file=sys.stderr)
        return 2
    time_file_source(CLIP, 1000.0)  # warm the page cache and the libraries
    time_ffmpeg(ffmpeg, CLIP)
    runs: dict[str, list[float]] = {
        "safewatch": [],
        "safewatch_5fps": [],
        "ffmpeg": [],
        "ffmpeg_bgr": [],
    }
    frames = 0
    for _ in range(REPEATS):  # interleaved so background load hits every contender alike
        seconds, frames = time_file_source(CLIP, 1000.0)
        runs["safewatch"].append(seconds)
        runs["safewatch_5fps"].append(time_file_source(CLIP, 5.0)[0])
        runs["ffmpeg"].append(time_ffmpeg(ffmpeg, CLIP))
        runs["ffmpeg_bgr"].append(time_ffmpeg(ffmpeg, CLIP, "-pix_fmt", "bgr24"))
    fps = {name: frames / statistics.median(times) for name, times in runs.items()}
    ratio = fps["safewatch"] / fps["ffmpeg"]
    ratio_bgr = fps["safewatch"] / fps["ffmpeg_bgr"]
    skip_gain = fps["safewatch_5fps"] / fps["safewatch"]
    results: dict[str, Any] = {
        "clip": CLIP.name,
        "frames": frames,
        "repeats": REPEATS,
        "threads": "auto (0: FFmpeg picks one per core plus one; frame+slice threading)",
        "cpu_count": os.cpu_count(),
        "frames_per_second_median": {k: round(v, 1) for k, v in fps.items()},
        "seconds": {k: [round(t, 4) for t in v] for k, v in runs.items()},
        "ratio_vs_ffmpeg_decode_only": round(ratio, 3),
        "ratio_vs_ffmpeg_decode_bgr24": round(ratio_bgr, 3),
        "target": TARGET,
        "meets_target": ratio >= TARGET,
        "speedup_from_converting_only_sampled_frames_at_5fps": round(skip_gain, 2),
        "pyav": av.__version__,
        "pyav_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "system_ffmpeg": ffmpeg_version(ffmpeg),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "speed_decode.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"decode speed on {CLIP.name} ({frames} frames, threads=auto, median of {REPEATS})")
    for name, value in fps.items():
        print(f"  {name:<15} {value:8.0f} frames/s")
    print(f"ratio safewatch / ffmpeg (decode only):       {ratio:.2f}  (target >= {TARGET})")
    print(f"ratio safewatch / ffmpeg -pix_fmt bgr24:      {ratio_bgr:.2f}")
    print(f"5 fps sampling, converting only sampled frames: {skip_gain:.2f}x the frames/s")
    print(f"wrote {out}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
