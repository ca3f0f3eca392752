"""Pure types shared by every stage (NumPy only, no I/O)."""

from safewatch.domain.detections import Detections
from safewatch.domain.events import Phase, RuleEvent, Severity
from safewatch.domain.frame import Frame, Image
from safewatch.domain.geometry import Point, Zone, points_in_polygon
from safewatch.domain.incidents import Incident, IncidentStatus, incident_id
from safewatch.domain.tracks import PPEState, Track, TrackedFrame

__all__ = [
    "Detections",
    "Frame",
    "Image",
    "Incident",
    "IncidentStatus",
    "PPEState",
    "Phase",
    "Point",
    "RuleEvent",
    "Severity",
    "Track",
    "TrackedFrame",
    "Zone",
    "incident_id",
    "points_in_polygon",
]
