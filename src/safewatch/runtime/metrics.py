"""Prometheus metrics of ``safewatch serve`` (``GET /metrics``).

Two kinds, on one registry per server (so tests can run several in one process):

* instruments updated where things happen: inference latency per model, batch sizes, frame age at
  inference and after evaluation, per-frame processing time, frame-to-incident latency, errors;
* a collector that reads the camera statuses at scrape time (:class:`CameraStatus`): frames
  decoded, analysed, inferred, skipped by the motion gate and dropped (by stage), reconnects,
  worker restarts, recent decode and analysed fps, seconds since the last decoded, inferred and
  evaluated frame, queue depths, the resident memory of the server and of each decode
  process, and each recorded camera's recording (up, segments written). Counters that workers
  report survive worker restarts (the supervisor adds up incarnations), so ``rate()`` never
  sees a reset that did not happen.

The process-wide default registry (the server's own ``process_*`` metrics, the rule reloader's
counters) is rendered after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from safewatch.api.health import METRICS_CONTENT_TYPE
from safewatch.recording.service import RecordingState
from safewatch.runtime.ppe_coverage import ItemCoverage

if TYPE_CHECKING:  # the recorder pulls in PyAV and OpenCV; the API process needs neither
    from safewatch.incidents.recorder import RecorderStats

__all__ = [
    "CONTENT_TYPE",
    "ERROR_STAGES",
    "FINISHED_WORKERS",
    "CameraStatus",
    "RuntimeMetrics",
    "RuntimeSnapshot",
]

CONTENT_TYPE = METRICS_CONTENT_TYPE

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
_AGE_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)

_FRAME_AGE_LABELS = ("camera", "stage")
_PPE_LABELS = ("camera", "item", "state")

FINISHED_WORKERS = ("ended", "stopped")
"""Worker states of a camera that is done on purpose (a file camera without ``loop`` played to
its end, a camera being stopped): ``/readyz`` leaves it out, and so do the camera-down series."""

ERROR_STAGES = ("inference", "rules", "storage", "inference-thread", "rules-thread")
"""The stages of ``safewatch_runtime_errors_total`` (a thread that died and was restarted is
``<name>-thread``)."""


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """Everything the server knows of one camera right now (metrics and ``/readyz``).

    Counters are cumulative since the server started, across worker restarts. Times are
    wall-clock seconds since the epoch, ``None`` when it never happened.
    """

    camera_id: str
    name: str
    worker_state: str
    source_state: str
    message: str
    pid: int | None
    incarnation: int
    restarts: int
    fps_target: float
    decoded: int
    sampled: int
    reconnects: int
    bad_packets: int
    source_dropped: int
    mailbox_dropped: int
    torn_dropped: int
    stale_dropped: int
    inferred: int
    motion_skipped: int
    analysed: int
    decode_fps: float
    analysed_fps: float
    last_decoded_at: float | None
    last_inferred_at: float | None
    last_evaluated_at: float | None
    memory_bytes: int | None
    ppe: tuple[ItemCoverage, ...] = ()
    """Person-seconds per PPE item, checked and all (:mod:`safewatch.runtime.ppe_coverage`)."""
    recording: RecordingState | None = None
    """Its continuous recording; ``None`` when it does not record here."""
    frozen_dropped: int = 0
    """Sampled frames withheld because the picture was frozen (:mod:`safewatch.ingest.freeze`)."""


@dataclass(frozen=True, slots=True)
class RuntimeSnapshot:
    """Server-wide state read at scrape time."""

    cameras: Sequence[CameraStatus]
    mailbox_depth: int
    results_depth: int
    server_memory_bytes: int
    now: float
    evidence: RecorderStats | None = None
    """The evidence recorder's counters; ``None`` before it started."""


class RuntimeMetrics:
    """The server's registry and its inline instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inference_latency = Histogram(
            "safewatch_inference_latency_seconds",
            "Wall time of one detector run over a batch, by model and inference lane.",
            ["model", "lane"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "safewatch_inference_batch_size",
            "Frames (from different cameras) per inference round.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.frame_age = Histogram(
            "safewatch_frame_age_seconds",
            "Age of a frame (since its decode worker published it) when inference picks it up "
            "and when its rules have been evaluated.",
            _FRAME_AGE_LABELS,
            buckets=_AGE_BUCKETS,
            registry=self.registry,
        )
        self.frame_processing = Histogram(
            "safewatch_frame_processing_seconds",
            "Wall time from a frame's batch being picked to the end of its rule evaluation.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.frame_to_incident = Histogram(
            "safewatch_frame_to_incident_seconds",
            "From the decoded frame that opened an incident to the incident being stored (a "
            "rule's min_duration is before that frame, so it is not included).",
            buckets=_AGE_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "safewatch_runtime_errors",
            "Failures that were logged and survived, by stage.",
            ["stage"],
            registry=self.registry,
        )
        # At 0 from the start: increase() over a series that appears at its first failure
        # (already 1) reads 0, and the alert on that failure never fired.
        for stage in ERROR_STAGES:
            self.errors.labels(stage=stage)
        self.incidents = Counter(
            "safewatch_incident_changes",
            "Incidents stored, by change (opened, updated, closed).",
            ["kind"],
            registry=self.registry,
        )
        self.ppe_person_seconds = Counter(
            "safewatch_camera_ppe_person_seconds",
            "Seconds of tracked persons on the frame clock, by PPE item and voted state "
            "(present, absent, unknown). (present + absent) / all is the share of "
            "person-seconds whose PPE could be checked; unknown is a person seen but not "
            "verified; PPE-only subjects are not counted (docs/ppe.md).",
            _PPE_LABELS,
            registry=self.registry,
        )
        self.api_restarts = Counter(
            "safewatch_api_process_restarts",
            "Restarts of the API process by the server, by reason: exited (it died) or hung "
            "(stopped, or its event loop answered no liveness ping in time).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("exited", "hung"):
            self.api_restarts.labels(reason=reason)
        self.site_reload_failing = Gauge(
            "safewatch_site_reload_failing",
            "1 while the site file on disk is refused (invalid, or a model that cannot load) "
            "and the previous configuration runs.",
            registry=self.registry,
        )
        self.incidents_unsaved = Gauge(
            "safewatch_incidents_unsaved",
            "Incidents held in memory because the database refused their opening or closing "
            "(a full disk, a locked file, a database down); their alerts wait with them. The "
            "server tries again and stores them when it can (docs/evidence.md).",
            registry=self.registry,
        )
        self.inference_alive = Gauge(
            "safewatch_inference_worker_up",
            "1 while the inference and rules threads run and have looped recently; 0 when "
            "either died or hangs (/healthz is hung and says which).",
            registry=self.registry,
        )

    def forget_camera(self, camera_id: str) -> None:
        """Remove a stopped camera's series of the instruments labelled by camera.

        The collector's series end with the camera by themselves (it is no longer in the
        snapshot); these lived on, a removed camera's frame ages and person-seconds exported
        forever (and, under ``serve --cluster``, those of every camera this node ever held). A
        camera stopped for a reconfiguration starts them again from 0, which ``rate()`` takes
        as a reset.
        """
        for metric, names in (
            (self.frame_age, _FRAME_AGE_LABELS),
            (self.ppe_person_seconds, _PPE_LABELS),
        ):
            found = {
                tuple(sample.labels[name] for name in names)
                for family in metric.collect()
                for sample in family.samples
                if sample.labels.get("camera") == camera_id
            }
            for values in found:
                metric.remove(*values)

    def watch(self, snapshot: Callable[[], RuntimeSnapshot]) -> None:
        """Register the collector that reads ``snapshot()`` at every scrape."""
        self.registry.register(_SnapshotCollector(snapshot))

    def render(self) -> bytes:
        """The exposition text: this server's registry, then the process-wide one."""
        return generate_latest(self.registry) + generate_latest(REGISTRY)


def _counter(name: str, doc: str, labels: Sequence[str] = ("camera",)) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Sequence[str] = ("camera",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], RuntimeSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return []  # dynamic: nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        snap = self._snapshot()
        decoded = _counter("safewatch_camera_decoded_frames", "Frames decoded from the camera.")
        sampled = _counter(
            "safewatch_camera_sampled_frames", "Decoded frames kept at the analysis rate."
        )
        analysed = _counter(
            "safewatch_camera_analysed_frames", "Frames through tracking, rules and incidents."
        )
        inferred = _counter("safewatch_camera_inferred_frames", "Frames the detectors ran on.")
        skipped = _counter(
            "safewatch_camera_motion_skipped_frames",
            "Static frames analysed with the previous detections (motion gate).",
        )
        dropped = _counter(
            "safewatch_camera_dropped_frames",
            "Sampled frames never analysed, by stage: source (decode buffer), mailbox (replaced "
            "by a newer frame before inference), torn (shared-memory slot overwritten), stale "
            "(from a worker that was restarted), frozen (the picture had not changed for "
            "watchdog.freeze_seconds).",
            labels=("camera", "stage"),
        )
        reconnects = _counter("safewatch_camera_reconnects", "Reconnect attempts to the camera.")
        restarts = _counter(
            "safewatch_camera_worker_restarts",
            "Decode worker restarts (crashed, stalled, or killed).",
        )
        bad = _counter("safewatch_camera_bad_packets", "Packets the decoder rejected.")
        decode_fps = _gauge("safewatch_camera_decode_fps", "Decoded frames/s, last seconds.")
        analysed_fps = _gauge("safewatch_camera_analysed_fps", "Analysed frames/s, last seconds.")
        target_fps = _gauge("safewatch_camera_target_fps", "Configured analysis frames/s.")
        up = _gauge("safewatch_camera_up", "1 while the camera is streaming.")
        state = _gauge(
            "safewatch_camera_state",
            "1 for the camera's current source state.",
            labels=("camera", "state"),
        )
        since = _gauge(
            "safewatch_camera_seconds_since_frame",
            "Seconds since the camera's last frame reached a stage (decoded, inferred, "
            "evaluated); absent until the first one.",
            labels=("camera", "stage"),
        )
        memory = _gauge(
            "safewatch_resident_memory_bytes",
            "Resident memory by process: the server, and each decode process.",
            labels=("process",),
        )
        depth = _gauge("safewatch_queue_depth", "Items waiting per queue.", labels=("queue",))
        recording_up = _gauge(
            "safewatch_recording_up",
            "1 while the camera's recorder is connected and writing; only cameras that record "
            "here.",
        )
        recorded = _counter(
            "safewatch_recording_segments",
            "Recorded segments closed and named on disk, across recorder restarts.",
        )
        for cam in snap.cameras:
            c = [cam.camera_id]
            decoded.add_metric(c, cam.decoded)
            sampled.add_metric(c, cam.sampled)
            analysed.add_metric(c, cam.analysed)
            inferred.add_metric(c, cam.inferred)
            skipped.add_metric(c, cam.motion_skipped)
            for stage, value in (
                ("source", cam.source_dropped),
                ("frozen", cam.frozen_dropped),
                ("mailbox", cam.mailbox_dropped),
                ("torn", cam.torn_dropped),
                ("stale", cam.stale_dropped),
            ):
                dropped.add_metric([cam.camera_id, stage], value)
            reconnects.add_metric(c, cam.reconnects)
            restarts.add_metric(c, cam.restarts)
            bad.add_metric(c, cam.bad_packets)
            decode_fps.add_metric(c, cam.decode_fps)
            analysed_fps.add_metric(c, cam.analysed_fps)
            target_fps.add_metric(c, cam.fps_target)
            state.add_metric([cam.camera_id, cam.source_state], 1.0)
            if cam.worker_state not in FINISHED_WORKERS:
                # An ended file camera kept camera_up 0 and a growing seconds_since_frame for
                # good: SafewatchCameraDown and SafewatchCameraStale fired forever for a camera
                # that is done, as /readyz (which leaves it out) says.
                up.add_metric(c, 1.0 if cam.source_state == "streaming" else 0.0)
                for stage, at in (
                    ("decoded", cam.last_decoded_at),
                    ("inferred", cam.last_inferred_at),
                    ("evaluated", cam.last_evaluated_at),
                ):
                    if at is not None:
                        since.add_metric([cam.camera_id, stage], max(0.0, snap.now - at))
            if cam.memory_bytes is not None and cam.worker_state == "running":
                memory.add_metric([f"decode:{cam.camera_id}"], cam.memory_bytes)
            if cam.recording is not None:
                recording_up.add_metric(c, 1.0 if cam.recording.up else 0.0)
                recorded.add_metric(c, cam.recording.segments)
        memory.add_metric(["server"], snap.server_memory_bytes)
        depth.add_metric(["mailbox"], snap.mailbox_depth)
        depth.add_metric(["results"], snap.results_depth)
        yield from _evidence_metrics(snap.evidence)
        yield from (
            decoded,
            sampled,
            analysed,
            inferred,
            skipped,
            dropped,
            reconnects,
            restarts,
            bad,
            decode_fps,
            analysed_fps,
            target_fps,
            up,
            state,
            since,
            memory,
            depth,
            recording_up,
            recorded,
        )


def _evidence_metrics(stats: RecorderStats | None) -> Iterable[Metric]:
    """The evidence recorder's failures, read from its own counters at each scrape (one count,
    the recorder's): a full evidence disk lost every still and clip with only a log line and
    ``RecorderStats``, which nothing outside the recorder read. Every series exists (at 0) from
    the recorder's start, so ``increase()`` sees the first failure."""
    if stats is None:
        return
    failures = CounterMetricFamily(
        "safewatch_evidence_failures",
        "Evidence not stored, by kind: still (annotated or clean still of an incident), clip "
        "(abandoned, not stored, or without a frame), original (sealed original).",
        labels=["kind"],
    )
    for kind, value in (
        ("still", stats.stills_failed),
        ("clip", stats.clips_failed),
        ("original", stats.originals_failed),
    ):
        failures.add_metric([kind], value)
    yield failures
    yield CounterMetricFamily(
        "safewatch_evidence_frames_dropped",
        "Frames dropped from the clip buffers and clips because the evidence thread was behind "
        "(a slow or full disk): the clips have gaps.",
        value=stats.frames_dropped,
    )
