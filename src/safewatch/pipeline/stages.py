"""Build one camera's stages from the site file.

Shared by ``safewatch audit`` and the live runtime so both run a camera the same way: the tracker
knows the camera's analysis rate and which PPE items its models can see, so a person's hardhat
state reads ``unknown`` from the first frame instead of appearing only once a hat is detected.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from safewatch.config.loader import LoadedSite
from safewatch.config.site import CameraConfig, ModelConfig
from safewatch.detect import Detector, build_detector
from safewatch.detect.catalogue import resolve
from safewatch.errors import ConfigError
from safewatch.track import CameraTracker, PPEVocabulary
from safewatch.track.head_check import HeadClassifier, HeadVerifier, head_classifier_file

__all__ = ["build_detector_for", "build_tracker", "pick_camera", "ppe_items", "resolved_models"]


def pick_camera(site: LoadedSite, requested: str | None) -> tuple[str, CameraConfig]:
    """The camera whose settings apply to footage: the one asked for, or the site's only one."""
    cameras = site.config.cameras
    if requested is not None:
        if requested not in cameras:
            known = ", ".join(sorted(cameras))
            raise ConfigError(f"camera {requested!r} is not in the site file (cameras: {known})")
        return requested, cameras[requested]
    if len(cameras) == 1:
        return next(iter(cameras.items()))
    known = ", ".join(sorted(cameras))
    raise ConfigError(
        f"the site file has {len(cameras)} cameras ({known}); choose one with --camera"
    )


def resolved_models(site: LoadedSite, keys: Iterable[str]) -> dict[str, tuple[ModelConfig, Path]]:
    """Model key -> its settings and file (catalogue names and relative paths resolved)."""
    return {
        key: (site.config.models[key], resolve(site.config.models[key].path, site.base_dir))
        for key in keys
    }


def build_detector_for(site: LoadedSite, camera: CameraConfig) -> Detector:
    """The camera's detector: its models in its order, merged, with its tiling (loads sessions).

    The live server batches many cameras through the same :func:`~safewatch.detect.detect_requests`,
    so footage run through ``audit`` or ``backtest`` gets the detections a live camera would.
    """
    return build_detector(resolved_models(site, camera.models), camera.models, tiling=camera.tiling)


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
    """A fresh tracker for one camera run (with head verification when the site enables it)."""
    verifier = None
    configured = site.config.tracker.head_classifier
    if configured:
        classifier = HeadClassifier(head_classifier_file(configured, site.base_dir))
        verifier = HeadVerifier(classifier)
    return CameraTracker(
        site.config.tracker,
        camera_id,
        frame_rate=camera.fps,
        ppe_items=ppe_items(site, camera),
        head_verifier=verifier,
    )
