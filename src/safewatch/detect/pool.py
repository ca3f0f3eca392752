"""Building each camera's detector while sharing model sessions between cameras.

An ONNX Runtime session holds the model's weights and its thread pool; ten cameras running the same
PPE model must share one, not load it ten times. :class:`DetectorPool` creates each model's detector
on first use and hands the same instance to every camera that names it; :func:`build_detector` is
the one-camera convenience on top.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from safewatch.config.site import ModelConfig
from safewatch.detect.multi import MultiModelDetector
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.detect.protocol import Detector
from safewatch.errors import ModelError

__all__ = ["DetectorFactory", "DetectorPool", "build_detector"]

DetectorFactory = Callable[[ModelConfig, Path, str], Detector]
"""Builds one model's detector from ``(config, resolved path, model key)``."""


class DetectorPool:
    """Lazily built, shared detectors for the models of a site.

    Args:
        models: Model key -> ``(config, resolved .onnx path)``; resolving catalogue names and
            relative paths is the caller's job (the catalogue and the config loader own it).
        factory: Builds one model's detector; :class:`OnnxDetector` by default, a fake in tests.
    """

    def __init__(
        self,
        models: Mapping[str, tuple[ModelConfig, Path]],
        factory: DetectorFactory = OnnxDetector,
    ) -> None:
        self._models = dict(models)
        self._factory = factory
        self._built: dict[str, Detector] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Detector:
        """The shared detector of model ``name``, built on first use.

        Raises:
            ModelError: ``name`` is not a model of this pool, or building it failed.
        """
        with self._lock:
            detector = self._built.get(name)
            if detector is None:
                if name not in self._models:
                    known = ", ".join(sorted(self._models)) or "none"
                    raise ModelError(f"unknown model {name!r} (defined: {known})")
                config, path = self._models[name]
                detector = self._factory(config, path, name)
                self._built[name] = detector
            return detector

    def for_models(self, names: Sequence[str]) -> Detector:
        """One detector running ``names`` in order: the model itself, or their merge."""
        if not names:
            raise ModelError("a camera needs at least one model")
        detectors = [self.get(n) for n in names]
        return detectors[0] if len(detectors) == 1 else MultiModelDetector(detectors)


def build_detector(
    models: Mapping[str, tuple[ModelConfig, Path]],
    names: Sequence[str],
    pool: DetectorPool | None = None,
) -> Detector:
    """The detector for one camera that uses models ``names``.

    Pass the same ``pool`` for every camera of a site to share sessions; without one a private
    pool is made, which suits a single-camera run (``safewatch audit``) and tests.
    """
    return (pool if pool is not None else DetectorPool(models)).for_models(names)
