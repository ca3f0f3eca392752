"""``safewatch backtest``: judge footage with several rule sets, detecting and tracking once.

A safety officer who changes a zone or a threshold wants to know, before saving, which past
incidents disappear and which new ones appear. A backtest answers with the live code: the footage
goes through the audit's :class:`~safewatch.pipeline.run.Pipeline` (the same decode, detector
and per-camera :class:`~safewatch.pipeline.step.CameraStep` that ``serve`` runs), with the first
rule set in the pipeline's own step and every other rule set as a
:class:`~safewatch.pipeline.step.RuleStep` fed the very same tracked frames. So N rule sets cost one
detection pass, one tracking pass and N rule evaluations, and their differences come from the
rules alone, never from a tracker that happened to number people differently.

Detections are cached (:mod:`safewatch.detect.cache`), so the next backtest of the same footage
with another change loads no model at all. Each rule set's incidents go to a database and evidence
folder of its own inside the output folder (never the site's live store); incident ids derive from
(camera, rule, track, start), so an incident the change leaves alone has the same id in both sets.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from safewatch.config.loader import LoadedSite
from safewatch.config.site import CameraConfig
from safewatch.detect.cache import (
    CacheKey,
    DetectionCache,
    RecordingDetector,
    ReplayDetector,
    file_sha256,
)
from safewatch.domain import Frame, Incident, RuleEvent, TrackedFrame
from safewatch.domain.incidents import IncidentStatus
from safewatch.errors import ConfigError, StorageError
from safewatch.footage.audit import check_videos, next_start, open_timed
from safewatch.footage.audit_integrity import VideoReading
from safewatch.footage.audit_report import iso_time
from safewatch.footage.backtest_diff import SLACK
from safewatch.incidents import EvidenceStore, IncidentChange, IncidentManager
from safewatch.pipeline.run import Pipeline, PipelineStats
from safewatch.pipeline.stages import (
    build_detector_for,
    build_tracker,
    pick_camera,
    resolved_models,
)
from safewatch.pipeline.step import RuleStep
from safewatch.recording.export import GAP_SECONDS
from safewatch.rules import RuleEngine, RuleSet, calibrations_from_site
from safewatch.storage import IncidentRepository, create_engine_for, resolve_url
from safewatch.storage.engine import shown_url
from safewatch.storage.migrate import current_revision, head_revision

__all__ = [
    "BacktestOptions",
    "BacktestRun",
    "NamedRules",
    "SetResult",
    "cache_key_for",
    "covered_spans",
    "publish",
    "published",
    "reviewed_incidents",
    "run_backtest",
    "site_reviewed_incidents",
    "uncovered",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NamedRules:
    """A rule set under test and the name its results go by (``baseline``, ``proposal``...)."""

    name: str
    rules: RuleSet
    source: Path


@dataclass(frozen=True, slots=True)
class BacktestOptions:
    """What the user asked for.

    Attributes:
        videos: Footage files, in order.
        out_dir: Output folder; replaced whole at the end (a previous backtest's only).
        camera: Camera whose models, fps and zones apply; ``None`` means the only camera.
        cache_dir: Detection cache folder; ``None`` disables the cache.
        batch_size: Frames per detector call.
        start: Wall-clock time of the first video's first frame (Unix seconds); ``None`` reads
            each file's ``creation_time``. A later video follows the one before it when this is
            given or it has no time of its own, as in ``safewatch audit``.
    """

    videos: tuple[Path, ...]
    out_dir: Path
    camera: str | None = None
    cache_dir: Path | None = None
    batch_size: int = 4
    start: float | None = None


@dataclass(frozen=True, slots=True)
class SetResult:
    """One rule set's incidents on one video."""

    name: str
    incidents: tuple[Incident, ...]


@dataclass
class BacktestRun:
    """Everything one backtest produced, before it is compared and reported.

    Attributes:
        camera_id: The camera whose settings applied.
        sets: The rule sets' names, in order (the first is the reference for comparisons).
        results: Per video, each set's incidents.
        spans: Per video, the wall-clock span its analysed frames covered.
        covered: Per video, the stretches of that span its frames cover: split where no frame
            came for longer than a gap (:func:`covered_spans`: an export's outage, an
            undecodable stretch). A video not listed covers its whole span.
        frames: Frames analysed per video.
        cached: Per video, whether detections came from the cache.
        detect_seconds: Wall seconds spent detecting (or replaying) per video.
        elapsed: Wall seconds per video.
        readings: Per video, how much of it was decoded and where its times came from (a
            partly read video, or one dated 1970 that no reviewed incident can match, is said
            in the report rather than scored as if whole and real).
        staging: The folder results were written to (renamed to the output folder at the end).
        uncached: Videos whose detections could not be stored in the cache (a warning says why).
    """

    camera_id: str
    sets: list[str]
    results: dict[Path, list[SetResult]] = field(default_factory=dict)
    spans: dict[Path, tuple[float, float]] = field(default_factory=dict)
    covered: dict[Path, list[tuple[float, float]]] = field(default_factory=dict)
    frames: dict[Path, int] = field(default_factory=dict)
    cached: dict[Path, bool] = field(default_factory=dict)
    detect_seconds: dict[Path, float] = field(default_factory=dict)
    elapsed: dict[Path, float] = field(default_factory=dict)
    readings: dict[Path, VideoReading] = field(default_factory=dict)
    staging: Path = Path()
    uncached: set[Path] = field(default_factory=set)


def cache_key_for(site: LoadedSite, camera: CameraConfig, video: Path) -> CacheKey:
    """Everything that decides this footage's detections under this camera's settings."""
    models = {
        key: {"sha256": file_sha256(path), **config.model_dump(mode="json", exclude={"path"})}
        for key, (config, path) in resolved_models(site, camera.models).items()
    }
    tiling = None if camera.tiling is None else camera.tiling.model_dump(mode="json")
    return CacheKey(file_sha256(video), models, camera.fps, tiling)


def run_backtest(
    site: LoadedSite,
    sets: Sequence[NamedRules],
    options: BacktestOptions,
    *,
    on_frame: Callable[[Path, int], None] | None = None,
) -> BacktestRun:
    """Run every video once through detection and tracking, judging it with every rule set.

    Results are written into a staging folder beside ``options.out_dir``; the caller writes the
    report inside :func:`published`, so a failed run leaves nothing half-written.

    Args:
        site: The loaded site file.
        sets: Rule sets, the reference (baseline) first.
        options: Footage, output, camera, cache.
        on_frame: Called after each analysed frame with the video and frames done (progress).

    Raises:
        SourceError: A video is missing or unreadable.
        ModelError: A model cannot be loaded, or a cache file belongs to another run.
        ConfigError: The output folder may not be replaced (:func:`_check_output`).
    """
    if not sets:
        raise ConfigError("no rule set to test")
    camera_id, camera = pick_camera(site, options.camera)
    check_videos(camera_id, camera, options.videos)
    staging = _make_staging(options.out_dir)
    run = BacktestRun(camera_id, [s.name for s in sets], staging=staging)
    cache = None if options.cache_dir is None else DetectionCache(options.cache_dir)
    try:
        after: float | None = None
        for index, video in enumerate(options.videos):
            stats = _backtest_one(
                site, sets, options, (camera_id, camera), video, index, cache, run, on_frame, after
            )
            after = next_start(after, stats, camera.fps)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run


def _check_output(out_dir: Path) -> None:
    """Refuse an output folder a backtest may not replace, before anything is run or written.

    A symbolic link (``-o latest`` pointing at an earlier backtest) is refused rather than
    followed: replacing the folder it points to, or the link itself, are both surprises, and
    removing it used to end in a traceback and a staging folder left beside its target.

    Raises:
        ConfigError: ``out_dir`` is a symbolic link, or exists and is not a backtest's output.
    """
    if out_dir.is_symlink():
        raise ConfigError(
            f"output folder {out_dir} is a symbolic link (to {out_dir.readlink()}); give the "
            "folder itself or a new name as -o"
        )
    if out_dir.exists() and not (out_dir / "backtest.json").is_file():
        raise ConfigError(
            f"output folder {out_dir} exists and holds no backtest.json; choose another -o"
        )


def _make_staging(out_dir: Path) -> Path:
    """A new hidden folder beside ``out_dir`` (same file system, so publishing is a rename).

    Made with ``mkdir``, not ``tempfile.mkdtemp``: the staging folder becomes the output
    folder, and mkdtemp's 0700 kept colleagues and web servers out of it; ``mkdir`` gives the
    mode the user's umask gives any folder.

    Raises:
        ConfigError: See :func:`_check_output`.
        StorageError: The folder cannot be created.
    """
    _check_output(out_dir)
    parent = Path(os.path.abspath(out_dir)).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        while True:
            staging = parent / f".{out_dir.name}.partial-{secrets.token_hex(4)}"
            try:
                staging.mkdir()
                return staging
            except FileExistsError:
                continue
    except OSError as exc:
        raise StorageError(f"cannot create the output folder {out_dir}: {exc}") from exc


@contextmanager
def published(run: BacktestRun, out_dir: Path) -> Iterator[Path]:
    """Yield the staging folder to write the report into, then :func:`publish` it.

    Whatever fails inside the block (reading the reviewed incidents, writing the report,
    Ctrl-C) removes the staging folder, so no hidden ``.NAME.partial-*`` folder is left behind;
    a publish that fails keeps it and names it (:func:`publish`).
    """
    try:
        yield run.staging
    except BaseException:
        shutil.rmtree(run.staging, ignore_errors=True)
        raise
    publish(run, out_dir)


def publish(run: BacktestRun, out_dir: Path) -> None:
    """Move the staged results to ``out_dir``, replacing a previous backtest's output there.

    The previous output is renamed aside first and deleted only once the new one is in place:
    deleting it first lost both when the rename then failed (a file another user owns, a full
    disk). If the move fails, the previous output is put back and the new results stay in the
    staging folder, which the error names.

    Raises:
        ConfigError: ``out_dir`` is a symbolic link, or exists and is not a backtest's output
            (neither is ever deleted); the staging folder is removed.
        StorageError: The results cannot be moved into place.
    """
    try:
        _check_output(out_dir)
    except BaseException:
        shutil.rmtree(run.staging, ignore_errors=True)
        raise
    earlier: Path | None = None
    try:
        if out_dir.exists():
            earlier = out_dir.with_name(f".{out_dir.name}.earlier-{secrets.token_hex(4)}")
            out_dir.rename(earlier)
        run.staging.rename(out_dir)
    except OSError as exc:
        if earlier is not None and not out_dir.exists():
            with contextlib.suppress(OSError):
                earlier.rename(out_dir)
        raise StorageError(
            f"cannot move the backtest into {out_dir}: {exc}; its results are in {run.staging}"
        ) from exc
    if earlier is not None:
        shutil.rmtree(earlier, ignore_errors=True)
    run.staging = out_dir


def _backtest_one(
    site: LoadedSite,
    sets: Sequence[NamedRules],
    options: BacktestOptions,
    picked: tuple[str, CameraConfig],
    video: Path,
    index: int,
    cache: DetectionCache | None,
    run: BacktestRun,
    on_frame: Callable[[Path, int], None] | None,
    after: float | None,
) -> PipelineStats:
    """Backtest one video; ``after`` is where it starts without a time of its own (``None``
    for the first video: :func:`~safewatch.footage.audit.open_timed`)."""
    camera_id, camera = picked
    started = time.perf_counter()
    source, clock = open_timed(camera_id, camera, video, options.start, after)
    key = cache_key_for(site, camera, video) if cache is not None else None
    cached = cache.load(key) if cache is not None and key is not None else None
    recording: RecordingDetector | None = None
    if cached is not None:
        detector: RecordingDetector | ReplayDetector = ReplayDetector(
            cached, str(cache.path_for(key)) if cache is not None and key is not None else "?"
        )
    else:
        recording = detector = RecordingDetector(build_detector_for(site, camera))
    steps: list[RuleStep] = []
    engines = []
    for named in sets:
        folder = run.staging / named.name / f"{index:02d}-{video.stem}"
        folder.mkdir(parents=True)
        engine = create_engine_for(f"sqlite:///{(folder / 'incidents.db').resolve()}", Path("."))
        engines.append(engine)
        repository = IncidentRepository(engine)
        manager = IncidentManager(
            repository,
            EvidenceStore(folder / "evidence", log=repository),
            named.rules.zones_for,
            privacy_for=site.config.privacy_for,
        )
        rule_engine = RuleEngine(
            named.rules, site.config.site.timezone, calibrations_from_site(site.config)
        )
        steps.append(RuleStep(camera_id, rule_engine, manager))
    others = steps[1:]
    frames_done = 0
    times: list[float] = []

    def follow(
        frame: Frame,
        tracked: TrackedFrame,
        _events: Sequence[RuleEvent],
        _changes: Sequence[IncidentChange],
    ) -> None:
        nonlocal frames_done
        times.append(tracked.timestamp)
        for step in others:
            step.apply(frame, tracked)
        frames_done += 1
        if on_frame is not None:
            on_frame(video, frames_done)

    first = steps[0]
    pipeline = Pipeline(
        camera_id,
        source,
        detector,
        build_tracker(site, camera_id, camera),
        first.engine,
        first.incidents,
        batch_size=options.batch_size,
        observers=[follow],
    )
    try:
        stats = pipeline.run()
        for step in others:
            step.finish()
            if step.last is not None:
                step.incidents.close_all(step.last[1].timestamp)
        results = []
        for named, engine in zip(sets, engines, strict=True):
            repository = IncidentRepository(engine)
            incidents = repository.list(camera=camera_id, limit=10_000)
            results.append(SetResult(named.name, tuple(sorted(incidents, key=_order))))
    finally:
        source.close()
        for engine in engines:
            engine.dispose()
    if recording is not None and cache is not None and key is not None:
        try:
            cache.save(key, recording.recorded())
        except OSError as exc:
            # The cache only spares the next run its detection pass: a folder that cannot be
            # written (not a folder, read-only, a full disk) used to end the backtest in a
            # traceback after detection, with every result discarded.
            log.warning(
                "detection cache %s cannot be written (%s); the results are kept, the next "
                "backtest of %s detects again",
                cache.root,
                exc,
                video.name,
            )
            run.uncached.add(video)
    run.results[video] = results
    run.spans[video] = (stats.origin + stats.first_pts, stats.origin + stats.last_pts)
    run.covered[video] = covered_spans(times)
    run.frames[video] = stats.frames
    run.cached[video] = cached is not None
    run.detect_seconds[video] = stats.detect_seconds
    run.elapsed[video] = time.perf_counter() - started
    run.readings[video] = VideoReading.of(video, source, clock)
    return stats


def covered_spans(times: Sequence[float]) -> list[tuple[float, float]]:
    """The stretches analysed frames at ``times`` (ascending) cover, oldest first.

    A new stretch starts where no frame came for longer than an export's gap
    (:data:`~safewatch.recording.export.GAP_SECONDS`) or five of the usual (median) frame
    intervals, for time-lapse footage. A video's span runs from its first frame to its last, so
    an export with an outage (its ``gaps=`` tag) or a stretch that could not be decoded is a
    hole inside it: a reviewed incident there was scored as missed by every rule set.
    """
    if not times:
        return []
    steps = sorted(b - a for a, b in itertools.pairwise(times))
    limit = max(GAP_SECONDS, 5 * steps[len(steps) // 2]) if steps else GAP_SECONDS
    spans = [(times[0], times[0])]
    for at in times[1:]:
        first, last = spans[-1]
        spans[-1:] = [(first, at)] if at - last <= limit else [(first, last), (at, at)]
    return spans


def uncovered(run: BacktestRun, incidents: Sequence[Incident]) -> list[tuple[Incident, str]]:
    """The ``incidents`` no analysed frame of the run covers (give or take the scoring's
    :data:`~safewatch.footage.backtest_diff.SLACK`), each with the hole it falls in: the footage
    has no frames there, so no rule set could raise it, and scoring it counted it as missed."""
    holes: list[tuple[Path, float, float]] = []
    for video, (start, end) in run.spans.items():
        stretches = run.covered.get(video, [(start, end)])
        holes.extend(
            (video, before[1], after[0]) for before, after in itertools.pairwise(stretches)
        )
    out = []
    for incident in incidents:
        ended = math.inf if incident.ended_at is None else incident.ended_at
        if any(
            incident.started_at <= last + SLACK and ended >= first - SLACK
            for video, (start, end) in run.spans.items()
            for first, last in run.covered.get(video, [(start, end)])
        ):
            continue
        hole = next((h for h in holes if incident.started_at < h[2] and ended > h[1]), None)
        where = "outside the footage"
        if hole is not None:
            video, first, last = hole
            where = f"in a gap of {video.name}: no frame from {iso_time(first)} to {iso_time(last)}"
        out.append((incident, where))
    return out


def reviewed_incidents(repository: IncidentRepository, run: BacktestRun) -> list[Incident]:
    """Incidents operators reviewed (resolved or false positive) on the run's camera that some
    video of the run covers, newest first.

    Per video, not one window from the first video's start to the last one's end: clips of
    01:00 and 03:00 say nothing about an incident at 02:00, which every rule set then "missed".
    An incident is covered when its episode overlaps a video's span give or take the scoring's
    :data:`~safewatch.footage.backtest_diff.SLACK`, however long before the video it started
    (selecting by start from a minute before the video left out an episode already running for
    longer when the footage began, which then counted for no rule set).
    """
    found: dict[str, Incident] = {}
    for start, end in run.spans.values():
        for incident in repository.list(
            camera=run.camera_id,
            status=[IncidentStatus.RESOLVED, IncidentStatus.FALSE_POSITIVE],
            ended_since=start - SLACK,
            until=end + SLACK,
            limit=10_000,
        ):
            found[incident.id] = incident
    return sorted(found.values(), key=lambda i: (-i.started_at, i.id))


def _order(incident: Incident) -> tuple[float, str, str]:
    return (incident.started_at, incident.rule_id, incident.id)


def site_reviewed_incidents(site: LoadedSite, run: BacktestRun) -> list[Incident]:
    """:func:`reviewed_incidents` from the site's own database, which is left exactly as it is.

    That database belongs to the site's server, which may run another safewatch version: a
    backtest that migrated it (as opening a repository on SQLite does) made an older server
    refuse it, and one that found no database created an empty one with a whole schema. So an
    SQLite file is opened read-only, nothing is upgraded, and a database that is not at this
    safewatch's schema is not read at all.

    Raises:
        StorageError: No database, an empty one, or one at another schema revision (the message
            says which); or it cannot be read.
    """
    url = site.config.storage.database
    shown = shown_url(resolve_url(url, site.base_dir))
    engine = create_engine_for(url, site.base_dir, read_only=True)
    try:
        current, head = current_revision(engine), head_revision()
        if current is None:
            raise StorageError(f"the site database {shown} is empty (no schema revision)")
        if current != head:
            raise StorageError(
                f"the site database {shown} is at schema revision {current}, this safewatch "
                f"reads {head} (a backtest never migrates it)"
            )
        return reviewed_incidents(IncidentRepository(engine, auto_upgrade=False), run)
    finally:
        engine.dispose()
