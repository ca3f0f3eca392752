"""``check-config``'s model check: load each model and run it once on a blank frame.

Resolving a model's path proves only that a file is there. Loading it proves what ``serve`` would
find at start-up, before anyone relies on it: the file opens in ONNX Runtime, its output layout is
one the adapters know, its class names resolve and its ``labels:`` map names real classes, and its
outputs on a plain frame are finite (:class:`~safewatch.detect.onnx_detector.OnnxDetector`
refuses NaN or infinite ones: such a model sees nothing, silently). One more pass on a black
frame through the whole path (preprocessing, session, decoding, NMS, mapping back to pixels)
proves the detections come out well formed. The labels each model really produces are then used
to check the rules, also for models whose classes the site file does not spell out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from safewatch.config.site import ModelConfig
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.domain import Frame

__all__ = ["ModelCheck", "check_model"]

BLANK_HW = (352, 640)
"""A blank frame of a common CCTV aspect (the cameras' real size is only known once they stream)."""


@dataclass(frozen=True, slots=True)
class ModelCheck:
    """What loading a model showed.

    Attributes:
        labels: The site labels it produces (what rules may ask of it).
        summary: One line: format, classes, input size, labels, the blank frame's time.
    """

    labels: frozenset[str]
    summary: str


def check_model(key: str, config: ModelConfig, path: Path) -> ModelCheck:
    """Load the model and run it on a blank frame.

    Raises:
        ModelError: The model cannot be loaded, its layout, classes or labels do not fit, or its
            outputs are not finite (each message names the model and what to do).
    """
    detector = OnnxDetector(config, path, key, max_batch=1)
    blank = Frame("check-config", 0, 0.0, 0.0, np.zeros((*BLANK_HW, 3), np.uint8))
    started = time.perf_counter()
    (found,) = detector.detect([blank])
    ms = (time.perf_counter() - started) * 1000
    labels = frozenset(str(label) for label in detector.plan.labels.tolist())
    height, width = detector.network_hw
    return ModelCheck(
        labels,
        f"{detector.format}, {len(detector.class_names)} classes, input {width}x{height}, site "
        f"labels {', '.join(sorted(labels)) or 'none'}; a blank frame ran in {ms:.0f} ms "
        f"({len(found)} detection(s))",
    )
