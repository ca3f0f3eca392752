"""Persistence: SQL tables, migrations, repositories, the hash chain and blob stores.

SQLite and a local folder by default; PostgreSQL and S3-compatible storage to scale.
"""

from safewatch.storage.alert_tables import AlertOutboxRow
from safewatch.storage.auth_tables import ApiTokenRow, AuditLogRow, SessionRow, UserRow
from safewatch.storage.blobs import BlobInfo, BlobStore
from safewatch.storage.cluster_tables import CameraLeaseRow, ClusterAnalyzerRow, CoverageGapRow
from safewatch.storage.draft_tables import RuleDraftRow
from safewatch.storage.engine import create_engine_for, resolve_url
from safewatch.storage.hash_chain import ChainEntry, EntryKind
from safewatch.storage.incident_queries import Bucket, Dimension, IncidentFilter, Page
from safewatch.storage.incident_repository import IncidentRepository, StatusCheck, create_schema
from safewatch.storage.job_tables import ClusterJobRow
from safewatch.storage.local_blobs import LocalBlobStore
from safewatch.storage.migrate import ensure_schema
from safewatch.storage.tables import Base, ChainEntryRow, ChainHeadRow, IncidentRow

__all__ = [
    "AlertOutboxRow",
    "ApiTokenRow",
    "AuditLogRow",
    "Base",
    "BlobInfo",
    "BlobStore",
    "Bucket",
    "CameraLeaseRow",
    "ChainEntry",
    "ChainEntryRow",
    "ChainHeadRow",
    "ClusterAnalyzerRow",
    "ClusterJobRow",
    "CoverageGapRow",
    "Dimension",
    "EntryKind",
    "IncidentFilter",
    "IncidentRepository",
    "IncidentRow",
    "LocalBlobStore",
    "Page",
    "RuleDraftRow",
    "SessionRow",
    "StatusCheck",
    "UserRow",
    "create_engine_for",
    "create_schema",
    "ensure_schema",
    "resolve_url",
]
