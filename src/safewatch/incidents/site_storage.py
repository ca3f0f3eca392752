"""Open a site's storage from its site file: database, repository and evidence store, wired.

One place builds them so every command (``serve``, ``verify``, ``retention``, ``db``) gets the same
wiring: the evidence store records each file it writes in the repository's tamper-evidence chain,
relative paths resolve against the site file's folder, and an S3 bucket is checked at start-up
rather than on the first incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from safewatch.config.loader import LoadedSite
from safewatch.config.site import StorageConfig
from safewatch.incidents.evidence import EvidenceStore
from safewatch.incidents.sealed import REVEAL_LOG, reveal_log_path
from safewatch.storage import BlobStore, IncidentRepository, LocalBlobStore, create_engine_for

__all__ = [
    "SiteStorage",
    "clip_spool",
    "open_evidence_backend",
    "open_site_storage",
    "reveal_log",
]


@dataclass(frozen=True, slots=True)
class SiteStorage:
    """A site's database, incident repository and evidence store; :meth:`close` when done."""

    engine: Engine
    repository: IncidentRepository
    evidence: EvidenceStore

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def open_evidence_backend(
    storage: StorageConfig, base_dir: Path, *, check: bool = True
) -> BlobStore:
    """The blob store the site's evidence lives in: its S3 bucket, else its evidence folder.

    Args:
        storage: The site's storage block.
        base_dir: The site file's folder (relative ``evidence_dir`` is relative to it).
        check: For S3, fail now if the bucket is missing or unreachable.

    Raises:
        StorageError: boto3 is missing, or the bucket cannot be used.
    """
    s3 = storage.evidence_s3
    if s3 is None:
        folder = storage.evidence_dir.expanduser()
        return LocalBlobStore(folder if folder.is_absolute() else base_dir / folder)
    from safewatch.storage.s3_blobs import S3BlobStore

    secret = s3.secret_access_key.get_secret_value() if s3.secret_access_key else None
    store = S3BlobStore(
        s3.bucket,
        prefix=s3.prefix,
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        access_key_id=s3.access_key_id,
        secret_access_key=secret,
        addressing_style=s3.addressing_style,
    )
    if check:
        store.check()
    return store


def clip_spool(storage: StorageConfig, base_dir: Path) -> Path:
    """The folder of clips being written: ``.clips-in-progress`` in the evidence folder.

    With evidence in S3 the folder is still ``evidence_dir`` (a clip is written frame by frame
    to a local file and stored when it ends): without it an S3 site could not record clips at
    all. Under ``serve --cluster`` with S3 it is each host's own, so a dead analyzer's
    unfinished clips are stored by its host's next start, not by the camera's next owner
    (docs/cluster.md).
    """
    folder = storage.evidence_dir.expanduser()
    return (folder if folder.is_absolute() else base_dir / folder) / ".clips-in-progress"


def reveal_log(site: LoadedSite, evidence: EvidenceStore) -> Path:
    """Where reveals of sealed originals are journalled: ``reveal-log.jsonl`` in the evidence
    folder, or, with evidence in S3, in this host's local ``evidence_dir`` (the clip spool's
    folder). An S3 store has nothing to append to, and every reveal from the dashboard of an S3
    site failed for want of a log, after its audit record said it had been asked for.
    """
    if isinstance(evidence.backend, LocalBlobStore):
        return reveal_log_path(evidence)
    return clip_spool(site.config.storage, site.base_dir).parent / REVEAL_LOG


def open_site_storage(site: LoadedSite, *, auto_upgrade: bool | None = None) -> SiteStorage:
    """Connect to the site's database (schema checked, see :mod:`safewatch.storage.migrate`) and
    open its evidence store, recording writes in the chain.

    Raises:
        StorageError: The database or the evidence store cannot be used, or the schema is
            outdated (run ``safewatch db upgrade``).
    """
    storage = site.config.storage
    engine = create_engine_for(storage.database, site.base_dir)
    try:
        repository = IncidentRepository(engine, auto_upgrade=auto_upgrade, site_file=site.path)
        backend = open_evidence_backend(storage, site.base_dir)
    except BaseException:
        engine.dispose()
        raise
    return SiteStorage(engine, repository, EvidenceStore(backend, log=repository))
