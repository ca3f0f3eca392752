"""Audit and backtest jobs of an API node under ``serve --cluster``: queued in PostgreSQL, run by
an analyzer with a free job slot.

:class:`ClusterJobs` takes the same submissions as :class:`~safewatch.api.jobs.AuditJobs` (same
checks, same routes) but does not run them: a job is a row of the cluster's job table
(:class:`~safewatch.cluster.jobs.JobQueue`) that an analyzer claims
(:mod:`safewatch.runtime.job_runner`). Whatever the claimer must read goes to the site's
evidence store first, which cluster mode already requires every node to reach (S3, or a shared
folder): an uploaded video as ``_jobs/<id>/input.<ext>``, a backtest's proposed rule files as
``_jobs/<id>/proposed.tar``; a video named by a server path is read at that path (the archive
folders must be mounted at the same place on the analyzers). The claimer writes the results as
``_jobs/<id>/a<attempt>/out.tar``; an API node unpacks them into its jobs folder on first read,
so the incidents, evidence and backtest documents are served by the code one host uses.

Every node reads the list, progress and state from the table, and any node cancels or deletes.
While a node stores a job's inputs it touches the row every half minute; every API node runs a
periodic pass (:meth:`ClusterJobs.sweep`, once a minute) that fails the rows nobody touched for
five minutes ("upload interrupted", blobs deleted: the node died or hung mid-upload) and removes
its own local copies of jobs whose row is gone or no longer needs one (a job deleted from
another node, an upload refused).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from safewatch.api.dashboard import Dashboard
from safewatch.api.jobs import _ID, AuditJob, AuditJobs, JobFinished
from safewatch.cluster.jobs import DONE, FAILED, RECEIVING, UPLOAD_TOUCH, JobQueue, to_job
from safewatch.errors import NotFound, StorageError
from safewatch.storage.blobs import BlobStore

__all__ = ["JOB_PREFIX", "ClusterJobs", "install_cluster_jobs", "pack", "unpack"]

log = logging.getLogger(__name__)

JOB_PREFIX = "_jobs"
"""Key prefix of the jobs' blobs in the evidence store (evidence keys start with a camera)."""

SWEEP_EVERY = 60.0
"""Seconds between two periodic passes of an API node (:meth:`ClusterJobs.sweep`)."""


def pack(blobs: BlobStore, folder: Path, key: str, check: Callable[[], None] | None = None) -> None:
    """Store ``folder``'s files as one tar blob under ``key`` (names inside a tar need not be
    valid blob keys, and the upload is one atomic object). ``check`` is called before each
    file is added (it raises to give up: a stopping analyzer)."""
    with tempfile.NamedTemporaryFile(suffix=".tar", delete=False) as handle:
        archive = Path(handle.name)
    try:
        with tarfile.open(archive, "w") as tar:
            tar.add(folder, arcname=".", recursive=False)
            for path in sorted(folder.rglob("*")):
                if check is not None:
                    check()
                tar.add(path, arcname=f"./{path.relative_to(folder)}", recursive=False)
        blobs.put_file(key, archive, move=True)
    finally:
        archive.unlink(missing_ok=True)


def unpack(blobs: BlobStore, key: str, folder: Path) -> None:
    """Extract the tar blob ``key`` into ``folder`` (made whole first in a sibling, then
    renamed, so a reader never sees half of it). Paths leaving the folder are refused."""
    staging = folder.with_name(f".{folder.name}.{time.monotonic_ns()}")
    staging.mkdir(parents=True)
    try:
        with blobs.open(key) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            tar.extractall(staging, filter="data")
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class ClusterJobs(AuditJobs):
    """The dashboard's jobs under ``serve --cluster`` (see the module docstring).

    Args:
        dashboard: The API node's dashboard (its evidence store is the cluster's).
        queue: The cluster's job table.
    """

    def __init__(self, dashboard: Dashboard, queue: JobQueue) -> None:
        self._table = queue
        self._blobs = dashboard.storage.evidence.backend
        self._fetching = threading.Lock()
        self._closed = threading.Event()
        self._sweeper: threading.Thread | None = None
        super().__init__(dashboard)

    def start(self, every: float = SWEEP_EVERY) -> ClusterJobs:
        """Run :meth:`sweep` every ``every`` seconds on a thread until :meth:`stop`."""
        self._sweeper = threading.Thread(
            target=self._sweep_loop, args=(every,), name="cluster-jobs-sweep", daemon=True
        )
        self._sweeper.start()
        return self

    def stop(self) -> None:
        """End the periodic pass."""
        self._closed.set()
        if self._sweeper is not None:
            self._sweeper.join(10.0)

    def _sweep_loop(self, every: float) -> None:
        while not self._closed.wait(every):
            try:
                self.sweep()
            except Exception as exc:  # the database or the store away: next pass
                log.warning("cluster jobs sweep: %s", exc)

    def sweep(self) -> None:
        """The periodic pass (any API node, any number at once): fail the uploads nobody
        touched for :data:`~safewatch.cluster.jobs.UPLOAD_LIMIT` and delete their blobs;
        remove this node's folders of jobs whose row is gone, or is neither done (a result
        copy) nor receiving (an upload being copied here)."""
        failed = self._table.fail_interrupted_uploads(self._delete_blobs)
        if failed:
            log.warning("job(s) %s failed: upload interrupted", failed)
        if not self._folder.is_dir():
            return
        folders = [p for p in self._folder.iterdir() if p.is_dir() and _ID.match(p.name)]
        states = self._table.states(p.name for p in folders)
        for folder in folders:
            if states.get(folder.name) not in (DONE, RECEIVING):
                shutil.rmtree(folder, ignore_errors=True)
                log.info(
                    "removed the local copy of job %s (%s)",
                    folder.name,
                    states.get(folder.name, "deleted"),
                )

    @contextlib.contextmanager
    def _receiving(self, job_id: str) -> Iterator[None]:
        """Touch the row every :data:`~safewatch.cluster.jobs.UPLOAD_TOUCH` seconds while the
        block stores its inputs, so the periodic pass leaves a slow upload alone."""
        done = threading.Event()

        def touch() -> None:
            while not done.wait(UPLOAD_TOUCH):
                try:
                    self._table.touch(job_id)
                except Exception as exc:  # a miss is fine: the limit is ten touches
                    log.warning("job %s: upload not touched (%s)", job_id, exc)

        thread = threading.Thread(target=touch, name=f"job-{job_id}-upload", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _delete_blobs(self, job_id: str) -> None:
        for info in list(self._blobs.list(f"{JOB_PREFIX}/{job_id}/")):
            self._blobs.delete(info.key)

    def _load(self) -> None:
        """Nothing to load: the list is the table's."""

    def _write(self, job: AuditJob) -> None:
        """Nothing to write here: the row is the job's state."""

    def all_jobs(self) -> list[AuditJob]:
        """Every job of the cluster, newest first."""
        return self._table.all_jobs()

    def get(self, job_id: str) -> AuditJob:
        """One job, as the table has it now.

        Raises:
            NotFound: No such job.
        """
        row = self._table.row(job_id)
        if row is None:
            raise NotFound("audit job", job_id)
        return to_job(row)

    def _add(self, job: AuditJob) -> None:
        """A new job is a row of the cluster's job table."""
        self._table.insert(job)

    def _update(self, job_id: str, *, persist: bool = True, **changes: object) -> AuditJob:
        self._table.change(job_id, **changes)
        return self.get(job_id)

    def _receive(self, job: AuditJob, stream: BinaryIO, filename: str) -> Path:
        """As one host does, with the row touched meanwhile."""
        with self._receiving(job.id):
            return super()._receive(job, stream, filename)

    def _enqueue(self, job_id: str, video: Path) -> None:
        """Store what the claimer needs in the evidence store, then let analyzers claim it
        (unless the row was cancelled or failed meanwhile: then its blobs are removed)."""
        folder = self._folder / job_id
        spec: dict[str, str] = {}
        try:
            self._store(job_id, video, folder, spec)
        except BaseException as exc:
            self._table.change(
                job_id, state=FAILED, finished_at=time.time(), message=f"cannot store: {exc}"
            )
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if not self._table.queue(job_id, spec):
            self._delete_blobs(job_id)

    def _store(self, job_id: str, video: Path, folder: Path, spec: dict[str, str]) -> None:
        with self._receiving(job_id):
            if video.is_relative_to(folder):  # an upload
                key = f"{JOB_PREFIX}/{job_id}/input{video.suffix}"
                self._blobs.put_file(key, video, move=True)
                spec["video_key"] = key
            else:
                spec["video_path"] = str(video)
            if (folder / "proposed").is_dir():
                spec["proposed_key"] = f"{JOB_PREFIX}/{job_id}/proposed.tar"
                pack(self._blobs, folder / "proposed", spec["proposed_key"])

    def cancel(self, job_id: str) -> AuditJob:
        """Cancel a queued job, or ask a running job's analyzer to stop it (from any node).

        Raises:
            NotFound: No such job.
            JobFinished: It has finished already.
        """
        row = self._table.cancel(job_id)
        if row is None:
            raise NotFound("audit job", job_id)
        if row.state in (DONE, FAILED):
            raise JobFinished(f"audit job {job_id} is {row.state}: it can no longer be cancelled")
        return to_job(row)

    def _discard(self, job_id: str) -> None:
        """Remove the row (whatever its state: a job refused while staging), its blobs and
        this node's copy of its results."""
        self._table.remove(job_id)
        self._delete_blobs(job_id)
        shutil.rmtree(self._folder / job_id, ignore_errors=True)

    def delete(self, job_id: str) -> None:
        """Remove a finished job, its blobs and local copies (any node).

        Raises:
            NotFound: No such job.
            StorageError: It is still queued or running.
        """
        job = self.get(job_id)
        if not self._table.delete(job_id):
            raise StorageError(f"audit job {job_id} is {job.state}; wait for it to finish")
        self._discard(job_id)

    def _out(self, job_id: str) -> Path:
        """This node's copy of a finished job's results, fetched from the evidence store once
        (a path that does not exist while there are none: the readers answer not found)."""
        row = self._table.row(job_id)
        local = self._folder / job_id / "out"
        if row is None or row.state != DONE or row.result_prefix is None:
            return local
        copy = self._folder / job_id / f"out-{row.attempt}"
        with self._fetching:
            if not copy.is_dir():
                unpack(self._blobs, row.result_prefix, copy)
        return copy


def install_cluster_jobs(dashboard: Dashboard, lease_seconds: float) -> ClusterJobs:
    """Give an API node of a cluster its jobs (before the app is created, which would otherwise
    make one-host :class:`~safewatch.api.jobs.AuditJobs`), their periodic pass started:
    :meth:`ClusterJobs.stop` it at shutdown."""
    jobs = ClusterJobs(dashboard, JobQueue(dashboard.storage.engine, expiry=lease_seconds))
    dashboard.jobs = jobs
    return jobs.start()
