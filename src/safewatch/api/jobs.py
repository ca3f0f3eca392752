"""Audit and backtest jobs: run archived footage from the dashboard, with progress.

A job is :func:`safewatch.footage.audit.run_audit` (the same code as ``safewatch audit``) on one
video, uploaded or read from a server folder the site allows, under one camera's settings and the
rule set in force. Its incidents go to the job's own database and evidence folder, never into the
site's live incidents. Jobs run one at a time on a background thread (an audit uses every core
the detector can get; two at once would only share them) and keep their state in ``job.json`` in
their folder, so the list survives a restart (a job cut off by a restart is marked failed).

A *backtest* job (the Rules page's "Test this change") is
:func:`safewatch.footage.backtest.run_backtest` (the same code as ``safewatch backtest``): the
footage judged by the rules in force and by the edited, unsaved rule files, which are validated as
a whole set before the job is queued and kept in the job's ``proposed/`` folder. Its detections go
to a cache shared by the jobs, so testing a second change on the same footage costs no inference.

Progress is counted per analysed frame; the expected total comes from the video's duration and the
camera's analysis rate. A queued or running job can be cancelled (a running one stops at its next
frame).

Under ``serve --cluster`` the API nodes use :class:`~safewatch.api.cluster_jobs.ClusterJobs`
instead: the same submissions and reads, but the job is a row that an analyzer with a free slot
claims and runs with the same :func:`run_job`.
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from safewatch.api.rulefiles import RuleFiles
from safewatch.detect.protocol import Detector
from safewatch.domain import Detections, Frame, Incident
from safewatch.errors import ConfigError, NotFound, SafewatchError, SourceError, StorageError
from safewatch.footage.start_time import parse_start
from safewatch.storage.atomic import atomic_write

if TYPE_CHECKING:
    from safewatch.api.dashboard import Dashboard
    from safewatch.config.loader import LoadedSite
    from safewatch.config.ruleset import RuleSet
    from safewatch.storage import IncidentRepository

__all__ = [
    "AuditJob",
    "AuditJobs",
    "JobCancelled",
    "JobEnvironment",
    "JobFinished",
    "JobOutcome",
    "run_job",
]

log = logging.getLogger(__name__)

_VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".ts", ".webm")
_ID = re.compile(r"^[a-z0-9]{12}$")


@dataclass(frozen=True, slots=True)
class AuditJob:
    """One audit job's state (also its ``job.json``)."""

    id: str
    video: str
    camera: str
    submitted_by: str
    submitted_at: float
    state: str = "queued"
    frames_done: int = 0
    frames_total: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    message: str = ""
    incidents: int = 0
    kind: str = "audit"
    start: float | None = None
    """Wall-clock time of the video's first frame the submitter gave; ``None``: the file's
    ``creation_time`` (else times count from 1970-01-01)."""

    @property
    def progress(self) -> float:
        """0 to 1."""
        if self.state == "done":
            return 1.0
        if not self.frames_total:
            return 0.0
        return min(0.99, self.frames_done / self.frames_total)


class _Counting:
    """A detector that counts the frames passing through it and reports the count."""

    def __init__(self, inner: Detector, progress: Callable[[int], None]) -> None:
        self._inner = inner
        self._progress = progress
        self.frames = 0

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        result = self._inner.detect(frames)
        self.frames += len(frames)
        self._progress(self.frames)
        return result


class JobFinished(SafewatchError):
    """A request for a job that only a queued or running one allows (HTTP 409 in the API)."""


class JobCancelled(SafewatchError):
    """Raised from a job's progress report when an operator cancelled it: the run stops there."""


@dataclass(frozen=True, slots=True)
class JobEnvironment:
    """What running a job needs of the node it runs on (an API node on one host, an analyzer of
    a cluster): the site, the rules in force and their folder, the site's incidents (a backtest
    lists the reviewed ones)."""

    site: Callable[[], LoadedSite]
    rules: Callable[[], RuleSet]
    rules_path: Path
    repository: IncidentRepository


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """A finished run: frames analysed, incidents found (or differing), the job's message."""

    frames: int
    incidents: int
    message: str


def run_job(
    env: JobEnvironment,
    job: AuditJob,
    video: Path,
    folder: Path,
    cache_dir: Path,
    *,
    started: Callable[[int | None], None],
    progress: Callable[[int], None],
) -> JobOutcome:
    """Run ``job`` on ``video``: its results go to ``folder/out`` (a backtest's proposed rules
    are in ``folder/proposed``). ``started`` gets the expected frame count, ``progress`` the
    frames done so far (it may raise :class:`JobCancelled` to stop the run).

    The one run of a job, whether the API node runs it (one host) or an analyzer that claimed
    it (``serve --cluster``, :mod:`safewatch.runtime.job_runner`).

    Raises:
        SafewatchError: The run failed; an uploaded video (its copy in ``folder``) is named by
            its file name, as the user uploaded it.
    """
    try:
        if job.kind == "backtest":
            return _backtest(env, job, video, folder, cache_dir, started, progress)
        return _audit(env, job, video, folder, started, progress)
    except SafewatchError as exc:
        # The job's message read "cannot open video file /srv/.../_jobs/<id>/input.mp4": the
        # server's own folders, told to a user who uploaded "clip.mp4".
        if isinstance(exc, JobCancelled) or not video.is_relative_to(folder):
            raise
        text = str(exc)
        shown = text.replace(str(video.resolve()), job.video).replace(str(video), job.video)
        if shown == text:
            raise
        raise SafewatchError(shown) from exc


def _audit(
    env: JobEnvironment,
    job: AuditJob,
    video: Path,
    folder: Path,
    started: Callable[[int | None], None],
    progress: Callable[[int], None],
) -> JobOutcome:
    from safewatch.footage.audit import AuditOptions, run_audit
    from safewatch.pipeline.stages import build_detector_for

    site = env.site()
    camera = site.config.cameras[job.camera]
    rules = env.rules()
    started(_expected_frames(video, camera.fps))
    # The builder ``audit``, ``backtest`` and ``serve`` use: a detector built from the models
    # alone dropped the camera's tiling, so a dashboard audit of a tiled camera missed the
    # small, distant people the CLI audit and the live camera find.
    counting = _Counting(build_detector_for(site, camera), progress)
    report = run_audit(
        site,
        rules,
        AuditOptions(videos=(video,), out_dir=folder / "out", camera=job.camera, start=job.start),
        detector=counting,
    )
    found = sum(len(r.incidents) for r in report.results)
    return JobOutcome(
        counting.frames, found, f"{counting.frames} frames analysed, {found} incident(s)"
    )


def _backtest(
    env: JobEnvironment,
    job: AuditJob,
    video: Path,
    folder: Path,
    cache_dir: Path,
    started: Callable[[int | None], None],
    progress: Callable[[int], None],
) -> JobOutcome:
    from safewatch.config.ruleset import load_rules
    from safewatch.footage.backtest import (
        BacktestOptions,
        NamedRules,
        published,
        reviewed_incidents,
        run_backtest,
    )
    from safewatch.footage.backtest_report import build_document, write_outputs

    site = env.site()
    camera = site.config.cameras[job.camera]
    proposed = folder / "proposed"
    rules_path = env.rules_path
    proposal = proposed if rules_path.is_dir() else proposed / rules_path.name
    sets = [
        NamedRules("baseline", env.rules(), rules_path),
        NamedRules("proposal", load_rules(proposal, site.config), proposal),
    ]
    started(_expected_frames(video, camera.fps))
    run = run_backtest(
        site,
        sets,
        BacktestOptions(
            (video,), folder / "out", camera=job.camera, cache_dir=cache_dir, start=job.start
        ),
        on_frame=lambda _video, done: progress(done),
    )
    with published(run, folder / "out") as staging:
        reviewed = reviewed_incidents(env.repository, run)
        document = build_document(run, {s.name: s.source for s in sets}, reviewed)
        write_outputs(document, staging)
    changed = sum(
        row["changed"] + row["only_baseline"] + row["only_proposal"]
        for row in document["summary"]["proposal"]
    )
    frames = sum(run.frames.values())
    return JobOutcome(frames, changed, f"{frames} frames analysed, {changed} incident(s) differ")


def _expected_frames(video: Path, fps: float) -> int | None:
    try:
        import av

        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            seconds = (
                float(stream.duration * stream.time_base)
                if stream.duration and stream.time_base
                else (container.duration or 0) / 1_000_000
            )
            native = float(stream.average_rate or fps)
    except Exception:  # unreadable: the audit itself will report it
        return None
    return int(seconds * min(fps, native)) + 1 if seconds > 0 else None


class AuditJobs:
    """The dashboard's audit jobs (see the module docstring)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard
        self._folder = dashboard.jobs_dir()
        self._lock = threading.Lock()
        self._jobs: dict[str, AuditJob] = {}
        self._queue: queue.Queue[tuple[str, Path]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._cancelled: set[str] = set()
        self._load()

    @property
    def folder(self) -> Path:
        """Where jobs live."""
        return self._folder

    def _load(self) -> None:
        if not self._folder.is_dir():
            return
        for path in self._folder.glob("*/job.json"):
            try:
                job = AuditJob(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                log.warning("ignoring unreadable audit job %s", path)
                continue
            if job.state in ("queued", "running"):
                job = replace(job, state="failed", message="interrupted by a server restart")
                self._write(job)
            self._jobs[job.id] = job

    def _write(self, job: AuditJob) -> None:
        folder = self._folder / job.id
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "job.json", json.dumps(asdict(job), sort_keys=True))

    def _update(self, job_id: str, *, persist: bool = True, **changes: object) -> AuditJob:
        with self._lock:
            job = replace(self._jobs[job_id], **changes)  # type: ignore[arg-type]
            self._jobs[job_id] = job
        if persist:
            self._write(job)
        return job

    def all_jobs(self) -> list[AuditJob]:
        """Every job, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: -j.submitted_at)

    def get(self, job_id: str) -> AuditJob:
        """One job.

        Raises:
            NotFound: No such job.
        """
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound("audit job", job_id)
        return job

    def _camera(self, camera: str | None) -> str:
        cameras = self._dashboard.site().config.cameras
        if camera is None:
            if len(cameras) != 1:
                raise ConfigError(
                    f"choose the camera whose settings apply ({', '.join(sorted(cameras))})",
                    field="camera",
                )
            return next(iter(cameras))
        if camera not in cameras:
            raise NotFound("camera", camera)
        return camera

    def _start(self, text: str | None) -> float | None:
        """A submitted ``start`` (ISO 8601; without a zone, the site's) as Unix seconds.

        Raises:
            ApiError: 422 ``invalid_request`` (a request parameter, as docs/api.md says, not
                the site's configuration: it was ``invalid_config``): not ISO 8601, or out of
                range (before anything is queued).
        """
        from safewatch.api.errors import ApiError, ErrorDetail  # it imports this module

        if not text:
            return None
        try:
            return parse_start(text, self._dashboard.site().config.site.timezone)
        except ConfigError as exc:
            raise ApiError(
                422,
                "invalid_request",
                f"invalid request: {exc.format()}",
                details=[ErrorDetail(message=exc.message, field=exc.field)],
            ) from None

    def _new(
        self,
        display: str,
        camera: str,
        actor: str,
        kind: str = "audit",
        start: float | None = None,
    ) -> AuditJob:
        job = AuditJob(
            secrets.token_hex(6), display, camera, actor, time.time(), kind=kind, start=start
        )
        self._add(job)
        return job

    def _add(self, job: AuditJob) -> None:
        """Keep a new job (its ``job.json`` on one host; the job table in a cluster)."""
        with self._lock:
            self._jobs[job.id] = job
        self._write(job)

    def submit_path(
        self, path: str, camera: str | None, actor: str, start: str | None = None
    ) -> AuditJob:
        """Audit a video already on the server (inside an allowed folder); ``start`` is its
        first frame's wall-clock time (ISO 8601), ``None`` for its ``creation_time``.

        Raises:
            ConfigError: No folder is allowed, or the path is outside the allowed folders.
            ApiError: ``start`` is no time.
            SourceError: Not a video file.
        """
        began = self._start(start)
        video = self._server_video(path)
        job = self._new(video.name, self._camera(camera), actor, start=began)
        self._enqueue(job.id, video)
        return job

    def _server_video(self, path: str) -> Path:
        site = self._dashboard.site()
        allowed = [p.resolve() for p in self._dashboard.settings.allow_server_paths] + [
            site.resolve(p).resolve() for p in site.config.storage.archive_folders
        ]
        if not allowed:
            raise ConfigError(
                "this server allows no server paths for audits; upload the video, or list the "
                "archive's folders under storage.archive_folders in the site file"
            )
        video = Path(path).expanduser().resolve()
        if not any(video.is_relative_to(folder) for folder in allowed):
            raise ConfigError(
                f"{path} is outside the folders audits may read "
                f"({', '.join(str(a) for a in allowed)})",
                field="path",
            )
        if not video.is_file() or video.suffix.lower() not in _VIDEO_SUFFIXES:
            raise SourceError(f"{path} is not a video file")
        return video

    def submit_backtest(
        self,
        path: str | None,
        camera: str | None,
        files: Mapping[str, str],
        actor: str,
        *,
        upload: tuple[BinaryIO, str] | None = None,
        start: str | None = None,
    ) -> AuditJob:
        """Backtest edited rule files (``files``: name -> text) on footage: a video on the
        server (``path``) or an uploaded one (``upload``: the stream and its file name);
        ``start`` as for :meth:`submit_path`.

        The proposed set is validated whole before anything is queued or uploaded.

        Raises:
            ConfigError: The proposed set does not validate (every ``file:line`` error), no
                file is given, or the path is not allowed.
            SourceError: Not a video file, or an upload over the size limit.
        """
        if not files:
            raise ConfigError("give at least one edited rule file to test", field="files")
        began = self._start(start)
        camera_id = self._camera(camera)
        if upload is None:
            if path is None:
                raise SourceError("name a video on the server or upload one")
            video: Path | None = self._server_video(path)
            display = Path(path).name
        else:
            video, display = None, self._upload_name(upload[1])
        job = self._new(display, camera_id, actor, kind="backtest", start=began)
        proposed = self._folder / job.id / "proposed"
        proposed.mkdir(parents=True)
        try:
            RuleFiles(self._dashboard.rules_path, lambda: self._dashboard.site().config).stage(
                files, proposed
            )
        except ConfigError:
            self._discard(job.id)
            raise
        if video is None:
            assert upload is not None
            video = self._receive(job, *upload)
        self._enqueue(job.id, video)
        return job

    def submit_upload(
        self,
        stream: BinaryIO,
        filename: str,
        camera: str | None,
        actor: str,
        start: str | None = None,
    ) -> AuditJob:
        """Audit an uploaded video (copied into the job's folder, size-limited); ``start`` as
        for :meth:`submit_path`.

        Raises:
            ApiError: ``start`` is no time.
            SourceError: Not a video file name, or larger than the limit.
        """
        began = self._start(start)
        display = self._upload_name(filename)
        camera_id = self._camera(camera)
        job = self._new(display, camera_id, actor, start=began)
        self._enqueue(job.id, self._receive(job, stream, filename))
        return job

    @staticmethod
    def _upload_name(filename: str) -> str:
        if Path(filename).suffix.lower() not in _VIDEO_SUFFIXES:
            raise SourceError(f"{filename!r} is not a video file ({', '.join(_VIDEO_SUFFIXES)})")
        return Path(filename).name[:128]

    def _receive(self, job: AuditJob, stream: BinaryIO, filename: str) -> Path:
        """Copy an upload into the job's folder, refusing it past the size limit.

        Raises:
            SourceError: The upload is larger than the limit.
            StorageError: It cannot be written (a full disk): the API answers 503 with why.
        """
        target = self._folder / job.id / f"input{Path(filename).suffix.lower()}"
        limit = self._dashboard.settings.max_upload_bytes
        size = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        out.close()
                        target.unlink(missing_ok=True)
                        self._update(job.id, state="failed", message="upload too large")
                        raise SourceError(f"the video is larger than {limit} bytes")
                    out.write(chunk)
        except OSError as exc:
            # The job (written "queued" before the copy) and the partial file were left behind:
            # a ghost job nobody would run, and the space the disk lacked taken for good.
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            why = "disk full" if full else f"cannot write it: {exc.strerror or exc}"
            self._refuse_upload(job.id, target, f"upload not stored: {why}")
            raise StorageError(f"the upload was not stored: {why} on the server") from exc
        return target

    def _refuse_upload(self, job_id: str, target: Path, message: str) -> None:
        """Remove an upload that could not be written and mark its job failed (or, when even
        that cannot be written, forget the job)."""
        target.unlink(missing_ok=True)
        try:
            self._update(job_id, state="failed", finished_at=time.time(), message=message)
        except (OSError, SafewatchError) as exc:
            log.warning("audit job %s: cannot mark it failed (%s); removed", job_id, exc)
            self._discard(job_id)

    def _enqueue(self, job_id: str, video: Path) -> None:
        self._queue.put((job_id, video))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-jobs", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                job_id, video = self._queue.get(timeout=5.0)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                self._run_one(job_id, video)
            except Exception as exc:  # a job's failure must not stop the queue
                if isinstance(exc, JobCancelled):
                    self._update(job_id, state="cancelled", finished_at=time.time())
                    continue
                message = str(exc) if isinstance(exc, SafewatchError) else f"internal error: {exc}"
                if not isinstance(exc, SafewatchError):
                    log.exception("audit job %s failed", job_id)
                self._update(job_id, state="failed", finished_at=time.time(), message=message)

    def environment(self) -> JobEnvironment:
        """What a job run needs, from the dashboard."""
        dashboard = self._dashboard
        return JobEnvironment(
            dashboard.site,
            lambda: dashboard.rules.rule_generation().rules,
            dashboard.rules_path,
            dashboard.storage.repository,
        )

    def _run_one(self, job_id: str, video: Path) -> None:
        job = self.get(job_id)
        if job_id in self._cancelled:
            raise JobCancelled(f"audit job {job_id} was cancelled")

        def started(total: int | None) -> None:
            self._update(job_id, state="running", started_at=time.time(), frames_total=total)

        def progress(done: int) -> None:
            if job_id in self._cancelled:
                raise JobCancelled(f"audit job {job_id} was cancelled")
            self._update(job_id, frames_done=done, persist=False)

        outcome = run_job(
            self.environment(),
            job,
            video,
            self._folder / job_id,
            self._folder / "cache",
            started=started,
            progress=progress,
        )
        self._update(
            job_id,
            state="done",
            frames_done=outcome.frames,
            finished_at=time.time(),
            incidents=outcome.incidents,
            message=outcome.message,
        )

    def cancel(self, job_id: str) -> AuditJob:
        """Cancel a queued or running job (a running one stops at its next frame); a cancelled
        one is left as it is.

        Raises:
            NotFound: No such job.
            JobFinished: It has finished already.
        """
        job = self.get(job_id)
        if job.state == "cancelled":  # again: nothing to do
            return job
        if job.state not in ("queued", "running"):
            raise JobFinished(f"audit job {job_id} is {job.state}: it can no longer be cancelled")
        self._cancelled.add(job_id)
        if job.state == "queued":
            return self._update(job_id, state="cancelled", finished_at=time.time())
        return job

    def _out(self, job_id: str) -> Path:
        """The folder of a job's results (on this node)."""
        return self._folder / job_id / "out"

    def backtest_result(self, job_id: str) -> dict[str, Any]:
        """A finished backtest job's document (``backtest.json``).

        Raises:
            NotFound: No such job, not a backtest, or not finished.
        """
        if not _ID.match(job_id) or self.get(job_id).kind != "backtest":
            raise NotFound("backtest job", job_id)
        path = self._out(job_id) / "backtest.json"
        if not path.is_file():
            raise NotFound("results of backtest job", job_id)
        result: dict[str, Any] = json.loads(path.read_text())
        return result

    def backtest_file(self, job_id: str, relative: str) -> Path:
        """A still of a finished backtest job (a path from its document), inside its folder.

        Raises:
            NotFound: No such job or file, or a path that leaves the job's output.
        """
        self.backtest_result(job_id)
        root = self._out(job_id).resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or path.suffix != ".jpg" or not path.is_file():
            raise NotFound("backtest file", relative)
        return path

    def _storage(self, job_id: str) -> tuple[object, Path]:
        if not _ID.match(job_id):
            raise NotFound("audit job", job_id)
        self.get(job_id)
        out = self._out(job_id)
        if not (out / "audit.db").is_file():
            raise NotFound("results of audit job", job_id)
        return None, out

    def incidents(self, job_id: str) -> list[Incident]:
        """The job's incidents, in video order (empty until it has some)."""
        from safewatch.storage import IncidentRepository, create_engine_for

        _, out = self._storage(job_id)
        engine = create_engine_for(f"sqlite:///{out / 'audit.db'}", out)
        try:
            repository = IncidentRepository(engine)
            return sorted(repository.list(limit=10_000), key=lambda i: i.started_at)
        finally:
            engine.dispose()

    def evidence(self, job_id: str, incident_id: str, which: str) -> Path:
        """The file of a job incident's still or clip.

        Raises:
            NotFound: No such job, incident or file.
        """
        _, out = self._storage(job_id)
        for incident in self.incidents(job_id):
            if incident.id == incident_id:
                key = incident.snapshot if which == "still" else incident.clip
                if key is None:
                    break
                root = (out / "evidence").resolve()
                path = (root / key).resolve()
                if not path.is_relative_to(root) or not path.is_file():
                    break
                return path
        raise NotFound(f"{which} of audit incident", incident_id)

    def delete(self, job_id: str) -> None:
        """Remove a finished job and its files.

        Raises:
            NotFound: No such job.
            StorageError: It is still queued or running.
        """
        job = self.get(job_id)
        if job.state in ("queued", "running"):
            raise StorageError(f"audit job {job_id} is {job.state}; wait for it to finish")
        self._discard(job_id)

    def _discard(self, job_id: str) -> None:
        """Forget a job and remove its files."""
        with self._lock:
            self._jobs.pop(job_id, None)
        shutil.rmtree(self._folder / job_id, ignore_errors=True)
