"""``safewatch serve`` under load: scaling, latency, overload, a hand-written baseline, soak.

Every section runs the real server (:class:`~safewatch.runtime.service.RuntimeService`, decode
processes, shared memory, the batching inference thread, the rules thread, SQLite) on real RTSP
cameras: Debian's GStreamer RTSP server serving the shared construction clip (looped), one server
process per camera, exactly what the integration tests use. The detector is YOLOX-Nano (COCO
persons) at 416x416. Motion gating is off unless said otherwise, so every analysed frame is an
inferred frame and "throughput" means detector work, not skipped frames. Ratios are computed from
figures measured in the same run. The host is shared: each JSON records the load average.

Sections (``python -m bench.runtime SECTION [--seconds S]``):

* ``decode``: thread vs process decode workers, same cameras, same load.
* ``scaling``: 1, 2, 4, 8 cameras at 5 fps; analysed frames per CPU-second (the unit of work)
  relative to one camera, until the CPU saturates; then the same with ``max_batch: 1`` to show
  the batching gain.
* ``latency``: frame-to-incident p50/p95 (the rule has ``min_duration: 0``) against the per-frame
  processing time (batch picked -> rules evaluated), same run; ``--compare-overlap`` runs each
  round without and with the overlap lane (``runtime.inference.overlap``), alternated.
* ``gc``: a full collection's pause in the serving process, start-up objects frozen or not.
* ``overload``: cameras demanding twice the measured capacity: the age of frames when inference
  takes them, drops counted, resident memory over time.
* ``baseline``: what a user would otherwise write, a single-process loop of PyAV decode ->
  ONNX Runtime -> ByteTrack over the same streams and model, and its detections checked equal to
  safewatch's on the same frames.
* ``soak``: 4 cameras with the default settings (motion gating on) for ``--seconds``; resident
  memory of the server and each decode process sampled every 10 s.
* ``tiling``: person precision and recall against PETS09 ground truth, whole frame vs 2x2 tiles.

JSON goes to ``bench/results/runtime_<section>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import yaml

from bench._common import ROOT, require_asset, write_results

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from rtsp_server import RtspCamera, looped_clip, rtsp_unavailable

if TYPE_CHECKING:
    from safewatch.domain import Frame, RuleEvent, TrackedFrame
    from safewatch.incidents import IncidentChange
    from safewatch.runtime.inference import Analysed

# The server is imported where it is used, not here: decode processes are spawned and import this
# module as their parent's main module, and should not carry ONNX Runtime and FastAPI with them.

MODEL = "models/yolox_nano_coco.onnx"
CLIP = "video/construction_cctv_640x352_24s.mp4"
WARMUP = 8.0


# -- cameras and sites ----------------------------------------------------------------------------


@contextlib.contextmanager
def rtsp_cameras(
    count: int, repeats: int = 10, *, clip: Path | None = None
) -> Iterator[list[RtspCamera]]:
    """``count`` RTSP servers, each serving ``clip`` (default: the construction clip) looped
    ``repeats`` times."""
    reason = rtsp_unavailable()
    if reason is not None:
        raise SystemExit(f"needs the GStreamer RTSP server: {reason}")
    folder = Path(tempfile.gettempdir()) / "safewatch-bench"
    folder.mkdir(exist_ok=True)
    source = clip or require_asset(CLIP)
    looped = folder / f"{source.stem}_x{repeats}.mp4"
    if not looped.exists():
        looped_clip(source, looped, repeats=repeats)
    cameras = [RtspCamera(looped) for _ in range(count)]
    try:
        for camera in cameras:
            camera.start()
        yield cameras
    finally:
        for camera in cameras:
            camera.kill()


def write_site(
    folder: Path,
    urls: Sequence[str],
    *,
    fps: float = 5.0,
    max_batch: int = 8,
    gating: bool = False,
    decode: str = "process",
    min_duration: str = "1s",
    overlap: bool = True,
) -> Path:
    """A site of ``len(urls)`` cameras on YOLOX-Nano, one whole-frame zone rule per camera."""
    site: dict[str, Any] = {
        "version": 1,
        "site": {"name": "bench"},
        "models": {
            "coco": {
                "path": str(require_asset(MODEL)),
                "format": "yolox",
                "labels": {"person": "person"},
            }
        },
        "cameras": {
            f"cam{i}": {"source": url, "fps": fps, "models": ["coco"]} for i, url in enumerate(urls)
        },
        "storage": {"database": "sqlite:///data/bench.db", "evidence_dir": "data/evidence"},
        "evidence": {"clips": False},
        "runtime": {
            "decode": decode,
            "inference": {"max_batch": max_batch, "max_wait_ms": 10, "overlap": overlap},
            "motion": {"enabled": gating},
        },
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    rules = folder / "rules"
    rules.mkdir(exist_ok=True)
    lines = ["version: 1", "zones:"]
    lines += [
        f"  all{i}: {{camera: cam{i}, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}"
        for i in range(len(urls))
    ]
    lines.append("rules:")
    for i in range(len(urls)):
        lines += [
            f"  - {{id: in-view-{i}, kind: zone_intrusion, zone: all{i}, objects: [person],",
            f"     min_duration: {min_duration}, grace: 0s, severity: low}}",
        ]
    (rules / "view.yaml").write_text("\n".join(lines) + "\n")
    return path


# -- measuring a running server -------------------------------------------------------------------


@dataclass
class Probe:
    """Per-frame timings from the rules stage's listener (exact, not histogram buckets).

    Listeners get the frame, not the runtime's record of it; :func:`timed_frames` hands the
    probe that record (when the frame arrived, was picked, was inferred) as the rules stage
    starts on it, on the same thread.
    """

    recording: bool = False
    current: Analysed | None = None
    current_started: float = 0.0  # when the rules stage took ``current`` up (wall clock)
    current_store: list[float] = field(default_factory=lambda: [0.0, 0.0])  # row, evidence hand-off
    current_rows: list[tuple[float, float]] = field(default_factory=list)  # its upserts (wall)
    # the evidence thread's attach_evidence transactions (wall start, end): they hold SQLite's
    # write lock, which an incident row opened meanwhile must wait for
    attach_intervals: list[tuple[float, float]] = field(default_factory=list)
    age_at_pick: list[float] = field(default_factory=list)
    age_at_evaluated: list[float] = field(default_factory=list)
    processing: list[float] = field(default_factory=list)
    inference: list[float] = field(default_factory=list)
    to_incident: list[float] = field(default_factory=list)
    incident_processing: list[float] = field(default_factory=list)  # picked -> stored
    handover: list[float] = field(default_factory=list)  # inferred -> rules stage takes it up
    rules: list[float] = field(default_factory=list)  # rules stage: track, rules, incident rows
    # each incident frame's time split: wait at pick, inference, hand-over, rules stage (of
    # which: the row's transaction, the still's and clip's hand-off to the evidence thread), GC
    incident_parts: list[tuple[float, ...]] = field(default_factory=list)
    gc_pauses: list[tuple[int, float, float]] = field(default_factory=list)  # (gen, start, end)
    _gc_started: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    frames: int = 0
    keep_samples: bool = True  # off for the soak: per-frame lists would grow for an hour
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self,
        frame: Frame,
        tracked: TrackedFrame,
        events: Sequence[RuleEvent],
        changes: Sequence[IncidentChange],
    ) -> None:
        from safewatch.incidents import ChangeKind

        item = self.current
        if not self.recording or item is None or item.frame is not frame:
            return
        now = time.time()
        with self.lock:
            self.frames += 1
            if not self.keep_samples:
                return
            self.age_at_pick.append(item.picked_at - item.received_at)
            self.age_at_evaluated.append(now - item.received_at)
            self.processing.append(now - item.picked_at)
            self.inference.append(item.inferred_at - item.picked_at)
            self.batch_sizes.append(item.batch_size)
            self.handover.append(self.current_started - item.inferred_at)
            self.rules.append(now - self.current_started)
            if any(change.kind is ChangeKind.OPENED for change in changes):
                self.to_incident.append(now - item.received_at)
                self.incident_processing.append(now - item.picked_at)
                self.incident_parts.append(
                    (
                        item.picked_at - item.received_at,
                        item.inferred_at - item.picked_at,
                        self.current_started - item.inferred_at,
                        now - self.current_started,
                        self.current_store[0],
                        sum(self.within(self.attach_intervals, a, b) for a, b in self.current_rows),
                        self.current_store[1],
                        self.gc_within(item.received_at, now),
                    )
                )

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        """``gc.callbacks`` hook: every collection's pause (any thread's; it stops them all)."""
        if not self.recording:
            return
        if phase == "start":
            self._gc_started = time.time()
        else:
            self.gc_pauses.append((info["generation"], self._gc_started, time.time()))

    def gc_within(self, start: float, end: float) -> float:
        """Seconds of garbage collection that fell between ``start`` and ``end``."""
        return self.within([(a, b) for _, a, b in list(self.gc_pauses)], start, end)

    @staticmethod
    def within(intervals: Sequence[tuple[float, float]], start: float, end: float) -> float:
        """Seconds of ``intervals`` (wall-clock start, end) that fell between ``start`` and
        ``end``."""
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in list(intervals) if b > start)


@contextlib.contextmanager
def timed_frames(probe: Probe) -> Iterator[None]:
    """Give ``probe`` each analysed frame's record as the rules stage takes it up, and time the
    incident row's transaction and the evidence hand-offs made on the rules thread for it."""
    from safewatch.incidents.recorder import EvidenceRecorder
    from safewatch.runtime.evaluation import RulesWorker
    from safewatch.storage.incident_repository import IncidentRepository

    evaluate = RulesWorker._evaluate
    rules_thread: list[int] = []

    def probed(worker: RulesWorker, item: Analysed) -> None:
        rules_thread[:] = [threading.get_ident()]
        probe.current = item
        probe.current_started = time.time()
        probe.current_store[:] = [0.0, 0.0]
        probe.current_rows.clear()
        evaluate(worker, item)

    def timed(owner: type, name: str, slot: int) -> tuple[type, str, Any]:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() not in rules_thread:
                if name != "attach_evidence" or not probe.recording:
                    return original(*args, **kwargs)
                began = time.time()
                try:
                    return original(*args, **kwargs)
                finally:
                    probe.attach_intervals.append((began, time.time()))
            started, began = time.perf_counter(), time.time()
            try:
                return original(*args, **kwargs)
            finally:
                probe.current_store[slot] += time.perf_counter() - started
                if slot == 0:
                    probe.current_rows.append((began, time.time()))

        setattr(owner, name, wrapper)
        return owner, name, original

    swapped: list[tuple[type, str, Any]] = [(RulesWorker, "_evaluate", evaluate)]
    setattr(RulesWorker, "_evaluate", probed)  # noqa: B010 - methods swapped for the run
    swapped.append(timed(IncidentRepository, "upsert", 0))
    swapped.append(timed(EvidenceRecorder, "record_still", 1))
    swapped.append(timed(EvidenceRecorder, "open_clip", 1))
    swapped.append(timed(IncidentRepository, "attach_evidence", 0))  # evidence thread only
    try:
        yield
    finally:
        for owner, name, original in swapped:
            setattr(owner, name, original)


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def rss(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def uss(pid: int) -> int:
    """Unique set size: memory only this process holds (shared libraries not counted)."""
    try:
        return int(psutil.Process(pid).memory_full_info().uss)
    except psutil.Error:
        return 0


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@dataclass
class Run:
    """One measured run of the server."""

    cameras: int
    fps: float
    seconds: float
    analysed: int
    inferred: int
    dropped: int
    cpu: float
    probe: Probe
    memory: list[tuple[float, int, int, int]]  # (t, server rss, decode rss sum, decode uss sum)
    restarts: int

    @property
    def analysed_fps(self) -> float:
        return self.analysed / self.seconds

    @property
    def cores(self) -> float:
        return self.cpu / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.analysed / self.cpu if self.cpu else float("nan")

    def summary(self) -> dict[str, Any]:
        p = self.probe
        return {
            "cameras": self.cameras,
            "fps_per_camera": self.fps,
            "demanded_fps": self.cameras * self.fps,
            "seconds": round(self.seconds, 1),
            "analysed_fps": round(self.analysed_fps, 2),
            "inferred_fps": round(self.inferred / self.seconds, 2),
            "dropped_per_s": round(self.dropped / self.seconds, 2),
            "cpu_cores": round(self.cores, 3),
            "analysed_per_cpu_second": round(self.per_cpu_second, 2),
            "mean_batch": round(statistics.fmean(p.batch_sizes), 2) if p.batch_sizes else None,
            "age_at_pick_ms_p50": round(1000 * pct(p.age_at_pick, 50), 1),
            "age_at_pick_ms_p95": round(1000 * pct(p.age_at_pick, 95), 1),
            "age_at_evaluated_ms_p95": round(1000 * pct(p.age_at_evaluated, 95), 1),
            "processing_ms_p50": round(1000 * pct(p.processing, 50), 1),
            "worker_restarts": self.restarts,
        }


def measure(
    site_path: Path,
    seconds: float,
    *,
    warmup: float = WARMUP,
    sample_every: float = 5.0,
    on_sample: Any = None,
    keep_samples: bool = True,
) -> Run:
    """Start the server on ``site_path``, let it warm up, measure for ``seconds``, stop it."""
    from safewatch.config.loader import load_site
    from safewatch.runtime.service import RuntimeService, ServeOptions

    site = load_site(site_path)
    probe = Probe(keep_samples=keep_samples)
    service = RuntimeService(
        site,
        ServeOptions(rules=site_path.parent / "rules", http=False, watch_site=False),
        listeners=[probe],
    )
    stack = contextlib.ExitStack()
    stack.enter_context(timed_frames(probe))
    gc.callbacks.append(probe.on_gc)
    stack.callback(gc.callbacks.remove, probe.on_gc)
    service.start()
    me = os.getpid()
    memory: list[tuple[float, int, int, int]] = []
    try:
        time.sleep(warmup)

        def pids() -> list[int]:
            return [me] + [
                s.pid for s in service.supervisor.statuses() if s.pid is not None and s.pid != me
            ]

        def totals() -> tuple[int, int, int]:
            snap = service.snapshot()
            analysed = sum(c.analysed for c in snap.cameras)
            inferred = sum(c.inferred for c in snap.cameras)
            dropped = sum(
                c.mailbox_dropped + c.source_dropped + c.torn_dropped for c in snap.cameras
            )
            return analysed, inferred, dropped

        a0, i0, d0 = totals()
        c0 = cpu_seconds(pids())
        probe.recording = True
        start = time.monotonic()
        next_sample = start
        while (now := time.monotonic()) < start + seconds:
            if now >= next_sample:
                workers = pids()[1:]
                memory.append(
                    (
                        round(now - start, 1),
                        rss(me),
                        sum(rss(pid) for pid in workers),
                        sum(uss(pid) for pid in workers),
                    )
                )
                if on_sample is not None:
                    on_sample(memory)
                next_sample += sample_every
            time.sleep(0.2)
        probe.recording = False
        elapsed = time.monotonic() - start
        a1, i1, d1 = totals()
        c1 = cpu_seconds(pids())
        restarts = sum(s.restarts for s in service.supervisor.statuses())
    finally:
        service.stop()
        stack.close()
    cameras = len(site.config.cameras)
    fps = next(iter(site.config.cameras.values())).fps
    return Run(cameras, fps, elapsed, a1 - a0, i1 - i0, d1 - d0, c1 - c0, probe, memory, restarts)


def run_with(urls: Sequence[str], seconds: float, **site_options: Any) -> Run:
    with tempfile.TemporaryDirectory(prefix="safewatch-bench-") as folder:
        return measure(write_site(Path(folder), urls, **site_options), seconds)


def header() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "model": "yolox_nano_coco (416x416)",
        "clip": "construction_cctv_640x352_24s.mp4 over RTSP (GStreamer), looped",
    }


def show(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    print("  ".join(f"{k:>14}" for k in keys))
    for row in rows:
        print("  ".join(f"{row.get(k)!s:>14}" for k in keys))


# -- sections -------------------------------------------------------------------------------------


def section_decode(seconds: float) -> dict[str, Any]:
    rows = []
    for count in (4, 8):
        with rtsp_cameras(count) as cameras:
            urls = [c.url for c in cameras]
            for mode in ("thread", "process", "thread", "process"):  # interleaved, twice
                run = run_with(urls, seconds, decode=mode)
                row = {"decode": mode, **run.summary()}
                row["server_rss_mib"] = round(run.memory[-1][1] / 2**20, 1)
                row["decode_rss_mib"] = round(run.memory[-1][2] / 2**20, 1)
                row["decode_uss_mib"] = round(run.memory[-1][3] / 2**20, 1)
                rows.append(row)
                print(row, flush=True)
    keys = ["decode", "cameras", "analysed_fps", "cpu_cores", "analysed_per_cpu_second"]
    show(rows, keys)
    return {"rows": rows}


def section_scaling(seconds: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with rtsp_cameras(8) as cameras:
        urls = [c.url for c in cameras]
        for max_batch in (8, 1):
            for count in (1, 2, 4, 8):
                run = run_with(urls[:count], seconds, max_batch=max_batch)
                rows.append({"max_batch": max_batch, **run.summary()})
                print(rows[-1], flush=True)
    for max_batch in (8, 1):
        mine = [r for r in rows if r["max_batch"] == max_batch]
        single = mine[0]["analysed_per_cpu_second"]
        for row in mine:
            row["efficiency_vs_one_camera"] = round(row["analysed_per_cpu_second"] / single, 3)
            row["keeps_up"] = row["analysed_fps"] >= 0.95 * row["demanded_fps"]
    batched = {r["cameras"]: r for r in rows if r["max_batch"] == 8}
    single_batch = {r["cameras"]: r for r in rows if r["max_batch"] == 1}
    gain = {
        n: {
            "analysed_fps": round(batched[n]["analysed_fps"] / single_batch[n]["analysed_fps"], 3),
            "per_cpu_second": round(
                batched[n]["analysed_per_cpu_second"] / single_batch[n]["analysed_per_cpu_second"],
                3,
            ),
        }
        for n in batched
    }
    show(
        rows,
        [
            "max_batch",
            "cameras",
            "demanded_fps",
            "analysed_fps",
            "cpu_cores",
            "analysed_per_cpu_second",
            "efficiency_vs_one_camera",
            "mean_batch",
        ],
    )
    print("batching gain (max_batch 8 / 1):", gain)
    return {"rows": rows, "batching_gain": gain}


def latency_figures(runs: Sequence[Run]) -> dict[str, Any]:
    """Frame-to-incident against per-frame processing, samples of ``runs`` pooled, and where
    the incident frames' time went."""
    to_incident = [t for r in runs for t in r.probe.to_incident]
    incident_processing = [t for r in runs for t in r.probe.incident_processing]
    processing_all = [t for r in runs for t in r.probe.processing]
    parts = [row for r in runs for row in r.probe.incident_parts]
    pauses = [(g, b - a) for r in runs for g, a, b in r.probe.gc_pauses]
    seconds = sum(r.seconds for r in runs)
    processing = statistics.median(processing_all)

    def ms(values: Sequence[float], q: float) -> float:
        return round(1000 * pct(values, q), 1)

    result: dict[str, Any] = {
        "runs": len(runs),
        "analysed_fps": round(sum(r.analysed for r in runs) / seconds, 2),
        # server and decode processes together
        "analysed_per_cpu_second": round(
            sum(r.analysed for r in runs) / sum(r.cpu for r in runs), 2
        ),
        "incidents_opened": len(to_incident),
        "frame_to_incident_ms_p50": ms(to_incident, 50),
        "frame_to_incident_ms_p95": ms(to_incident, 95),
        "frame_to_evaluated_ms_p95": ms([t for r in runs for t in r.probe.age_at_evaluated], 95),
        "per_frame_processing_ms_median": round(1000 * processing, 1),
        "per_frame_processing_ms_p95": ms(processing_all, 95),
        "per_frame_inference_ms_median": round(
            1000 * statistics.median(t for r in runs for t in r.probe.inference), 1
        ),
        "age_at_pick_ms_p95": ms([t for r in runs for t in r.probe.age_at_pick], 95),
        "handover_ms_p95": ms([t for r in runs for t in r.probe.handover], 95),
        "rules_stage_ms_p50": ms([t for r in runs for t in r.probe.rules], 50),
        "rules_stage_ms_p95": ms([t for r in runs for t in r.probe.rules], 95),
    }
    # Strict reading: against the median processing time of all frames (most open no incident).
    result["ratio_p50"] = round(pct(to_incident, 50) / processing, 2)
    result["ratio_p95"] = round(pct(to_incident, 95) / processing, 2)
    result["meets_target_2x"] = result["ratio_p95"] <= 2.0
    result["incident_frame_processing_ms_p50"] = ms(incident_processing, 50)
    result["incident_frame_processing_ms_p95"] = ms(incident_processing, 95)
    # Where the slowest incident frames' time went: the mean of each part over the frames at or
    # above the p95 of frame-to-incident, beside the mean over all incident frames.
    names = (
        "wait_at_pick",
        "inference",
        "handover",
        "rules_stage",
        "row_transaction",
        "row_during_attach_evidence",
        "evidence_handoff",
        "gc_overlap",
    )
    cut = pct(to_incident, 95)
    tail = [row for row, t in zip(parts, to_incident, strict=True) if t >= cut]
    for label, rows in (("all", parts), ("tail", tail)):
        for index, name in enumerate(names):
            values = [row[index] for row in rows]
            result[f"incident_{name}_ms_mean_{label}"] = (
                round(1000 * statistics.fmean(values), 1) if values else None
            )
    for generation in (0, 1, 2):
        own = [d for g, d in pauses if g == generation]
        result[f"gc{generation}_per_minute"] = round(60 * len(own) / seconds, 1)
        result[f"gc{generation}_pause_ms_max"] = round(1000 * max(own), 1) if own else None
    result["samples_ms"] = {
        "to_incident": [round(1000 * t, 2) for t in to_incident],
        "incident_processing": [round(1000 * t, 2) for t in incident_processing],
    }
    return result


def section_latency(seconds: float, rounds: int = 1, compare: bool = False) -> dict[str, Any]:
    """Frame-to-incident p50/p95 against per-frame processing, and where the time goes.

    ``rounds`` fresh servers on the same two cameras, samples pooled; each run's figures are
    printed as it ends, since the machine's load moves between runs. With ``compare``, every
    round runs the server twice, without and with the overlap lane (``runtime.inference.
    overlap``), in alternating order, and each side's figures are pooled on their own.
    """
    sides = ("off", "on") if compare else ("on",)
    runs: dict[str, list[Run]] = {side: [] for side in sides}
    loads: dict[str, list[float]] = {side: [] for side in sides}
    with rtsp_cameras(2) as cameras:
        for round_no in range(rounds):
            order = sides if round_no % 2 == 0 else sides[::-1]
            for side in order:
                run = run_with(
                    [c.url for c in cameras], seconds, min_duration="0s", overlap=side == "on"
                )
                loads[side].append(round(os.getloadavg()[0], 2))
                runs[side].append(run)
                one = latency_figures([run])
                print(
                    f"run {round_no + 1} overlap {side}: p50 {one['frame_to_incident_ms_p50']} ms, "
                    f"p95 {one['frame_to_incident_ms_p95']} ms, processing "
                    f"{one['per_frame_processing_ms_median']} ms, ratio {one['ratio_p95']} "
                    f"(load {loads[side][-1]})",
                    flush=True,
                )
    if not compare:
        result: dict[str, Any] = {"load_average_1min_after_each_run": loads["on"]}
        result.update(latency_figures(runs["on"]))
        for key, value in result.items():
            if key != "samples_ms":
                print(f"  {key}: {value}")
        return result
    result = {"overlap": {}}
    for side in sides:
        figures = {"load_average_1min_after_each_run": loads[side], **latency_figures(runs[side])}
        result["overlap"][side] = figures
        print(f"overlap {side}:")
        for key, value in figures.items():
            if key != "samples_ms":
                print(f"  {key}: {value}")
    on, off = result["overlap"]["on"], result["overlap"]["off"]
    result["on_over_off"] = {
        key: round(on[key] / off[key], 3)
        for key in (
            "frame_to_incident_ms_p50",
            "frame_to_incident_ms_p95",
            "per_frame_processing_ms_median",
            "per_frame_processing_ms_p95",
            "ratio_p95",
            "analysed_per_cpu_second",
        )
    }
    print("on / off:", result["on_over_off"])
    return result


def section_gc(seconds: float, rounds: int = 5) -> dict[str, Any]:
    """The pause of a full collection in the serving process, start-up objects frozen or not.

    The server freezes what start-up left (``freeze_start_up_objects``); a full collection then
    walks only what was made since. Two cameras serve for ``seconds``, then ``gc.collect()`` is
    timed ``rounds`` times with the freeze undone and redone, alternating, each 2 s after the
    change while frames flow (so the objects made meanwhile are walked on both sides).
    """
    from safewatch.config.loader import load_site
    from safewatch.runtime.service import RuntimeService, ServeOptions

    samples: dict[str, list[float]] = {"frozen": [], "unfrozen": []}
    counts: dict[str, int] = {}
    with rtsp_cameras(2) as cameras, tempfile.TemporaryDirectory() as folder:
        path = write_site(Path(folder), [c.url for c in cameras], min_duration="0s")
        service = RuntimeService(
            load_site(path), ServeOptions(rules=path.parent / "rules", http=False, watch_site=False)
        )
        service.start()
        try:
            counts["frozen_objects_after_start"] = gc.get_freeze_count()
            time.sleep(seconds)
            for round_no in range(rounds):
                sides = ("unfrozen", "frozen") if round_no % 2 == 0 else ("frozen", "unfrozen")
                for side in sides:
                    if side == "unfrozen":
                        gc.unfreeze()
                    else:
                        gc.freeze()
                    time.sleep(2.0)  # serving goes on: objects made meanwhile are walked too
                    started = time.perf_counter()
                    gc.collect()
                    samples[side].append(time.perf_counter() - started)
            counts["tracked_objects_unfrozen"] = len(gc.get_objects()) + gc.get_freeze_count()
        finally:
            gc.freeze()
            service.stop()
    result: dict[str, Any] = dict(counts)
    for side, values in samples.items():
        result[f"full_collection_ms_{side}"] = [round(1000 * v, 1) for v in values]
        result[f"full_collection_ms_{side}_median"] = round(1000 * statistics.median(values), 1)
    result["frozen_over_unfrozen"] = round(
        result["full_collection_ms_frozen_median"] / result["full_collection_ms_unfrozen_median"],
        3,
    )
    for key, value in result.items():
        print(f"  {key}: {value}")
    return result


def section_overload(seconds: float) -> dict[str, Any]:
    cameras_n = 8
    with rtsp_cameras(cameras_n) as cameras:
        urls = [c.url for c in cameras]
        probe_run = run_with(urls, 20.0, fps=10.0)  # 80 fps demanded: measures capacity
        capacity = probe_run.analysed_fps
        fps = round(2 * capacity / cameras_n, 2)
        print(f"capacity {capacity:.1f} frames/s -> {cameras_n} cameras at {fps} fps", flush=True)
        run = run_with(urls, seconds, fps=fps)
    p = run.probe
    interval = 1.0 / fps
    memory = run.memory
    half = len(memory) // 2
    first = statistics.fmean(m[1] + m[2] for m in memory[1 : max(2, half)])
    last = statistics.fmean(m[1] + m[2] for m in memory[half:])
    result = {
        **run.summary(),
        "capacity_fps": round(capacity, 2),
        "demand_over_capacity": round(cameras_n * fps / capacity, 2),
        "frame_interval_ms": round(1000 * interval, 1),
        "age_at_pick_intervals_p50": round(pct(p.age_at_pick, 50) / interval, 2),
        "age_at_pick_intervals_p95": round(pct(p.age_at_pick, 95) / interval, 2),
        "age_at_pick_intervals_max": round(max(p.age_at_pick) / interval, 2),
        "age_at_evaluated_intervals_p95": round(pct(p.age_at_evaluated, 95) / interval, 2),
        "dropped_share": round(run.dropped / max(1, run.dropped + run.analysed), 3),
        "memory_mib_first_half": round(first / 2**20, 1),
        "memory_mib_second_half": round(last / 2**20, 1),
        "memory_growth": round(last / first - 1, 4),
        "memory_samples": memory,
    }
    for key, value in result.items():
        if key != "memory_samples":
            print(f"  {key}: {value}")
    return result


def section_soak(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"seconds": seconds, **header()}

    def save(samples: list[tuple[float, int, int, int]]) -> None:
        out["memory_samples"] = list(samples)
        write_results("runtime_soak", out)

    with rtsp_cameras(4, repeats=200) as cameras, tempfile.TemporaryDirectory() as folder:
        path = write_site(Path(folder), [c.url for c in cameras], gating=True)
        run = measure(
            path, seconds, warmup=60.0, sample_every=10.0, on_sample=save, keep_samples=False
        )
    memory = run.memory
    warm = memory[1:4]  # the minute after warm-up
    end = memory[-3:]
    start_mib = statistics.fmean(m[1] + m[2] for m in warm) / 2**20
    end_mib = statistics.fmean(m[1] + m[2] for m in end) / 2**20
    out.update(run.summary())
    out.update(
        {
            "memory_samples": memory,
            "rss_mib_after_warmup": round(start_mib, 1),
            "rss_mib_at_end": round(end_mib, 1),
            "growth": round(end_mib / start_mib - 1, 4),
            "server_rss_growth": round(
                statistics.fmean(m[1] for m in end) / statistics.fmean(m[1] for m in warm) - 1, 4
            ),
        }
    )
    print({k: v for k, v in out.items() if k != "memory_samples"})
    return out


def section_tiling(seconds: float) -> dict[str, Any]:
    """Person recall and precision with and without 2x2 tiling, against PETS09 ground truth.

    No cameras here: the detector on the 100 annotated frames, whole frame vs whole frame plus
    four overlapping tiles merged by :mod:`safewatch.detect.tiling` (``seconds`` is unused).
    """
    del seconds
    import av

    from bench.runtime_baseline import _match
    from safewatch.config.runtime import TilingConfig
    from safewatch.config.site import ModelConfig
    from safewatch.detect import OnnxDetector
    from safewatch.detect.tiling import crop_tiles, merge_tiles, plan_tiles
    from safewatch.domain import Frame

    truth: dict[int, list[list[float]]] = {}
    gt = require_asset("video/pets09_s2l1_gt/gt_480x360_frames1-100.txt")
    for line in gt.read_text().splitlines():
        frame, _, x, y, w, h = (float(v) for v in line.split(",")[:6])
        truth.setdefault(int(frame) - 1, []).append([x, y, x + w, y + h])
    detector = OnnxDetector(
        ModelConfig(path="x", format="yolox", labels={"person": "person"}),
        require_asset(MODEL),
        "coco",
    )
    tiling = TilingConfig(columns=2, rows=2, overlap=0.2, full_frame=True)
    counts = {"full_frame": [0, 0, 0.0], "tiled_2x2": [0, 0, 0.0]}  # matched, found, seconds
    total = 0
    with av.open(str(require_asset("video/pets09_s2l1_480x360.avi"))) as container:
        for index, picture in enumerate(container.decode(video=0)):
            if index >= 100:
                break
            image = picture.to_ndarray(format="bgr24")
            expected = np.asarray(truth.get(index, []), np.float32).reshape(-1, 4)
            total += len(expected)
            frame = Frame("pets", index, 0.0, 0.0, image)
            started = time.perf_counter()
            (full,) = detector.detect([frame])
            counts["full_frame"][2] += time.perf_counter() - started
            started = time.perf_counter()
            tiles = plan_tiles(frame.width, frame.height, tiling)
            found = detector.detect([frame, *crop_tiles(frame, tiles)])
            merged = merge_tiles(frame.width, frame.height, tiles, found[1:], found[0])
            counts["tiled_2x2"][2] += time.perf_counter() - started
            for name, boxes in (("full_frame", full.xyxy), ("tiled_2x2", merged.xyxy)):
                counts[name][0] += _match(boxes, expected)
                counts[name][1] += len(boxes)
    result: dict[str, Any] = {"frames": 100, "ground_truth_boxes": total}
    for name, (matched, found_n, spent) in counts.items():
        precision = matched / max(1, found_n)
        recall = matched / max(1, total)
        result[name] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "ms_per_frame": round(1000 * spent / 100, 1),
        }
        print(name, result[name])
    return result


def main(argv: Sequence[str] | None = None) -> None:
    from bench.runtime_baseline import section_baseline

    sections = {
        "decode": (section_decode, 25.0),
        "scaling": (section_scaling, 20.0),
        "latency": (section_latency, 120.0),
        "gc": (section_gc, 20.0),
        "overload": (section_overload, 90.0),
        "baseline": (section_baseline, 30.0),
        "soak": (section_soak, 600.0),
        "tiling": (section_tiling, 0.0),
    }
    # SIGTERM unwinds like Ctrl-C, so the server, its decoders and the RTSP cameras are stopped.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=sorted(sections))
    parser.add_argument("--seconds", type=float, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=1, help="latency: runs, samples pooled")
    parser.add_argument(
        "--compare-overlap",
        action="store_true",
        help="latency: each round without and with runtime.inference.overlap, alternated",
    )
    args = parser.parse_args(argv)
    function, default = sections[args.section]
    info = header()
    started = time.monotonic()
    if args.section == "latency":
        result = section_latency(args.seconds or default, args.rounds, args.compare_overlap)
    else:
        result = function(args.seconds or default)
    info["wall_seconds"] = round(time.monotonic() - started, 1)
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    name = "latency_overlap" if args.section == "latency" and args.compare_overlap else args.section
    path = write_results(f"runtime_{name}", {**info, **result})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
