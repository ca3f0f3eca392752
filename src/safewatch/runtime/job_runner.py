"""An analyzer's share of the cluster's audit and backtest jobs (``serve --cluster``).

:class:`JobRunner` claims a job from the cluster's table (:class:`~safewatch.cluster.jobs.
JobQueue`) whenever fewer than ``cluster.job_slots`` of its own are running, and runs each on a
thread of its own with the code a single host runs (:func:`~safewatch.api.jobs.run_job`),
against the analyzer's site and rules in force. Its loop heartbeats the running claims every
third of the expiry (``cluster.lease_seconds``), independent of how slowly a job goes, and on
the connection pool of the analyzer's cluster membership (as its lease renewals), never waiting
for one of the process's shared pool that incident writes or a slow query may hold; the
progress goes to the row at most twice a second (a write that fails is skipped: the heartbeat,
not the progress, keeps the claim), and that write is where the job learns that an operator
cancelled it or that its claim was lost (it stops there, writing nothing more). The
inputs come from the evidence store (:mod:`safewatch.api.cluster_jobs`), the results go back to
it as one tar, and the local work folder is removed. Stopping the analyzer gives its running
jobs back to the queue, so another analyzer restarts them at once rather than after the expiry:
:meth:`JobRunner.request_stop` asks them to stop (seen at the next frame, and between two MiB of
the input's download and two files of the result's packing) while the analyzer drains its
cameras, and :meth:`JobRunner.join` then waits for them; the claims stay heartbeated until their
job let go, so a slow stop never counts as a lost analyzer.
A job whose analyzer died is restarted from its first frame by the next claimer (an audit's
output is only complete once its video was read to the end).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from safewatch.api.cluster_jobs import JOB_PREFIX, pack, unpack
from safewatch.api.jobs import JobCancelled, JobEnvironment, run_job
from safewatch.cluster.jobs import CANCELLED, DONE, FAILED, Claim, JobLost, JobQueue
from safewatch.errors import SafewatchError, SourceError
from safewatch.storage.blobs import BlobStore

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from safewatch.runtime.service import RuntimeService

__all__ = ["JobRunner", "start_job_runner"]

log = logging.getLogger(__name__)

_PROGRESS_EVERY = 0.5
"""Seconds between two progress writes of one job."""


class _Stopping(SafewatchError):
    """The analyzer is stopping: the job goes back to the queue."""


class JobRunner:
    """Claims and runs jobs while it has a free slot (see the module docstring).

    Args:
        queue: The cluster's job table.
        analyzer_id: This analyzer's name (``claimed_by``).
        slots: Jobs run at once (``cluster.job_slots``).
        environment: The site, rules and incidents a job runs against.
        blobs: The cluster's evidence store (inputs, results).
        work_dir: Local folder for the jobs' files while they run.
        poll: Seconds between two looks for a job when none was found.
        paused: Whether to claim no new job now (the membership's hold-off: an analyzer whose
            database link keeps dropping would lose what it claims; its running jobs go on).
    """

    def __init__(
        self,
        queue: JobQueue,
        analyzer_id: str,
        slots: int,
        environment: JobEnvironment,
        blobs: BlobStore,
        work_dir: Path,
        *,
        poll: float = 1.0,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        self._queue = queue
        self._analyzer = analyzer_id
        self._slots = slots
        self._env = environment
        self._blobs = blobs
        self._work = work_dir
        self._poll = poll
        self._paused = paused
        self._lock = threading.Lock()
        self._running: dict[str, Claim] = {}
        self._threads: list[threading.Thread] = []
        self._lost: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = 0

    def start(self) -> JobRunner:
        """Start claiming; returns ``self``."""
        self._thread = threading.Thread(target=self._loop, name="cluster-jobs", daemon=True)
        self._thread.start()
        return self

    def running(self) -> list[str]:
        """Ids of the jobs running here."""
        with self._lock:
            return sorted(self._running)

    def request_stop(self) -> None:
        """Claim nothing more and ask the running jobs to stop (without waiting): each goes
        back to the queue at its next check. The claims stay heartbeated until :meth:`join`."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float = 10.0) -> None:
        """Wait (``timeout`` in all) for the running jobs to stop after :meth:`request_stop`.
        A job still running then is given back from here: its thread, should it get further,
        finds its claim gone and writes nothing (its result blob deleted)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            stuck = list(self._running.values())
            self._lost |= {claim.job.id for claim in stuck}
        for claim in stuck:
            try:
                self._queue.release(claim)
                log.warning("job %s did not stop in %g s; given back anyway", claim.job.id, timeout)
            except Exception as exc:  # it expires instead
                log.warning("job %s not given back: %s", claim.job.id, exc)
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))

    def stop(self, timeout: float = 10.0) -> None:
        """:meth:`request_stop`, then :meth:`join`: running jobs go back to the queue."""
        self.request_stop()
        self.join(timeout)

    def _loop(self) -> None:
        beat_every = self._queue.expiry / 3
        next_beat = 0.0
        # A heartbeat that failed (the database away) is retried before any claim: after an
        # outage longer than the expiry this analyzer's own running jobs look expired, and a
        # claim made first would take one of them back from itself (counted as a lost
        # analyzer, the job restarted) while its first run goes on.
        beat_owed = False
        while True:
            stopping = self._stop.is_set()
            with self._lock:
                claims = [c for c in self._running.values() if c.job.id not in self._lost]
            if stopping and not claims:
                return
            try:
                if beat_owed or time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + beat_every
                    beat_owed = True
                    lost = self._queue.heartbeat(claims)
                    beat_owed = False
                    if lost:
                        log.warning("job(s) %s claimed by another analyzer", sorted(lost))
                        with self._lock:
                            self._lost |= lost
                claimed = not stopping and not self._paused() and self._claim_one()
            except Exception as exc:  # the database away: retry, the jobs go on meanwhile
                log.warning("cluster jobs: %s", exc, exc_info=not isinstance(exc, SafewatchError))
                claimed = False
            if not claimed:
                self._wake.wait(min(self._poll, max(0.05, next_beat - time.monotonic())))
                self._wake.clear()

    def _claim_one(self) -> bool:
        with self._lock:
            if len(self._running) >= self._slots:
                return False
        claim = self._queue.claim(self._analyzer)
        if claim is None:
            return False
        log.info(
            "job %s (%s of %s) claimed, attempt %d",
            claim.job.id,
            claim.job.kind,
            claim.job.video,
            claim.attempt,
        )
        thread = threading.Thread(
            target=self._run, args=(claim,), name=f"job-{claim.job.id}", daemon=True
        )
        with self._lock:
            self._running[claim.job.id] = claim
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return True

    def _run(self, claim: Claim) -> None:
        job_id = claim.job.id
        folder = self._work / f"{job_id}-{claim.attempt}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._finish(claim, folder)
        except _Stopping:
            with contextlib.suppress(Exception):
                self._queue.release(claim)
            log.info("job %s given back to the queue (stopping)", job_id)
        except JobLost as exc:
            log.warning("job %s: %s; stopped without writing", job_id, exc)
        except JobCancelled:
            self._queue.finish(claim, CANCELLED, message="cancelled")
        except Exception as exc:
            message = str(exc) if isinstance(exc, SafewatchError) else f"internal error: {exc}"
            if not isinstance(exc, SafewatchError):
                log.exception("job %s failed", job_id)
            with contextlib.suppress(Exception):
                self._queue.finish(claim, FAILED, message=message[:2000])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with self._lock:
                # Only this claim's own entry: a later claim of the same job (this analyzer
                # took it again) keeps its entry, so it stays heartbeated.
                if self._running.get(job_id) is claim:
                    del self._running[job_id]
                    self._lost.discard(job_id)
            self.finished += 1
            self._wake.set()

    def _finish(self, claim: Claim, folder: Path) -> None:
        job_id = claim.job.id
        last = 0.0

        def check() -> None:
            if self._stop.is_set():
                raise _Stopping("the analyzer is stopping")
            with self._lock:
                if job_id in self._lost:
                    raise JobLost(f"job {job_id} was claimed by another analyzer")

        def write(**values: int | None) -> None:
            """A progress write; one that fails (the database away for a moment) is skipped:
            the heartbeat, not the progress, keeps the claim."""
            try:
                cancelled = self._queue.progress(claim, **values)
            except JobLost:
                raise
            except Exception as exc:
                log.warning("job %s: progress not written (%s)", job_id, exc)
                return
            if cancelled:
                raise JobCancelled(f"job {job_id} was cancelled")

        def started(total: int | None) -> None:
            check()
            write(frames_total=total)

        def progress(done: int) -> None:
            nonlocal last
            check()
            if time.monotonic() - last < _PROGRESS_EVERY:
                return
            last = time.monotonic()
            write(frames_done=done)

        video = self._inputs(claim, folder, check)
        outcome = run_job(
            self._env,
            claim.job,
            video,
            folder,
            self._work / "cache",
            started=started,
            progress=progress,
        )
        check()
        key = f"{JOB_PREFIX}/{job_id}/a{claim.attempt}/out.tar"
        # Checked between files while packing; once stored, the result is worth a finish.
        pack(self._blobs, folder / "out", key, check)
        written = self._queue.finish(
            claim,
            DONE,
            frames_done=outcome.frames,
            incidents=outcome.incidents,
            message=outcome.message,
            result_prefix=key,
        )
        if not written:
            log.warning("job %s finished here but was claimed by another analyzer", job_id)
            self._blobs.delete(key)
        else:
            log.info("job %s done: %s", job_id, outcome.message)

    def _inputs(self, claim: Claim, folder: Path, check: Callable[[], None]) -> Path:
        """The video (fetched from the store, ``check`` called between two MiB, or the server
        path checked) and the proposed rules of a backtest, into ``folder``.

        Raises:
            SourceError: A server path this analyzer cannot read.
        """
        spec = claim.spec
        if "proposed_key" in spec:
            unpack(self._blobs, str(spec["proposed_key"]), folder / "proposed")
        if "video_key" in spec:
            key = str(spec["video_key"])
            video = folder / f"input{Path(key).suffix}"
            with self._blobs.open(key) as source, video.open("wb") as target:
                while chunk := source.read(1 << 20):
                    check()
                    target.write(chunk)
            return video
        video = Path(str(spec.get("video_path", "")))
        if not video.is_file():
            raise SourceError(
                f"{video} is not readable on analyzer {self._analyzer}: mount the archive "
                "folders at the same path on every analyzer, or upload the video"
            )
        return video


def start_job_runner(
    service: RuntimeService,
    rules_path: Path,
    analyzer_id: str,
    claimer_engine: Engine,
    paused: Callable[[], bool] = lambda: False,
) -> JobRunner | None:
    """The job runner of an analyzer (``None`` with ``cluster.job_slots: 0``), started; its
    heartbeats and claims use ``claimer_engine``, the membership's own pool (see
    :class:`~safewatch.cluster.jobs.JobQueue`); it claims nothing while ``paused()``."""
    site = service.site
    slots = site.config.cluster.job_slots
    if slots <= 0:
        return None
    storage = service.storage
    environment = JobEnvironment(
        lambda: service.site,
        lambda: service.rule_generation().rules,
        rules_path,
        storage.repository,
    )
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", analyzer_id)
    work = Path(tempfile.gettempdir()) / f"safewatch-jobs-{name}"
    queue = JobQueue(
        storage.engine, expiry=site.config.cluster.lease_seconds, claimer_engine=claimer_engine
    )
    return JobRunner(
        queue, analyzer_id, slots, environment, storage.evidence.backend, work, paused=paused
    ).start()
