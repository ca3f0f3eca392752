"""Incidents: lifecycle from rule events, and their evidence (stills, clips, sealed originals)."""

from safewatch.incidents.annotate import draw_overlay
from safewatch.incidents.chain import Problem, ProblemKind, VerifyReport, verify_chain
from safewatch.incidents.evidence import JPEG_QUALITY, EvidenceLog, EvidenceStore
from safewatch.incidents.lifecycle import (
    IncidentLifecycle,
    InvalidTransition,
    TimelineEvent,
    check_transition,
)
from safewatch.incidents.manager import ChangeKind, IncidentChange, IncidentManager
from safewatch.incidents.privacy import anonymise_heads, head_regions
from safewatch.incidents.recorder import (
    CLEAN_STILL_SUFFIX,
    CLIP_SUFFIX,
    ORIGINAL_CLIP_SUFFIX,
    ORIGINAL_STILL_SUFFIX,
    EvidenceRecorder,
    RecorderStats,
)
from safewatch.incidents.retention import Removal, RetentionReport, apply_retention
from safewatch.incidents.sealed import EvidenceKey, EvidenceKeyError, reveal
from safewatch.incidents.site_storage import SiteStorage, open_evidence_backend, open_site_storage

__all__ = [
    "CLEAN_STILL_SUFFIX",
    "CLIP_SUFFIX",
    "JPEG_QUALITY",
    "ORIGINAL_CLIP_SUFFIX",
    "ORIGINAL_STILL_SUFFIX",
    "ChangeKind",
    "EvidenceKey",
    "EvidenceKeyError",
    "EvidenceLog",
    "EvidenceRecorder",
    "EvidenceStore",
    "IncidentChange",
    "IncidentLifecycle",
    "IncidentManager",
    "InvalidTransition",
    "Problem",
    "ProblemKind",
    "RecorderStats",
    "Removal",
    "RetentionReport",
    "SiteStorage",
    "TimelineEvent",
    "VerifyReport",
    "anonymise_heads",
    "apply_retention",
    "check_transition",
    "draw_overlay",
    "head_regions",
    "open_evidence_backend",
    "open_site_storage",
    "reveal",
    "verify_chain",
]
