"""Evidence media benchmarks: frame-buffer memory, clip encoding speed, analysis-path cost.

Sections of ``python -m bench.evidence`` (registered there from :data:`SECTIONS`):

* ``ring_buffer``: memory one camera's :class:`~safewatch.incidents.ringbuffer.FrameRing` holds
  for 10 s of frames at 720p and 1080p, 5 and 15 fps, raw BGR vs JPEG (quality 85). *Measured*
  with ``tracemalloc`` (NumPy reports its array buffers to it): the traced memory still allocated
  after the buffer was filled for 12 s (steady state, eviction running), minus what was allocated
  before. Every pushed frame is a fresh array, as a decoder hands out. Frames are the real
  640x352 CCTV clip scaled up, which is smoother than a native 1080p sensor, so JPEG sizes are
  optimistic; rows with added sensor noise (Gaussian, sigma 4) give the pessimistic side. The
  JPEG encode time per frame is what the evidence thread spends per frame.
* ``clip_encode``: seconds of wall time per second of clip (below 1 keeps up with the camera):
  x264 alone (``ClipEncoder``: veryfast, CRF 23, fragmented MP4), and the recorder's whole
  per-frame path (heads of 4 people blurred, overlay, encode) for frames handed over live and for
  the pre-event frames taken from the JPEG buffer (plus a JPEG decode each).
* ``analysis_path``: what evidence costs the analysis thread: :meth:`EvidenceRecorder.observe`
  per frame (a queue append), and the annotated still written when an incident opens (heads
  blurred, overlay, JPEG, fsync'd atomic write).

Run: ``python -m bench.evidence`` (every evidence section) or ``python -m bench.evidence_media
[--quick] [--section NAME]`` (these only); either merges its sections into
``bench/results/evidence.json`` and keeps the others'.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from bench._common import RESULTS, require_asset
from safewatch.config.site import EvidenceConfig, PrivacyConfig
from safewatch.domain import Frame, Image, Track, TrackedFrame
from safewatch.incidents import EvidenceRecorder, EvidenceStore, anonymise_heads, draw_overlay
from safewatch.incidents.clips import ClipEncoder, ClipInfo
from safewatch.incidents.ringbuffer import FrameRing
from safewatch.storage import IncidentRepository, create_engine_for

__all__ = ["PRINTERS", "SECTIONS"]

CLIP = "video/construction_cctv_640x352_24s.mp4"
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
BUFFER_SECONDS = 10.0
T0 = 1_800_000_000.0
_MIB = 1 << 20


def _source_frames(count: int) -> list[Image]:
    with av.open(str(require_asset(CLIP))) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == count:
                break
    return frames


def _scaled(frames: list[Image], size: tuple[int, int], noise: bool) -> list[Image]:
    rng = np.random.default_rng(0)
    out = []
    for image in frames:
        big = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        if noise:
            grain = rng.normal(0.0, 4.0, big.shape)
            big = np.clip(big.astype(np.float32) + grain, 0, 255).astype(np.uint8)
        out.append(big)
    return out


def _tracked(index: int, size: tuple[int, int]) -> TrackedFrame:
    """Four people spread over the picture, as the tracker would report them."""
    width, height = size
    tracks = tuple(
        Track(
            k,
            "person",
            (
                width * (0.15 + 0.2 * k),
                height * 0.4,
                width * (0.15 + 0.2 * k) + height * 0.12,
                height * 0.4 + height * 0.3,
            ),
            0.9,
        )
        for k in range(4)
    )
    return TrackedFrame("cam", index, index / 5, T0 + index / 5, width, height, tracks)


def _frame(image: Image, index: int, fps: float, size: tuple[int, int]) -> tuple[Frame, Any]:
    at = T0 + index / fps
    tracked = _tracked(index, size)
    return Frame("cam", index, index / fps, at, image), tracked


def _ring_row(source: list[Image], size: tuple[int, int], fps: float, fmt: str) -> dict[str, Any]:
    frames = round((BUFFER_SECONDS + 2.0) * fps)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ring = FrameRing(BUFFER_SECONDS, 1 << 40, fmt)  # type: ignore[arg-type]
    encode = []
    for i in range(frames):
        image = source[i % len(source)].copy()  # a fresh array per frame, as from a decoder
        frame, tracked = _frame(image, i, fps, size)
        t0 = time.perf_counter()
        ring.push(frame, tracked)
        encode.append(time.perf_counter() - t0)
        del image, frame
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    row = {
        "frames_held": len(ring),
        "measured_mib": round(held / _MIB, 1),
        "picture_mib": round(ring.nbytes / _MIB, 1),
        "kib_per_frame": round(ring.nbytes / len(ring) / 1024, 1),
    }
    if fmt == "jpeg":
        row["encode_ms_per_frame"] = round(statistics.median(encode) * 1000, 2)
    del ring
    gc.collect()
    return row


def ring_buffer(args: argparse.Namespace) -> dict[str, Any]:
    """Memory of one camera's 10 s buffer (see the module docstring)."""
    source = _source_frames(30)
    result: dict[str, Any] = {
        "buffer_seconds": BUFFER_SECONDS,
        "jpeg_quality": 85,
        "method": "tracemalloc: traced bytes still held after 12 s of pushes (steady state), "
        "each push a fresh frame array; content: the 640x352 CCTV clip scaled up, plus a "
        "sensor-noise variant (sigma 4) for JPEG",
        "rows": {},
    }
    for name, size in SIZES.items():
        clean = _scaled(source, size, noise=False)
        noisy = _scaled(source, size, noise=True)
        for fps in (5.0, 15.0):
            key = f"{name}@{fps:g}fps"
            result["rows"][key] = {
                "raw": _ring_row(clean, size, fps, "raw"),
                "jpeg": _ring_row(clean, size, fps, "jpeg"),
                "jpeg_noisy": _ring_row(noisy, size, fps, "jpeg"),
            }
    return result


def _encode_rate(frames: list[Image], fps: float, seconds: float) -> float:
    """Wall seconds x264 needs per second of clip."""
    with tempfile.TemporaryDirectory() as folder:
        encoder = ClipEncoder(Path(folder) / "c.mp4", ClipInfo("i", "cam", T0, 0.0), fps=fps)
        count = int(seconds * fps)
        t0 = time.perf_counter()
        for i in range(count):
            encoder.add(frames[i % len(frames)], T0 + i / fps)
        encoder.finish()
        return (time.perf_counter() - t0) / seconds


def _full_rate(
    frames: list[Image], size: tuple[int, int], fps: float, seconds: float, *, buffered: bool
) -> float:
    """Wall seconds per second of clip for the recorder's per-frame work: frames from the JPEG
    buffer (``buffered``: the pre-event seconds) or handed over live (the rest of the clip)."""
    ring = FrameRing(BUFFER_SECONDS, 1 << 40, "jpeg" if buffered else "raw")
    count = int(seconds * fps)
    entries = [ring.push(*_frame(frames[i % len(frames)], i, fps, size)) for i in range(count)]
    privacy = PrivacyConfig()
    with tempfile.TemporaryDirectory() as folder:
        encoder = ClipEncoder(Path(folder) / "c.mp4", ClipInfo("i", "cam", T0, 0.0), fps=fps)
        t0 = time.perf_counter()
        for entry in entries[-count:]:
            shown = anonymise_heads(entry.image(), entry.tracked, privacy)
            shown = draw_overlay(shown, entry.tracked, (), {0})
            encoder.add(shown, entry.timestamp)
        encoder.finish()
        return (time.perf_counter() - t0) / seconds


def clip_encode(args: argparse.Namespace) -> dict[str, Any]:
    """Clip encoding cost per second of video (see the module docstring)."""
    source = _source_frames(60)
    seconds = 4.0 if getattr(args, "quick", False) else 10.0
    result: dict[str, Any] = {
        "clip_seconds": seconds,
        "settings": "libx264 veryfast, CRF 23, no B-frames, keyframe every 2 s, fragmented MP4; "
        "x264 may use both cores",
        "method": "wall seconds per second of clip (< 1 keeps up with a live camera)",
        "rows": {},
    }
    for name, size in SIZES.items():
        frames = _scaled(source, size, noise=False)
        for fps in (5.0, 15.0):
            result["rows"][f"{name}@{fps:g}fps"] = {
                "x264_s_per_s": round(_encode_rate(frames, fps, seconds), 3),
                "live_frames_s_per_s": round(
                    _full_rate(frames, size, fps, seconds, buffered=False), 3
                ),
                "buffered_frames_s_per_s": round(
                    _full_rate(frames, size, fps, seconds, buffered=True), 3
                ),
            }
    return result


def analysis_path(args: argparse.Namespace) -> dict[str, Any]:
    """Per-frame observe() cost and the synchronous annotated-still write."""
    source = _source_frames(10)
    result: dict[str, Any] = {"rows": {}}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        engine = create_engine_for("sqlite:///bench.db", base)
        try:
            repo = IncidentRepository(engine)
            store = EvidenceStore(base / "evidence")
            for name, size in SIZES.items():
                frames = _scaled(source, size, noise=False)
                recorder = EvidenceRecorder(store, repo, EvidenceConfig())
                observe = []
                for i in range(200):
                    frame, tracked = _frame(frames[i % len(frames)], i, 5.0, size)
                    t0 = time.perf_counter()
                    recorder.observe(frame, tracked)
                    observe.append(time.perf_counter() - t0)
                    time.sleep(0.01)
                recorder.close()
                stills = []
                for i in range(15):
                    frame, tracked = _frame(frames[i % len(frames)], i, 5.0, size)
                    t0 = time.perf_counter()
                    hidden = anonymise_heads(frame.image, tracked, PrivacyConfig())
                    image = draw_overlay(hidden, tracked, (), {0})
                    store.write_still(f"inc{i}", image, camera_id="cam", at=T0)
                    stills.append(time.perf_counter() - t0)
                result["rows"][name] = {
                    "observe_us_per_frame": round(statistics.median(observe) * 1e6, 1),
                    "annotated_still_ms": round(statistics.median(stills) * 1000, 1),
                }
        finally:
            engine.dispose()
    return result


def _print_ring(result: dict[str, Any]) -> None:
    print(f"ring buffer, {result['buffer_seconds']:g} s per camera (MiB measured, KiB/frame)")
    print(f"{'':<16}{'raw':>16}{'jpeg':>22}{'jpeg+noise':>22}")
    for key, row in result["rows"].items():
        raw, jpeg, noisy = row["raw"], row["jpeg"], row["jpeg_noisy"]
        print(
            f"{key:<16}{raw['measured_mib']:>9.1f} MiB    "
            f"{jpeg['measured_mib']:>6.1f} MiB {jpeg['kib_per_frame']:>5.0f} KiB "
            f"{jpeg['encode_ms_per_frame']:>4.1f}ms"
            f"{noisy['measured_mib']:>7.1f} MiB {noisy['kib_per_frame']:>5.0f} KiB"
        )


def _print_clip(result: dict[str, Any]) -> None:
    print("clip encoding, wall s per s of clip: x264 alone / whole path live / from buffer")
    for key, row in result["rows"].items():
        print(
            f"{key:<16}{row['x264_s_per_s']:>8.3f}{row['live_frames_s_per_s']:>10.3f}"
            f"{row['buffered_frames_s_per_s']:>10.3f}"
        )


def _print_path(result: dict[str, Any]) -> None:
    print("analysis path: observe() per frame / annotated still on open")
    for key, row in result["rows"].items():
        print(f"{key:<8}{row['observe_us_per_frame']:>8.1f} us{row['annotated_still_ms']:>8.1f} ms")


Section = Callable[[argparse.Namespace], dict[str, Any]]
SECTIONS: dict[str, Section] = {
    "ring_buffer": ring_buffer,
    "clip_encode": clip_encode,
    "analysis_path": analysis_path,
}
PRINTERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "ring_buffer": _print_ring,
    "clip_encode": _print_clip,
    "analysis_path": _print_path,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", action="append", choices=sorted(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="shorter clips")
    args = parser.parse_args()
    results = {}
    for name in args.section or list(SECTIONS):
        results[name] = SECTIONS[name](args)
        PRINTERS[name](results[name])
    path = RESULTS / "evidence.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(results)  # other sections (incident writes) stay as they are
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
