"""Head verification with the shipped classifier, on real labelled photos.

The evaluation photos are never used to train or tune the classifier; here they only check that
the packaged model loads with its pinned checksum, reads crops the way it was trained, and that
its confident answers on labelled heads are mostly right.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from assets import asset
from safewatch.config.site import TrackerConfig
from safewatch.detect.catalogue import catalogue
from safewatch.domain import Detections, Frame, PPEState
from safewatch.errors import ModelError
from safewatch.track import CameraTracker
from safewatch.track.head_check import (
    VERIFIED_INDEX,
    HeadClassifier,
    HeadVerifier,
    head_classifier_file,
)
from safewatch.track.ppe import Observation

CLASSES = {0: "hardhat", 2: "bare"}


@pytest.fixture(scope="module")
def classifier() -> HeadClassifier:
    return HeadClassifier(head_classifier_file("head_classifier", Path(".")))


def _labelled(stem: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    image = cv2.imread(str(asset(f"images/hard_hat_workers/images/{stem}.png")))
    assert image is not None
    height, width = image.shape[:2]
    rows = np.loadtxt(asset(f"images/hard_hat_workers/labels/{stem}.txt"), ndmin=2)
    rows = rows[np.isin(rows[:, 0], list(CLASSES))]
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return image, boxes, [CLASSES[int(c)] for c in rows[:, 0]]


def test_packaged_model_loads_with_its_metadata(classifier: HeadClassifier) -> None:
    assert classifier.classes == ("hardhat", "bare", "not_visible")
    assert classifier.size == catalogue()["head_classifier"].input_size, "catalogue and model agree"
    assert 0.5 <= classifier.thresholds["bare"] <= 1.0
    assert 0.5 <= classifier.thresholds["hardhat"] <= 1.0


def test_unknown_name_is_a_model_error() -> None:
    with pytest.raises(ModelError):
        head_classifier_file("no_such_head_model", Path("."))


def test_confident_answers_on_labelled_heads_are_mostly_right(
    classifier: HeadClassifier,
) -> None:
    stems = sorted(p.stem for p in asset("images/hard_hat_workers/images").glob("*.png"))[:60]
    right = wrong = 0
    for stem in stems:
        image, boxes, truth = _labelled(stem)
        big = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= 12
        answers = classifier.verdicts(classifier.classify(image, boxes[big]))
        for answer, label in zip(
            answers, [t for t, b in zip(truth, big, strict=True) if b], strict=True
        ):
            if answer is None:
                continue
            expected = PPEState.PRESENT if label == "hardhat" else PPEState.ABSENT
            right += answer[0] is expected
            wrong += answer[0] is not expected
    assert right + wrong >= 100, "too few confident answers to judge"
    assert right / (right + wrong) >= 0.9, f"{right} right, {wrong} wrong"


def test_verifier_replaces_only_the_item_it_is_sure_of(classifier: HeadClassifier) -> None:
    image, boxes, _ = _labelled("hard_hat_workers101")
    # A person box under each labelled head, as a person detector would draw it.
    heads = boxes[:2]
    w = heads[:, 2] - heads[:, 0]
    persons = np.stack(
        [heads[:, 0] - w, heads[:, 1] - 0.1 * w, heads[:, 2] + w, heads[:, 3] + 5 * w], axis=1
    )
    vest = Observation(PPEState.PRESENT, 0.8, 0)
    ppe = Detections(
        xyxy=np.zeros((1, 4), np.float32),
        confidence=np.array([0.8], np.float32),
        label=np.array(["vest"], np.str_),
    )
    out = HeadVerifier(classifier).observe(image, persons, [{"vest": vest}, {}], ppe)
    assert out[0]["vest"] is vest, "other items are left as they were"
    for seen in out:
        hit = seen.get("hardhat")
        assert hit is None or hit.index == VERIFIED_INDEX


def test_tracker_reports_a_bare_head_the_ppe_boxes_never_saw(classifier: HeadClassifier) -> None:
    """A person box alone (no PPE detections at all) gets a hard-hat verdict from the crop."""
    stems = sorted(p.stem for p in asset("images/hard_hat_workers/images").glob("*.png"))
    for stem in stems:
        image, boxes, truth = _labelled(stem)
        sizes = boxes[:, 3] - boxes[:, 1]
        bare = [i for i, t in enumerate(truth) if t == "bare" and sizes[i] >= 40]
        if len(bare) == 1 and len(truth) == 1:
            break
    else:
        pytest.skip("no photo with one large bare head")
    (head,) = boxes[bare]
    w = head[2] - head[0]
    person = np.array([[head[0] - w, head[1] - 0.1 * w, head[2] + w, head[3] + 5 * w]], np.float32)
    detections = Detections(
        xyxy=person, confidence=np.array([0.9], np.float32), label=np.array(["person"], np.str_)
    )
    tracker = CameraTracker(
        TrackerConfig(), "cam", ppe_items={"hardhat"}, head_verifier=HeadVerifier(classifier)
    )
    states = []
    for seq in range(7):
        tracked = tracker.update(detections, Frame("cam", seq, seq / 5, seq / 5, image))
        states += [t.attributes["hardhat"] for t in tracked.tracks]
    assert states and states[-1] is PPEState.ABSENT, f"{stem}: {states}"
