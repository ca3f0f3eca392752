"""Multi-object tracking per camera, with PPE states voted onto person tracks."""

from safewatch.track.camera import PERSON, CameraTracker
from safewatch.track.ppe import DEFAULT_ITEMS, BodyRegion, Observation, PPEVocabulary, associate_ppe
from safewatch.track.protocol import Tracker
from safewatch.track.votes import PPEVotes, vote

__all__ = [
    "DEFAULT_ITEMS",
    "PERSON",
    "BodyRegion",
    "CameraTracker",
    "Observation",
    "PPEVocabulary",
    "PPEVotes",
    "Tracker",
    "associate_ppe",
    "vote",
]
