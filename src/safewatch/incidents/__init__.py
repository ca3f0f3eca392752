"""Incidents: lifecycle from rule events, evidence stills and the overlay drawn on them."""

from safewatch.incidents.annotate import draw_overlay
from safewatch.incidents.evidence import JPEG_QUALITY, EvidenceStore
from safewatch.incidents.manager import ChangeKind, IncidentChange, IncidentManager

__all__ = [
    "JPEG_QUALITY",
    "ChangeKind",
    "EvidenceStore",
    "IncidentChange",
    "IncidentManager",
    "draw_overlay",
]
