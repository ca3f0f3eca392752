"""From model classes to the site's vocabulary, with a confidence threshold per label.

A ``labels:`` map names the classes a site cares about (``Hardhat: hardhat``); every other class is
dropped before NMS, so a 14-class PPE model used only for hard hats costs no NMS time on gloves.
Without a map every class is kept under a normalised name (``NO-Safety Vest`` becomes
``no_safety_vest``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from safewatch.config.coverage import normalise_label
from safewatch.errors import ModelError

__all__ = ["LabelPlan", "normalise_label", "plan_labels"]


@dataclass(frozen=True, slots=True, eq=False)
class LabelPlan:
    """Which model classes are kept, under which label, above which confidence.

    Attributes:
        class_ids: ``(K,)`` indices of the model classes that are kept, ascending.
        labels: ``(K,)`` site label of each kept class.
        thresholds: ``(K,)`` minimum confidence of each kept class.
        label_ids: ``(K,)`` a number per distinct site label: the classes NMS keeps apart.
            Classes merged into one label (car, truck, bus -> vehicle) share it, so a car box and
            a truck box on one vehicle suppress each other instead of making two vehicles (two
            tracks, two counts).
    """

    class_ids: NDArray[np.intp]
    labels: NDArray[np.str_]
    thresholds: NDArray[np.float32]
    label_ids: NDArray[np.intp]

    @property
    def min_threshold(self) -> float:
        """The lowest threshold: anchors below it cannot survive for any class."""
        return float(self.thresholds.min()) if len(self.thresholds) else 1.0


def plan_labels(
    model: str,
    class_names: Sequence[str],
    labels: Mapping[str, str] | None,
    confidence: float,
    label_confidence: Mapping[str, float],
) -> LabelPlan:
    """Build the plan for one model.

    A ``labels`` key matches a class name exactly, or failing that by :func:`normalise_label`
    (so ``no_hardhat`` finds ``NO-Hardhat``).

    Raises:
        ModelError: A ``labels`` key names no class of the model, two keys name the same class
            (``Hardhat`` and ``hardhat``: only the last label would apply, silently), or a
            ``label_confidence`` key names a label the model never produces (typos that would
            silently disable a safety rule).
    """
    if labels is None:
        mapping = {i: normalise_label(n) for i, n in enumerate(class_names)}
    else:
        exact = {n: i for i, n in enumerate(class_names)}
        loose = {normalise_label(n): i for i, n in enumerate(class_names)}
        mapping = {}
        keys: dict[int, str] = {}
        for key, label in labels.items():
            index = exact.get(key, loose.get(normalise_label(key)))
            if index is None:
                raise ModelError(
                    f"model {model!r}: labels maps {key!r}, which is not one of its classes: "
                    + ", ".join(class_names)
                )
            if index in keys:
                raise ModelError(
                    f"model {model!r}: labels maps both {keys[index]!r} and {key!r}, which are "
                    f"the same class {class_names[index]!r}; keep one of them"
                )
            keys[index] = key
            mapping[index] = label
    produced = set(mapping.values())
    unknown = sorted(set(label_confidence) - produced)
    if unknown:
        raise ModelError(
            f"model {model!r}: label_confidence names {', '.join(unknown)}, which it never "
            f"produces (it produces: {', '.join(sorted(produced))})"
        )
    ids = sorted(mapping)
    names = np.asarray([mapping[i] for i in ids], np.str_)
    return LabelPlan(
        np.asarray(ids, np.intp),
        names,
        np.asarray([label_confidence.get(mapping[i], confidence) for i in ids], np.float32),
        np.unique(names, return_inverse=True)[1].astype(np.intp).reshape(len(ids)),
    )
