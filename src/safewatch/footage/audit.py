"""``safewatch audit``: run the pipeline over archived footage and collect the incidents.

An audit is a backtest, not production: its incidents go to a database and evidence folder inside
the output folder, never into the site's live incident store. Each video is a fresh run (new
tracker, new rule state) under one camera's settings, so its results do not depend on the order of
the videos.

Several videos share one database and one evidence folder, and an incident's id is derived from
its camera, rule, track and start time. Videos without their own time (no ``creation_time``, or
one ``--start`` for all) used to start at the same instant: two videos with a person in a zone
from their first frame made the same incident id, so one row stood for two episodes and one
video's still replaced the other's. Such a video now starts where the one before it ended, as
consecutive exports of one camera do (:func:`next_start`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from safewatch.config.loader import LoadedSite
from safewatch.config.site import CameraConfig, PrivacyConfig
from safewatch.detect import Detector
from safewatch.domain import Frame, Incident, RuleEvent, TrackedFrame, Zone
from safewatch.errors import ModelError, SourceError
from safewatch.footage.audit_integrity import RESULT, staged_output, video_coverage
from safewatch.incidents import (
    EvidenceRecorder,
    EvidenceStore,
    IncidentChange,
    IncidentManager,
    anonymise_heads,
    draw_overlay,
)
from safewatch.incidents.faces import face_detector
from safewatch.ingest import FileSource, Source, open_source
from safewatch.ingest.video_writer import Mp4Writer
from safewatch.pipeline.run import FrameListener, FrameSource, Pipeline, PipelineStats
from safewatch.pipeline.stages import build_file_run_detectors, build_tracker, pick_camera
from safewatch.rules import RuleEngine, RuleSet, calibrations_from_site
from safewatch.storage import IncidentRepository, create_engine_for

__all__ = [
    "AuditOptions",
    "AuditReport",
    "VideoResult",
    "check_videos",
    "next_start",
    "open_timed",
    "run_audit",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """What the user asked for on the command line.

    Attributes:
        videos: Video files, in order.
        out_dir: Output folder (created). A successful audit replaces an earlier audit's files
            there; a failed one leaves the folder as it was.
        camera: Camera key whose models, fps and zones apply; ``None`` means the only camera.
        annotate: Write an annotated MP4 per video (heads hidden per the site's privacy).
        clips: Write an evidence clip per incident (when the site's ``evidence.clips`` is on).
        batch_size: Frames per detector call.
        start: Wall-clock time (Unix seconds) of the first video's first frame (each later
            video follows the one before it); ``None`` reads each file's ``creation_time``
            metadata, else times count from the Unix epoch, or from the previous video's end.
    """

    videos: tuple[Path, ...]
    out_dir: Path
    camera: str | None = None
    annotate: bool = False
    clips: bool = True
    batch_size: int = 4
    start: float | None = None


@dataclass(frozen=True, slots=True)
class VideoResult:
    """One video's run.

    ``clock`` says where wall times came from: ``argument`` (``--start``), ``creation_time``
    (the file's metadata) or ``epoch`` (unknown: times are offsets from 1970-01-01, or for a
    later video from the end of the one before).
    ``coverage`` is the share of the video decoded (``None``: its length is unknown) and
    ``bad_packets`` what the decoder skipped (:mod:`safewatch.footage.audit_integrity`);
    ``untimed`` how many of its ``decoded`` pictures had no usable timestamp of their own (missing
    or repeated) and were timed at the file's frame rate instead.
    """

    video: Path
    camera_id: str
    stats: PipelineStats
    incidents: tuple[Incident, ...]
    annotated: Path | None
    clock: str = "argument"
    coverage: float | None = None
    bad_packets: int = 0
    untimed: int = 0
    decoded: int = 0


@dataclass
class AuditReport:
    """Everything one ``audit`` produced."""

    out_dir: Path
    results: list[VideoResult] = field(default_factory=list)
    incidents_json: Path | None = None


def check_videos(camera_id: str, camera: CameraConfig, videos: Sequence[Path]) -> None:
    """Open and close every video as its run will (:func:`open_timed`), before any model loads.

    A bad file late in the list (empty, truncated before its index, not a video) used to fail
    the run only when its turn came, after hours of earlier videos, and the staging folder went
    with their results; now the run fails at once, naming every unreadable file. Shared with
    ``safewatch backtest``.

    Raises:
        SourceError: No video given, or some cannot be opened (each one's reason).
    """
    if not videos:
        raise SourceError("no video given")
    problems: list[str] = []
    for video in videos:
        try:
            source, _ = open_timed(camera_id, camera, video, None, None)
        except SourceError as exc:
            problems.append(str(exc))
        else:
            source.close()
    if problems:
        raise SourceError(
            f"{len(problems)} of {len(videos)} video(s) cannot be read, nothing was analysed: "
            + "; ".join(problems)
        )


class _Annotator:
    """Hides heads, draws overlays and encodes them, as a pipeline observer."""

    def __init__(
        self, path: Path, fps: float, zones: Sequence[Zone], privacy: PrivacyConfig
    ) -> None:
        self.path = path
        self._fps = fps
        self._zones = tuple(zones)
        self._privacy = privacy
        self._writer: Mp4Writer | None = None

    def __call__(
        self,
        frame: Frame,
        tracked: TrackedFrame,
        events: Sequence[RuleEvent],
        changes: Sequence[IncidentChange],
    ) -> None:
        if self._writer is None:
            self._writer = Mp4Writer(self.path, self._fps, frame.width, frame.height)
        violating = {event.track_ids[0] for event in events if event.track_ids}
        hidden = anonymise_heads(frame.image, tracked, self._privacy)
        self._writer.write(draw_overlay(hidden, tracked, self._zones, violating), frame.pts)

    def close(self) -> Path | None:
        if self._writer is None:
            return None
        self._writer.close()
        return self.path


def run_audit(
    site: LoadedSite,
    rules: RuleSet,
    options: AuditOptions,
    *,
    console: Console | None = None,
    detector: Detector | None = None,
) -> AuditReport:
    """Audit every video and write ``incidents.json`` into ``options.out_dir``.

    Args:
        site: The loaded site file.
        rules: The rule set to apply.
        options: Videos, output folder, camera, annotation.
        console: Where the progress bar goes; ``None`` for none.
        detector: A ready detector to reuse (benchmarks, tests); built from the site otherwise.
    """
    from safewatch.footage.audit_report import write_incidents_json

    camera_id, camera = pick_camera(site, options.camera)
    check_videos(camera_id, camera, options.videos)
    privacy = site.config.privacy_for(camera_id)
    if privacy.face_model:
        # Load it now: on the evidence thread a wrong model would only be logged, and every
        # incident would come out without its still and clip.
        try:
            face_detector(privacy.face_model)
        except ModelError as exc:
            raise ModelError(f"privacy.faces: {exc}") from exc
    with staged_output(options.out_dir) as staging:
        staged = replace(options, out_dir=staging)
        detectors = [detector] if detector is not None else build_file_run_detectors(site, camera)
        zones = rules.zones_for(camera_id)
        engine = create_engine_for(f"sqlite:///{(staging / 'audit.db').resolve()}", Path("."))
        repository = IncidentRepository(engine)
        evidence = EvidenceStore(staging / "evidence", log=repository)
        report = AuditReport(out_dir=staging)
        names = _annotated_names(options.videos)
        after: float | None = None
        try:
            for video, name in zip(options.videos, names, strict=True):
                result = _audit_one(
                    video,
                    camera_id,
                    camera,
                    site,
                    rules,
                    staged,
                    detectors,
                    zones,
                    repository,
                    evidence,
                    console,
                    after=after,
                    annotated_name=name,
                )
                report.results.append(result)
                after = next_start(after, result.stats, camera.fps)
        finally:
            engine.dispose()
        write_incidents_json(report, site, rules)
    return _published(report, options.out_dir)


def _annotated_names(videos: Sequence[Path]) -> list[str]:
    """Each video's annotated MP4 name: ``stem.annotated.mp4``, numbered where two videos share a
    stem (one NVR export per day folder, all named ``cam.mp4``), so none overwrites another."""
    stems = [video.stem for video in videos]
    return [
        f"{stem}.annotated.mp4" if stems.count(stem) == 1 else f"{n:02d}-{stem}.annotated.mp4"
        for n, stem in enumerate(stems, start=1)
    ]


def next_start(after: float | None, stats: PipelineStats, fps: float) -> float | None:
    """Where a following video without its own time starts: one analysed frame after the end
    of every video so far (``stats`` is the last one's run)."""
    if not stats.frames:
        return after
    end = stats.origin + stats.last_pts + 1.0 / fps
    return end if after is None else max(after, end)


def open_timed(
    camera_id: str, camera: CameraConfig, video: Path, start: float | None, after: float | None
) -> tuple[Source, str]:
    """Open ``video`` under ``camera``'s settings, with its clock (:attr:`VideoResult.clock`).

    ``start`` (``--start``) times the first video; a later one (``after`` is not ``None``: where
    the videos before it ended, :func:`next_start`) starts there when ``start`` was given or it
    has no ``creation_time`` of its own. Shared with ``safewatch backtest``.
    """
    settings = camera.model_copy(update={"source": str(video.resolve())})
    origin = start if after is None or start is None else after
    source = open_source(camera_id, settings, base_dir=Path("."), origin=origin)
    clock = source.origin_kind if isinstance(source, FileSource) else "argument"
    if after is not None and clock == "epoch":
        source.close()
        source = open_source(camera_id, settings, base_dir=Path("."), origin=after)
    return source, clock


def _published(report: AuditReport, out_dir: Path) -> AuditReport:
    """``report`` with its paths moved from the staging folder to ``out_dir``."""
    results = [
        replace(r, annotated=None if r.annotated is None else out_dir / r.annotated.name)
        for r in report.results
    ]
    return AuditReport(out_dir, results, out_dir / RESULT)


def audit_pipeline(
    site: LoadedSite,
    camera_id: str,
    camera: CameraConfig,
    source: FrameSource,
    detectors: Sequence[Detector],
    rules: RuleSet,
    manager: IncidentManager,
    *,
    batch_size: int = 4,
    observers: Sequence[FrameListener] = (),
) -> Pipeline:
    """The stages ``audit`` runs over one video: the camera's tracker and the site's rules.

    Public so a benchmark that must judge what ``audit`` raises (``bench/ppe_clips``) builds
    exactly these stages rather than a copy of them.
    """
    return Pipeline(
        camera_id,
        source,
        detectors,
        build_tracker(site, camera_id, camera),
        RuleEngine(rules, site.config.site.timezone, calibrations_from_site(site.config)),
        manager,
        batch_size=batch_size,
        observers=observers,
    )


def _audit_one(
    video: Path,
    camera_id: str,
    camera: CameraConfig,
    site: LoadedSite,
    rules: RuleSet,
    options: AuditOptions,
    detectors: Sequence[Detector],
    zones: Sequence[Zone],
    repository: IncidentRepository,
    evidence: EvidenceStore,
    console: Console | None,
    *,
    after: float | None,
    annotated_name: str,
) -> VideoResult:
    """Audit one video; ``after`` is where it starts if it has no time of its own (``None`` for
    the first video)."""
    source, clock = open_timed(camera_id, camera, video, options.start, after)
    evidence_config = site.config.evidence
    if not options.clips:
        evidence_config = evidence_config.model_copy(update={"clips": False})
    # A file run waits for the evidence thread rather than dropping frames: complete clips.
    recorder = EvidenceRecorder(
        evidence,
        repository,
        evidence_config,
        privacy_for=site.config.privacy_for,
        zones_for=lambda _camera: zones,
        on_full="wait",
    )
    manager = IncidentManager(
        repository,
        evidence,
        lambda _camera: zones,
        privacy_for=site.config.privacy_for,
        recorder=recorder,
    )
    observers: list[FrameListener] = []
    annotator: _Annotator | None = None
    if options.annotate:
        annotator = _Annotator(
            options.out_dir / annotated_name,
            camera.fps,
            zones,
            site.config.privacy_for(camera_id),
        )
        observers.append(annotator)
    progress: Progress | None = None
    if console is not None:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} frames"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        info = source.info
        native = info.fps or camera.fps
        total = int(info.duration * min(camera.fps, native)) + 1 if info.duration else None
        task = progress.add_task(video.name, total=total)

        def advance(*_: object) -> None:
            progress.advance(task)

        observers.append(advance)
    pipeline = audit_pipeline(
        site,
        camera_id,
        camera,
        source,
        detectors,
        rules,
        manager,
        batch_size=options.batch_size,
        observers=observers,
    )
    try:
        if progress is not None:
            with progress:
                stats = pipeline.run()
        else:
            stats = pipeline.run()
    finally:
        source.close()
        recorder.close()  # finish the clips before the incidents are read back
        annotated = annotator.close() if annotator is not None else None
    ids = {change.incident.id for change in stats.changes}
    incidents = tuple(sorted((repository.get(i) for i in ids), key=lambda i: i.started_at))
    read = source.stats
    coverage = video_coverage(source.info, read)
    return VideoResult(
        video,
        camera_id,
        stats,
        incidents,
        annotated,
        clock,
        coverage,
        read.bad_packets,
        read.untimed,
        read.decoded,
    )
