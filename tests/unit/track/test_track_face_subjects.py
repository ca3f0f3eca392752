"""Face-first PPE subjects: a face no person or head box covers becomes a tracked person whose
head the head classifier checks, on real evaluation photos (evaluation only, nothing tuned)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from assets import asset
from safewatch.config.site import TrackerConfig
from safewatch.detect.catalogue import resolve
from safewatch.domain import Detections, Frame, PPEState
from safewatch.incidents.faces import FaceDetector
from safewatch.track import CameraTracker
from safewatch.track.camera import FACE_HEAD, head_from_face
from safewatch.track.head_check import HeadClassifier, HeadVerifier

PHOTO = "images/hard_hat_workers/images/hard_hat_workers101.png"


def _tracker(faces: FaceDetector | None) -> CameraTracker:
    verifier = HeadVerifier(HeadClassifier(resolve("head_classifier", Path.cwd())))
    return CameraTracker(
        TrackerConfig(), "cam", ppe_items={"hardhat"}, head_verifier=verifier, face_finder=faces
    )


def test_bare_heads_nobody_detected_get_a_verdict_from_their_faces() -> None:
    image = cv2.imread(str(asset(PHOTO)))
    assert image is not None
    faces = FaceDetector(asset("models/face_detection_yunet_2023mar.onnx"))
    found = faces.detect(image)
    # One detected worker: the face inside his box is his, not a second subject.
    x1, y1, x2, y2 = (float(v) for v in found[0, :4])
    person = (x1 - 5, y1 - 10, x2 + 5, y2 + 200)
    detections = Detections(
        np.array([person], np.float32), np.array([0.9], np.float32), np.array(["person"])
    )
    tracker = _tracker(faces)
    for seq in range(7):
        out = tracker.update(detections, Frame("cam", seq, seq / 5, seq / 5, image))
    subjects = [t for t in out.tracks if t.label == "person"]
    face_rows = out.detections.label == FACE_HEAD
    # Every face becomes a head box; the one in the tracked worker's box is no subject of its own.
    assert int(face_rows.sum()) == len(found)
    np.testing.assert_allclose(
        out.detections.xyxy[face_rows][1:], head_from_face(found[1:]), atol=0.01
    )
    assert len(subjects) == len(found)  # the worker and one per other face
    # The labelled photo's heads are bare: the classifier calls most of them absent, none present.
    states = [t.attributes["hardhat"] for t in subjects if t.xyxy != person]
    assert states.count(PPEState.ABSENT) >= len(states) // 2
    assert PPEState.PRESENT not in states
    # Without a face finder the same frames have one subject only.
    plain = _tracker(None)
    for seq in range(7):
        again = plain.update(detections, Frame("cam", seq, seq / 5, seq / 5, image))
    assert len(again.tracks) == 1 and again.detections is detections
