"""Face-first PPE subjects: a face no person or head box covers becomes a tracked person whose
head the head classifier checks, on real evaluation photos (evaluation only, nothing tuned)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from assets import asset
from safewatch.config.site import TrackerConfig
from safewatch.detect.catalogue import resolve
from safewatch.domain import Detections, Frame, PPEState, TrackedFrame
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
    # The faces themselves travel with the frame, for privacy to hide (their head boxes stop
    # inside them), and the subjects made from them are PPE-only.
    np.testing.assert_allclose(np.asarray(out.faces), found[:, :4], atol=0.01)
    assert [t.ppe_only for t in subjects].count(True) == len(found) - 1
    # The labelled photo's heads are bare: the classifier calls most of them absent, none present.
    states = [t.attributes["hardhat"] for t in subjects if t.xyxy != person]
    assert states.count(PPEState.ABSENT) >= len(states) // 2
    assert PPEState.PRESENT not in states
    # Without a face finder the same frames have one subject only.
    plain = _tracker(None)
    for seq in range(7):
        again = plain.update(detections, Frame("cam", seq, seq / 5, seq / 5, image))
    assert len(again.tracks) == 1 and again.detections is detections and again.faces == ()


class _Faces:
    """A face finder that reports the same faces in every frame (rows x1, y1, x2, y2, score)."""

    def __init__(self, faces: list[tuple[float, float, float, float, float]]) -> None:
        self.faces = np.array(faces, np.float32).reshape(-1, 5)

    def detect(self, image: np.ndarray) -> np.ndarray:
        return self.faces


def _run(tracker: CameraTracker, detections: Detections, image: np.ndarray) -> TrackedFrame:
    out = None
    for seq in range(7):
        out = tracker.update(detections, Frame("cam", seq, seq / 5, seq / 5, image))
    assert out is not None
    return out


def _configured(faces: _Faces, **settings: object) -> CameraTracker:
    verifier = HeadVerifier(HeadClassifier(resolve("head_classifier", Path.cwd())))
    return CameraTracker(
        # (the face finder and the verifier are passed in; the config names them as a site would)
        TrackerConfig.model_validate(
            {"face_subjects": "yunet", "head_classifier": "head_classifier", **settings}
        ),
        "cam",
        ppe_items={"hardhat"},
        head_verifier=verifier,
        face_finder=faces,
    )


def test_faces_below_the_minimum_score_are_not_subjects() -> None:
    image = np.full((480, 640, 3), 128, np.uint8)
    faces = _Faces([(100, 100, 140, 150, 0.4), (300, 100, 340, 150, 0.8)])
    none = Detections.empty()
    assert int((_run(_configured(faces), none, image).detections.label == FACE_HEAD).sum()) == 2
    kept = _run(_configured(faces, face_min_score=0.5), none, image).detections
    np.testing.assert_allclose(kept.confidence[kept.label == FACE_HEAD], [0.8])
    # Every face below it: the frame's detections come back as they were.
    out = _run(_configured(faces, face_min_score=0.9), none, image)
    assert len(out.detections) == 0 and out.tracks == ()


def test_face_cover_head_makes_faces_behind_a_near_workers_box_subjects() -> None:
    image = np.full((900, 640, 3), 128, np.uint8)
    person = Detections(
        np.array([[100, 50, 500, 850]], np.float32),
        np.array([0.9], np.float32),
        np.array(["person"]),
    )
    # The worker's own face at the top of the box, and a face in the crowd behind his body.
    faces = _Faces([(270, 70, 330, 150, 0.9), (200, 500, 240, 550, 0.9)])
    plain = _run(_configured(faces), person, image)
    assert [t.xyxy for t in plain.tracks] == [(100.0, 50.0, 500.0, 850.0)]
    crowd = _run(_configured(faces, face_cover="head"), person, image)
    heads = [t.xyxy for t in crowd.tracks if t.xyxy != (100.0, 50.0, 500.0, 850.0)]
    assert len(crowd.tracks) == 2 and len(heads) == 1
    np.testing.assert_allclose(heads[0], head_from_face(faces.faces[1:])[0], atol=0.01)


def test_face_thresholds_hold_back_calls_on_face_only_subjects() -> None:
    image = cv2.imread(str(asset(PHOTO)))
    assert image is not None
    faces = FaceDetector(asset("models/face_detection_yunet_2023mar.onnx"))
    none = Detections.empty()
    states = [t.attributes["hardhat"] for t in _run(_configured(faces), none, image).tracks]
    assert PPEState.ABSENT in states, "the photo's bare heads are called bare by default"
    strict = _run(_configured(faces, face_thresholds={"bare": 1.0}), none, image)
    assert len(strict.tracks) == len(states)
    assert PPEState.ABSENT not in [t.attributes["hardhat"] for t in strict.tracks]
