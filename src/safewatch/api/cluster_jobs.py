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
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from safewatch.api.dashboard import Dashboard
from safewatch.api.jobs import AuditJob, AuditJobs, JobFinished
from safewatch.cluster.jobs import DONE, FAILED, JobQueue, to_job
from safewatch.errors import NotFound, StorageError
from safewatch.storage.blobs import BlobStore

__all__ = ["JOB_PREFIX", "ClusterJobs", "install_cluster_jobs", "pack", "unpack"]

log = logging.getLogger(__name__)

JOB_PREFIX = "_jobs"
"""Key prefix of the jobs' blobs in the evidence store (evidence keys start with a camera)."""


def pack(blobs: BlobStore, folder: Path, key: str) -> None:
    """Store ``folder``'s files as one tar blob under ``key`` (names inside a tar need not be
    valid blob keys, and the upload is one atomic object)."""
    with tempfile.NamedTemporaryFile(suffix=".tar", delete=False) as handle:
        archive = Path(handle.name)
    try:
        with tarfile.open(archive, "w") as tar:
            tar.add(folder, arcname=".")
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
        super().__init__(dashboard)

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

    def _new(self, display: str, camera: str, actor: str, kind: str = "audit") -> AuditJob:
        job = AuditJob(secrets.token_hex(6), display, camera, actor, time.time(), kind=kind)
        self._table.insert(job)
        return job

    def _update(self, job_id: str, *, persist: bool = True, **changes: object) -> AuditJob:
        self._table.change(job_id, **changes)
        return self.get(job_id)

    def _enqueue(self, job_id: str, video: Path) -> None:
        """Store what the claimer needs in the evidence store, then let analyzers claim it."""
        folder = self._folder / job_id
        spec: dict[str, str] = {}
        try:
            if video.is_relative_to(folder):  # an upload
                key = f"{JOB_PREFIX}/{job_id}/input{video.suffix}"
                self._blobs.put_file(key, video, move=True)
                spec["video_key"] = key
            else:
                spec["video_path"] = str(video)
            if (folder / "proposed").is_dir():
                spec["proposed_key"] = f"{JOB_PREFIX}/{job_id}/proposed.tar"
                pack(self._blobs, folder / "proposed", spec["proposed_key"])
        except BaseException as exc:
            self._table.change(
                job_id, state=FAILED, finished_at=time.time(), message=f"cannot store: {exc}"
            )
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self._table.queue(job_id, spec)

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
        for info in list(self._blobs.list(f"{JOB_PREFIX}/{job_id}/")):
            self._blobs.delete(info.key)
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
    make one-host :class:`~safewatch.api.jobs.AuditJobs`)."""
    jobs = ClusterJobs(dashboard, JobQueue(dashboard.storage.engine, expiry=lease_seconds))
    dashboard.jobs = jobs
    return jobs
