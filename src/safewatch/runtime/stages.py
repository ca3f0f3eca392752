"""Build one camera's stages from the site file.

Shared by ``safewatch audit`` and the live runtime so both run a camera the same way: the tracker
knows the camera's analysis rate and which PPE items its models can see, so a person's hardhat
state reads ``unknown`` from the first frame instead of appearing only once a hat is detected.
"""

from __future__ import annotations

from safewatch.config.loader import LoadedSite
from safewatch.config.site import CameraConfig
from safewatch.track import CameraTracker, PPEVocabulary

__all__ = ["build_tracker", "ppe_items"]


def ppe_items(site: LoadedSite, camera: CameraConfig) -> set[str] | None:
    """PPE items the camera's models report, from their ``labels:`` maps.

    ``None`` when a model has no ``labels:`` map: its vocabulary is only known once it runs, and
    the tracker then reports the items it has seen so far.
    """
    vocabulary = PPEVocabulary()
    items: set[str] = set()
    for key in camera.models:
        labels = site.config.models[key].labels
        if labels is None:
            return None
        for label in labels.values():
            found = vocabulary.item_of(label)
            if found is not None:
                items.add(found[0])
    return items


def build_tracker(site: LoadedSite, camera_id: str, camera: CameraConfig) -> CameraTracker:
    """A fresh tracker for one camera run."""
    return CameraTracker(
        site.config.tracker,
        camera_id,
        frame_rate=camera.fps,
        ppe_items=ppe_items(site, camera),
    )
