"""Build one camera's stages from the site file.

Shared by ``safewatch audit`` and the live runtime so both run a camera the same way: the tracker
knows the camera's analysis rate and which PPE items its models can see, so a person's hardhat
state reads ``unknown`` from the first frame instead of appearing only once a hat is detected.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from safewatch.config.coverage import model_labels, normalise_label
from safewatch.config.loader import LoadedSite
from safewatch.config.site import CameraConfig, ModelConfig
from safewatch.detect import Detector, DetectorPool, build_detector
from safewatch.detect.catalogue import catalogue_class_names, resolve
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.errors import ConfigError
from safewatch.incidents.faces import face_detector
from safewatch.track import PERSON, CameraTracker, PPEVocabulary
from safewatch.track.camera import HEAD_ITEM
from safewatch.track.head_check import HeadVerifier, load_head_classifier
from safewatch.track.ppe import NEGATIVE_PREFIX

__all__ = [
    "FILE_RUN_WORKERS",
    "build_detector_for",
    "build_file_run_detectors",
    "build_tracker",
    "known_labels",
    "pick_camera",
    "ppe_items",
    "ppe_vocabulary",
    "resolved_models",
    "side_by_side_models",
    "track_heads",
    "twin_of",
]

FILE_RUN_WORKERS = 2
"""Batches a file run infers side by side on CPU (each thread on a twin of one session), see
:func:`build_file_run_detectors`."""


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


def side_by_side_models(
    models: Mapping[str, tuple[ModelConfig, Path]],
) -> dict[str, tuple[ModelConfig, Path]] | None:
    """The models with each session sized to run :data:`FILE_RUN_WORKERS` side by side.

    Each gets its share of the cores as intra-op threads (one each on 2 cores); ``None`` when
    they cannot be split: fewer than 2 cores, or a model with explicit ``threads`` or a GPU
    provider (the user chose, or a GPU overlaps nothing on the CPU).
    """
    cores = len(os.sched_getaffinity(0))
    workers = min(FILE_RUN_WORKERS, cores)
    cpu_only = all(
        config.threads == 0 and config.providers == ["CPUExecutionProvider"]
        for config, _ in models.values()
    )
    if workers < 2 or not cpu_only:
        return None
    threads = max(1, cores // workers)
    return {
        key: (config.model_copy(update={"threads": threads}), path)
        for key, (config, path) in models.items()
    }


def build_file_run_detectors(site: LoadedSite, camera: CameraConfig) -> list[Detector]:
    """The camera's detector for a file run, once per inference worker (``audit``).

    ONNX Runtime's intra-op threads meet at the end of every parallel operator, and the calling
    thread busy-waits there (``SpinPause``, which ``allow_spinning = 0`` does not switch off):
    9 % of all of ``audit``'s CPU samples under ``perf`` at load 17 sat on that one
    instruction. A file has no latency to keep, so on CPU each of :data:`FILE_RUN_WORKERS`
    sessions gets its share of the cores (:func:`side_by_side_models`) and successive
    batches run side by side, which keeps the cores busy without the join: yolov8n 640x352 batch
    4 on 2 cores, 0.88x the CPU per frame of one 2-thread session and 0.63x its wall time (load
    10-15; ``docs/performance.md``). The second detector is a twin of the first: the same
    session called from another thread (:meth:`OnnxDetector.twin`), so the model is loaded,
    optimised and warmed up once. A model with explicit ``threads`` or a GPU provider keeps a
    single session. The live server's overlap lane uses the same split for its second session
    (``runtime.inference.overlap``).
    """
    models = resolved_models(site, camera.models)
    shared = side_by_side_models(models)
    if shared is None:
        return [build_detector(models, camera.models, tiling=camera.tiling)]
    first = DetectorPool(shared)
    detectors = [first.for_models(camera.models, camera.tiling)]
    for _ in range(FILE_RUN_WORKERS - 1):
        twins = DetectorPool(shared, factory=lambda _c, _p, key: twin_of(first.get(key)))
        detectors.append(twins.for_models(camera.models, camera.tiling))
    return detectors


def twin_of(detector: Detector) -> Detector:
    """A detector over ``detector``'s session for another calling thread
    (:meth:`~safewatch.detect.onnx_detector.OnnxDetector.twin`); other detectors (test fakes)
    are returned as they are."""
    return detector.twin() if isinstance(detector, OnnxDetector) else detector


def known_labels(site: LoadedSite, key: str) -> frozenset[str] | None:
    """Site labels model ``key`` produces before its file is loaded: its ``labels:`` map or
    ``class_names`` (:func:`~safewatch.config.coverage.model_labels`), else a catalogue COCO
    model's classes (``path: yolox_nano`` alone); ``None`` when only the file knows them."""
    model = site.config.models[key]
    produced = model_labels(model)
    if produced is not None:
        return produced
    names = catalogue_class_names(model.path, site.base_dir)
    return None if names is None else frozenset(normalise_label(n) for n in names)


def ppe_vocabulary(site: LoadedSite, camera: CameraConfig) -> PPEVocabulary:
    """Which of the camera's labels are PPE: the built-in items, and every ``x`` whose ``no_x``
    one of its models produces (``labels:`` maps or ``class_names``, as rule checks read them;
    a model whose classes only its file knows adds its items once the tracker sees them)."""
    vocabulary = PPEVocabulary()
    for key in camera.models:
        vocabulary = vocabulary.with_labels(known_labels(site, key) or ())
    return vocabulary


def ppe_items(site: LoadedSite, camera: CameraConfig) -> set[str] | None:
    """PPE items the camera's models report, from their ``labels:`` maps or ``class_names``.

    ``None`` when a model's classes are known only from its file: the tracker then reports the
    items it has seen so far.
    """
    vocabulary = ppe_vocabulary(site, camera)
    items: set[str] = set()
    for key in camera.models:
        labels = known_labels(site, key)
        if labels is None:
            return None
        for label in labels:
            found = vocabulary.item_of(label)
            if found is not None:
                items.add(found[0])
    return items


def track_heads(site: LoadedSite, camera: CameraConfig) -> bool | None:
    """Whether the camera tracks head boxes as persons (head mode, :mod:`safewatch.track.heads`).

    ``False`` as soon as one of its models produces ``person`` (its ``labels:`` map or
    ``class_names``, read as rule checks read them): the automatic switch would otherwise turn
    head mode on after a few frames with a hat box and no person (an empty yard and a yellow
    bucket the PPE model calls a hat), track the bucket as a worker and a worker walking in as
    his head only, and stop head verification and face subjects. ``True`` when every model's
    labels are known, none is ``person`` and one is a head box (a PPE head model alone);
    ``False`` when none is either. A catalogue COCO model counts as known
    (:func:`known_labels`). ``None`` (decide from the detections) only when a model's labels are
    known from its file alone.
    """
    labels: set[str] = set()
    known = True
    for key in camera.models:
        produced = known_labels(site, key)
        if produced is None:
            known = False
        elif PERSON in produced:
            return False
        else:
            labels |= produced
    if not known:
        return None
    return bool(labels & {HEAD_ITEM, NEGATIVE_PREFIX + HEAD_ITEM})


def build_tracker(site: LoadedSite, camera_id: str, camera: CameraConfig) -> CameraTracker:
    """A fresh tracker for one camera run (with head verification when the site enables it)."""
    verifier = None
    configured = site.config.tracker.head_classifier
    if configured:
        classifier = load_head_classifier(
            configured,
            site.base_dir,
            thresholds={str(k): v for k, v in site.config.tracker.head_thresholds.items()},
        )
        verifier = HeadVerifier(classifier)
    faces = site.config.tracker.face_subjects
    return CameraTracker(
        site.config.tracker,
        camera_id,
        frame_rate=camera.fps,
        track_heads=track_heads(site, camera),
        ppe_items=ppe_items(site, camera),
        vocabulary=ppe_vocabulary(site, camera),
        head_verifier=verifier,
        face_finder=face_detector(faces) if faces and verifier is not None else None,
    )
