"""Head verification: look at each tracked person's head and classify it hard hat / bare / hidden.

A PPE detector must *find* a bare head before it can call it one, and on heads unlike its training
photos it often finds nothing: on the Hard Hat Workers evaluation photos the example setup left 137
of 172 bare-headed persons without a verdict (bench/ppe_compliance). The verifier asks a narrower
question the detector never gets: given where this person's head is, what is on it?

Where the head is comes from :mod:`safewatch.track.head_crops` (the PPE box the association gave
the person, else the person box's geometry). A small classifier trained by
``training/head_classifier`` reads the crop and answers ``hardhat`` / ``bare`` / ``not_visible``
with probabilities; an answer counts only at or above the class's threshold, calibrated on
held-out training photos to 95 % precision and stored in the model's metadata. A confident answer
becomes the frame's observation of the item (it is more specific evidence than a box the detector
placed, or failed to place, near the head); an unconfident one leaves the PPE model's observation,
if any, as it was. Voting over frames (:mod:`safewatch.track.votes`) is unchanged.

Cost: one batched ONNX Runtime call per frame over the tracked persons' crops (48x48 since v2; the
model's metadata gives the size), a ~30 k weight network: about 1 ms of CPU for four heads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from safewatch.domain import Detections, Image, PPEState
from safewatch.errors import ModelError
from safewatch.track.head_crops import crop_heads, head_from_person
from safewatch.track.ppe import Observation

__all__ = ["HeadClassifier", "HeadVerifier", "head_classifier_file", "load_head_classifier"]

_STATES = {"hardhat": PPEState.PRESENT, "bare": PPEState.ABSENT}
VERIFIED_INDEX = -1
"""``Observation.index`` of an observation made by the verifier (no detection row behind it)."""


_METADATA = ("classes", "input_size", "thresholds")
"""The metadata keys a head classifier's ``.onnx`` file carries (JSON values)."""


class HeadClassifier:
    """The ONNX head-crop classifier, with the classes and thresholds its metadata declares.

    Args:
        path: The ``.onnx`` file (input ``(N, 3, S, S)`` BGR 0-1, output class probabilities;
            metadata ``classes``, ``input_size``, ``thresholds`` as JSON).
        threads: ONNX Runtime intra-op threads (1: a tiny model, many cameras).
        thresholds: Per-class overrides of the model's calibrated thresholds.

    Raises:
        ModelError: The file is missing, unreadable, or lacks the metadata.
    """

    def __init__(
        self, path: Path, *, threads: int = 1, thresholds: Mapping[str, float] | None = None
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
            meta = self._session.get_modelmeta().custom_metadata_map
        except Exception as exc:  # ONNX Runtime raises its own exception types
            raise ModelError(f"{path}: cannot load the head classifier: {exc}") from exc
        # Named, as the face detector names its missing outputs: a detection model given here
        # was "not a head classifier ('classes')", the bare KeyError.
        missing = [key for key in _METADATA if key not in meta]
        if missing:
            raise ModelError(f"{path}: not a head classifier (no metadata {missing})")
        try:
            self.classes: tuple[str, ...] = tuple(json.loads(meta["classes"]))
            self.size = int(meta["input_size"])
            calibrated: dict[str, float] = json.loads(meta["thresholds"])
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{path}: not a head classifier (bad metadata: {exc})") from exc
        self.path = path
        self.thresholds = {**calibrated, **(thresholds or {})}
        self._input = self._session.get_inputs()[0].name

    def classify(self, image: Image, heads: NDArray[np.floating]) -> NDArray[np.float32]:
        """``(N, classes)`` probabilities for the ``(N, 4)`` head boxes of ``image``."""
        boxes = np.asarray(heads, np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        crops = crop_heads(image, boxes, self.size).transpose(0, 3, 1, 2)
        (probabilities,) = self._session.run(None, {self._input: np.ascontiguousarray(crops)})
        return np.asarray(probabilities, np.float32)

    def verdicts(
        self, probabilities: NDArray[np.float32], thresholds: Mapping[str, float] | None = None
    ) -> list[tuple[PPEState, float] | None]:
        """Per row: the confident state and its probability, or ``None`` (not sure / hidden).

        ``thresholds`` overrides the classifier's own per class for this call (e.g. stricter
        ones for subjects with no person box)."""
        limits = {**self.thresholds, **(thresholds or {})}
        out: list[tuple[PPEState, float] | None] = []
        for row in probabilities:
            best = int(np.argmax(row))
            name = self.classes[best]
            state = _STATES.get(name)
            sure = state is not None and float(row[best]) >= limits.get(name, 1.0)
            out.append((state, float(row[best])) if sure and state is not None else None)
        return out


class HeadVerifier:
    """Turn head crops into PPE observations of ``item`` for a frame's persons.

    Args:
        classifier: The head classifier.
        item: The PPE item a head crop speaks about.
        min_head: Heads smaller than this (pixels, estimated side) are not classified: the crop
            would be a few pixels upscaled, and the answer noise.
    """

    def __init__(self, classifier: HeadClassifier, item: str = "hardhat", min_head: float = 8.0):
        self._classifier = classifier
        self.item = item
        self._min_head = min_head

    def observe(
        self,
        image: Image,
        persons: NDArray[np.floating],
        found: Sequence[Mapping[str, Observation]],
        ppe: Detections,
    ) -> list[dict[str, Observation]]:
        """The observations of ``found`` with ``item`` replaced where the head crop is sure.

        Args:
            image: The frame.
            persons: ``(P, 4)`` person boxes to verify.
            found: Per person, what the PPE association found (its ``index`` rows are in ``ppe``).
            ppe: The detections ``found`` refers to.
        """
        boxes = np.asarray(persons, np.float64).reshape(-1, 4)
        heads = head_from_person(boxes)
        for i, seen in enumerate(found):
            hit = seen.get(self.item)
            if hit is not None and hit.index >= 0:
                heads[i] = ppe.xyxy[hit.index]
        return self.observe_heads(image, heads, found)

    def observe_heads(
        self,
        image: Image,
        heads: NDArray[np.floating],
        found: Sequence[Mapping[str, Observation]],
        thresholds: Mapping[str, float] | None = None,
    ) -> list[dict[str, Observation]]:
        """:meth:`observe` for subjects whose head box is already known (``(N, 4)`` xyxy);
        ``thresholds`` overrides the classifier's per class (:meth:`HeadClassifier.verdicts`)."""
        heads = np.asarray(heads, np.float64).reshape(-1, 4)
        sides = np.maximum(heads[:, 2] - heads[:, 0], heads[:, 3] - heads[:, 1])
        rows = np.flatnonzero(sides >= self._min_head)
        result = [dict(seen) for seen in found]
        probabilities = self._classifier.classify(image, heads[rows])
        answers = self._classifier.verdicts(probabilities, thresholds)
        for row, answer in zip(rows.tolist(), answers, strict=True):
            if answer is not None:
                result[row][self.item] = Observation(answer[0], answer[1], VERIFIED_INDEX)
        return result


def head_classifier_file(name_or_path: str, base_dir: Path) -> Path:
    """The ``.onnx`` file of a site's ``tracker.head_classifier``.

    The catalogue's ``head_classifier`` ships inside the package (``package:`` URL, checked
    against its pinned sha256 by the catalogue); any other name or path resolves like a detection
    model (path, imported name, pulled catalogue model).

    Raises:
        ModelError: Not found, or the packaged file does not match its checksum.
    """
    from safewatch.detect.catalogue import resolve

    return resolve(name_or_path, base_dir)


def load_head_classifier(
    name_or_path: str, base_dir: Path, *, thresholds: Mapping[str, float] | None = None
) -> HeadClassifier:
    """The head classifier a site's ``tracker.head_classifier`` names, loaded.

    Raises:
        ModelError: Not found or not a head classifier; the message starts with the setting,
            as a face detector's does (``privacy.faces: ...``), so a path alone does not leave
            the user to guess which part of the site file named it.
    """
    try:
        return HeadClassifier(head_classifier_file(name_or_path, base_dir), thresholds=thresholds)
    except ModelError as exc:
        raise ModelError(f"tracker.head_classifier: {exc}") from exc
