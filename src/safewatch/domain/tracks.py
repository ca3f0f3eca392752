"""Tracked objects: what the rule engine sees of a frame."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from safewatch.domain.detections import Detections

__all__ = ["FACE_HEAD", "PERSON", "PPEState", "Track", "TrackedFrame"]

FACE_HEAD = "face_head"
"""Detection label of a head box the tracker made from a face (``tracker.face_subjects``): a square
1.3 face widths wide from 0.6 face heights above the face. It is no head box to privacy (it
stops inside the face); :attr:`TrackedFrame.faces` carries the faces themselves."""


PERSON = "person"
"""The track label of people: the only tracks the tracker gives PPE states (a forklift a ``ppe``
rule also names never carries one, which is no "not verifiable" hard hat)."""


class PPEState(StrEnum):
    """Whether a tracked person wears one item, after temporal voting.

    ``UNKNOWN`` is a real answer, not an error: the head may be out of frame or too small. Rules
    treat it as "not proven absent" so a blurry frame does not raise a PPE incident.
    """

    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Track:
    """One object with a stable id across frames of one camera.

    Attributes:
        track_id: Tracker-assigned id, unique per camera for the life of the pipeline.
        label: Site-vocabulary label of the object (``person``, ``vehicle``, ``forklift``, ...).
        xyxy: Box in source-image pixels for this frame.
        confidence: Detection confidence of the box matched in this frame.
        attributes: PPE item (``hardhat``, ``vest``, ...) to its voted state; only for persons.
        attribute_confidence: PPE item to the confidence of the detection behind its state.
        ppe_only: A PPE subject rather than a person track: a person the detector scored only
            below the track-start threshold (``tracker.low_score_tracks``), a head box no person
            box took (``head_tracks``) or a face no person box held (``face_subjects``). They
            exist so such workers get a hard-hat verdict; the evidence behind them is too weak,
            or the box too unlike a body (a head whose "feet" are its chin), for zone, counting,
            distance, dwell, speed or line rules, which do not see them (PETS09 MOTA fell from
            0.761 to 0.572 when low-score tracks were ordinary person tracks), nor the PPE-checked
            share. PPE violation rules, evidence stills and privacy do see them.
    """

    track_id: int
    label: str
    xyxy: tuple[float, float, float, float]
    confidence: float
    attributes: Mapping[str, PPEState] = field(default_factory=dict)
    attribute_confidence: Mapping[str, float] = field(default_factory=dict)
    ppe_only: bool = False

    def __hash__(self) -> int:
        return hash((self.track_id, self.label, self.xyxy))

    @property
    def foot(self) -> tuple[float, float]:
        """Bottom-centre of the box: where a person stands on the floor."""
        x1, _, x2, y2 = self.xyxy
        return ((x1 + x2) / 2.0, y2)

    @property
    def centre(self) -> tuple[float, float]:
        """Centre of the box."""
        x1, y1, x2, y2 = self.xyxy
        return ((x1 + x2) / 2.0, (y1 + y2) / 2.0)


@dataclass(frozen=True, slots=True, eq=False)
class TrackedFrame:
    """The tracker's output for one frame: the rule engine's only input.

    It carries no pixels (only the frame size) so it can travel on a bus; the pipeline keeps the
    ``Frame`` beside it for evidence.

    Attributes:
        camera_id: The site file's camera key.
        seq: The frame's sequence number from the source.
        pts: Media time in seconds.
        timestamp: Wall-clock seconds since the epoch, from the frame clock.
        width: Frame width in pixels (rules use normalised coordinates).
        height: Frame height in pixels.
        tracks: Confirmed tracks in this frame.
        detections: All merged detections of the frame (PPE boxes included), for overlays.
        faces: Face boxes ``(x1, y1, x2, y2)`` the tracker's own face detector found outside
            every head box (``tracker.face_subjects``), so privacy hides exactly those faces;
            the :data:`FACE_HEAD` boxes made from them reach above the face and stop inside it.
    """

    camera_id: str
    seq: int
    pts: float
    timestamp: float
    width: int
    height: int
    tracks: tuple[Track, ...]
    detections: Detections = field(default_factory=Detections.empty)
    faces: tuple[tuple[float, float, float, float], ...] = ()
