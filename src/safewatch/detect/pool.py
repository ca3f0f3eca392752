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

from safewatch.config.runtime import TilingConfig
from safewatch.config.site import ModelConfig
from safewatch.detect.multi import CameraDetector
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

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is one of the pool's models (built or not)."""
        with self._lock:
            return name in self._models

    def __len__(self) -> int:
        """How many models the pool has (built or not)."""
        with self._lock:
            return len(self._models)

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

    def update(self, models: Mapping[str, tuple[ModelConfig, Path]]) -> list[str]:
        """Swap in another site's models, building now those that are new or changed.

        A model whose settings and file are unchanged keeps its detector (and its warm session);
        models no longer named are dropped. All or nothing: if one model cannot be built, the
        pool is left as it was, so a bad edit of the site file never takes working cameras down.

        Returns:
            The keys (re)built.

        Raises:
            ModelError: A model cannot be loaded (nothing is changed then).
        """
        with self._lock:
            old_models, old_built = dict(self._models), dict(self._built)
        built: dict[str, Detector] = {}
        changed: list[str] = []
        for key in sorted(models):
            config, path = models[key]
            if key in old_built and old_models.get(key) == (config, path):
                built[key] = old_built[key]
                continue
            built[key] = self._factory(config, path, key)
            changed.append(key)
        with self._lock:
            self._models, self._built = dict(models), built
        return changed

    def for_models(self, names: Sequence[str], tiling: TilingConfig | None = None) -> Detector:
        """One detector running ``names`` in order (merged) with the camera's ``tiling``.

        The models are built here, so a missing or broken model fails before any frame is read.
        """
        if not names:
            raise ModelError("a camera needs at least one model")
        for name in names:
            self.get(name)
        if len(names) == 1 and tiling is None:
            return self.get(names[0])
        return CameraDetector(self.get, names, tiling)


def build_detector(
    models: Mapping[str, tuple[ModelConfig, Path]],
    names: Sequence[str],
    pool: DetectorPool | None = None,
    tiling: TilingConfig | None = None,
) -> Detector:
    """The detector for one camera that uses models ``names`` (and ``tiling``).

    Pass the same ``pool`` for every camera of a site to share sessions; without one a private
    pool is made, which suits a single-camera run (``safewatch audit``) and tests.
    """
    return (pool if pool is not None else DetectorPool(models)).for_models(names, tiling)
