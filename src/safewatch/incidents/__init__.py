"""Incidents: lifecycle from rule events, and their evidence (stills, clips, sealed originals)."""

from safewatch.incidents.annotate import draw_overlay
from safewatch.incidents.evidence import JPEG_QUALITY, EvidenceStore
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
from safewatch.incidents.sealed import EvidenceKey, EvidenceKeyError, reveal

__all__ = [
    "CLEAN_STILL_SUFFIX",
    "CLIP_SUFFIX",
    "JPEG_QUALITY",
    "ORIGINAL_CLIP_SUFFIX",
    "ORIGINAL_STILL_SUFFIX",
    "ChangeKind",
    "EvidenceKey",
    "EvidenceKeyError",
    "EvidenceRecorder",
    "EvidenceStore",
    "IncidentChange",
    "IncidentManager",
    "RecorderStats",
    "anonymise_heads",
    "draw_overlay",
    "head_regions",
    "reveal",
]
