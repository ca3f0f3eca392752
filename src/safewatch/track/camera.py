"""One camera's tracker: ByteTrack per object label, PPE voted onto person tracks.

Class awareness: one :class:`~safewatch.track.bytetrack.LabelTracker` per label rather than a single
tracker with label-gated association. The library's association sees only boxes, so gating would
mean patching its cost matrix; separate instances reuse it unchanged, make it impossible for a
person to take a forklift's id however much their boxes overlap, and cost nothing (a site has a
handful of labels). The price is that an object whose label flickers between frames starts a new
track; label maps that merge look-alike classes (car, truck, bus -> ``vehicle``) avoid that.
Library ids are per instance, so the camera hands out its own ids, unique across labels and modes.

Bounded state: per-label trackers are dropped once they hold no track, the id map and PPE votes are
pruned to the library's living tracks every frame, and the set of PPE items is limited by the label
vocabulary, so a 24/7 stream keeps only what is alive.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from safewatch.config.site import TrackerConfig
from safewatch.detect.nms import box_iou
from safewatch.domain import Detections, Frame, Image, PPEState, Track, TrackedFrame
from safewatch.domain.tracks import FACE_HEAD, PERSON
from safewatch.track.bytetrack import LabelTracker
from safewatch.track.clock import FrameClock
from safewatch.track.head_check import HeadVerifier
from safewatch.track.head_crops import head_from_person, square
from safewatch.track.heads import HeadModeSwitch, suppress_overlaps
from safewatch.track.ppe import (
    NEGATIVE_PREFIX,
    SAME_HEAD_IOU,
    Observation,
    PPEVocabulary,
    associate_ppe,
)
from safewatch.track.votes import PPEVotes

__all__ = [
    "FACE_HEAD",
    "HEAD_ITEM",
    "PERSON",
    "CameraTracker",
    "FaceFinder",
    "head_from_face",
    "head_regions",
]

HEAD_ITEM = "hardhat"
"""The item whose boxes (``x`` / ``no_x``) mark heads: head mode's persons, head-first subjects."""
_HEADS = "person[heads]"  # tracker key of head mode; its tracks are reported as persons
_LOW = "person[low]"  # tracker key of low-score person tracks (TrackerConfig.low_score_tracks)
_LONE = "person[lone-heads]"  # head boxes no person took (TrackerConfig.head_tracks)
_FACES = "person[faces]"  # heads found from faces no person or head box covers (face_finder)
_AS_PERSON = (_HEADS, _LOW, _LONE, _FACES)  # tracker keys whose tracks are reported as persons
_PPE_ONLY = (_LOW, _LONE, _FACES)  # ... of which only PPE rules see (Track.ppe_only)


class FaceFinder(Protocol):
    """Finds faces in a frame: ``(N, 5+)`` rows ``x1, y1, x2, y2, score`` in its pixels."""

    def detect(self, image: Image) -> NDArray[np.float32]:
        """The faces of ``image``."""
        ...


def _centres_inside(boxes: NDArray[np.floating], within: NDArray[np.floating]) -> NDArray[np.bool_]:
    """Per row of ``boxes``: whether its centre lies in any box of ``within``."""
    b = np.asarray(boxes, np.float64).reshape(len(boxes), -1)
    w = np.asarray(within, np.float64).reshape(-1, 4)
    if len(b) == 0 or len(w) == 0:
        return np.zeros(len(b), np.bool_)
    cx = ((b[:, 0] + b[:, 2]) / 2)[:, None]
    cy = ((b[:, 1] + b[:, 3]) / 2)[:, None]
    inside = (cx >= w[:, 0]) & (cx <= w[:, 2]) & (cy >= w[:, 1]) & (cy <= w[:, 3])
    return np.asarray(inside.any(axis=1), np.bool_)


def head_regions(persons: NDArray[np.floating]) -> NDArray[np.float64]:
    """Where ``(P, 4)`` person boxes' heads may be: the head classifier's crop around the head
    their geometry gives (:func:`~safewatch.track.head_crops.head_from_person`, grown by
    :data:`~safewatch.track.head_crops.CONTEXT`). A face whose head box is centred there is that
    person's (``tracker.face_cover: head``)."""
    return square(head_from_person(persons))


def head_from_face(faces: NDArray[np.floating]) -> NDArray[np.float64]:
    """Head boxes ``(N, 4)`` around ``(N, 4+)`` face boxes: a square 1.3 face widths (at least
    one face height) wide, from 0.6 face heights above the face box's top (forehead, hair or
    hat brim), so the head classifier sees what is on the head, not the face alone."""
    f = np.asarray(faces, np.float64)
    f = f.reshape(-1, f.shape[-1]) if f.size else np.zeros((0, 4))
    w = f[:, 2] - f[:, 0]
    h = f[:, 3] - f[:, 1]
    side = np.maximum(1.3 * w, h)
    cx = (f[:, 0] + f[:, 2]) / 2
    top = f[:, 1] - 0.6 * h
    return np.stack([cx - side / 2, top, cx + side / 2, top + side], axis=1)


class CameraTracker:
    """Track one camera's objects and attach voted PPE states to its people.

    Args:
        config: The site's tracker settings.
        camera_id: The camera this instance serves; frames of another camera are refused.
        frame_rate: The camera's nominal analysis fps; only sets the motion model's step, since
            lost-track limits are in seconds of the frame clock.
        track_heads: Head mode (see :mod:`safewatch.track.heads`): ``True`` tracks ``hardhat`` /
            ``no_hardhat`` boxes as persons, ``False`` never does, ``None`` decides from the
            detections with hysteresis (counting only head boxes that could start a head track).
            :func:`~safewatch.pipeline.stages.build_tracker` fixes it from the camera's models'
            labels where they are known.
        ppe_items: Items the camera's models can detect (``hardhat``, ``vest``, ...), reported on
            every person track. ``None``: the items seen so far on this camera.
        vocabulary: Which labels are PPE and where items are worn (built-in items by default);
            every ``no_x`` label seen adds its ``x`` (:meth:`PPEVocabulary.with_labels`).
            :func:`~safewatch.pipeline.stages.build_tracker` gives the camera's from its models'
            labels.
        head_item: The item whose boxes mark heads in head mode.
        head_config: Tracker settings for head mode; default ``config``. PPE models score small
            heads lower than person models score people (median 0.37 on the construction clip),
            so head mode usually wants lower ``high_confidence`` / ``activation_confidence``.
        head_verifier: Classifies each tracked person's head crop (hard hat / bare / hidden)
            and lets a confident answer stand as that frame's observation of its item (see
            :mod:`safewatch.track.head_check`); ``None`` trusts the PPE boxes alone.
        face_finder: Face-first PPE subjects (``tracker.face_subjects``): faces that no person
            or head box covers become head boxes (:func:`head_from_face`, label
            :data:`FACE_HEAD` in the returned detections) tracked as persons and verified by
            ``head_verifier``; one face detector run per frame.
    """

    def __init__(
        self,
        config: TrackerConfig,
        camera_id: str,
        *,
        frame_rate: float = 5.0,
        track_heads: bool | None = None,
        ppe_items: Iterable[str] | None = None,
        vocabulary: PPEVocabulary | None = None,
        head_item: str = HEAD_ITEM,
        head_config: TrackerConfig | None = None,
        head_verifier: HeadVerifier | None = None,
        face_finder: FaceFinder | None = None,
    ) -> None:
        if frame_rate <= 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
        self._config = config
        self._head_config = head_config or config
        self._camera_id = camera_id
        self._frame_rate = frame_rate
        self._vocabulary = vocabulary or PPEVocabulary()
        self._head_labels = (head_item, NEGATIVE_PREFIX + head_item)
        self._head_item = head_item
        self._fixed_items = ppe_items is not None
        self._items: set[str] = set(ppe_items or ())
        self._heads = HeadModeSwitch(track_heads)
        self._head_start = max(
            self._head_config.activation_confidence, self._head_config.high_confidence
        )
        self._clock = FrameClock()
        self._frame_size = (0, 0)  # (width, height) of the frame being tracked
        self._trackers: dict[str, LabelTracker] = {}
        self._ids: dict[tuple[str, int], int] = {}
        self._next_id = 1
        self._votes = PPEVotes(config.ppe_window)
        self._verifier = head_verifier
        self._faces = face_finder if head_verifier is not None else None
        if head_verifier is not None:
            self._items.add(head_verifier.item)

    @property
    def camera_id(self) -> str:
        """The camera this tracker serves."""
        return self._camera_id

    @property
    def head_mode(self) -> bool:
        """Whether the last frame was tracked in head mode."""
        return self._heads.active

    @property
    def state_size(self) -> int:
        """Entries of per-track state held now (ids, vote histories, label trackers).

        Exported as a gauge; it follows the number of living tracks, not the stream's length.
        """
        return len(self._ids) + len(self._votes) + len(self._trackers)

    def update(self, detections: Detections, frame: Frame) -> TrackedFrame:
        """Track one frame.

        Args:
            detections: The frame's merged detections (objects and PPE); not modified.
            frame: The frame they came from; only its clock and size are read.

        Returns:
            The confirmed tracks matched in this frame, ordered by id, with the input detections
            attached for overlays.
        """
        if frame.camera_id != self._camera_id:
            raise ValueError(
                f"tracker of camera {self._camera_id!r} got a frame of camera {frame.camera_id!r}"
            )
        clock = self._clock(frame)
        self._frame_size = (frame.width, frame.height)
        faces: tuple[tuple[float, float, float, float], ...] = ()
        if self._faces is not None and not self._heads.active:
            detections, faces = self._with_face_heads(detections, frame)
        labels = [str(x) for x in detections.label]
        # A model whose classes only its file knows may say ``no_helmet``: from then on its
        # ``helmet`` boxes are worn, not objects (the site's labels say it from the first frame).
        self._vocabulary = self._vocabulary.with_labels(labels)
        ppe_rows = self._vocabulary.ppe_mask(detections.label)
        if not self._fixed_items:
            self._learn_items(labels, ppe_rows)
        head_rows = np.flatnonzero(np.isin(detections.label, self._head_labels))
        # Only a head box that could start a head track is evidence of a camera without a person
        # model: the example keeps bare-head boxes from 0.1, and a few weak ones must not switch.
        strong_heads = bool((detections.confidence[head_rows] >= self._head_start).any())
        head_mode = self._heads.update(PERSON in labels, strong_heads)
        self._trackers.pop(PERSON if head_mode else _HEADS, None)
        if head_mode:
            self._trackers.pop(_LOW, None)
            self._trackers.pop(_LONE, None)
            self._trackers.pop(_FACES, None)

        groups = self._groups(detections, labels, ppe_rows, head_rows, head_mode)
        matched: dict[int, tuple[str, int]] = {}  # input row -> (tracker key, camera id)
        for key in sorted((set(groups) | set(self._trackers)) - {_LOW, _LONE, _FACES}):
            rows = groups.get(key, np.zeros(0, np.intp))
            tracker = self._trackers.get(key)
            if tracker is None:
                settings = self._head_config if key == _HEADS else self._config
                tracker = self._trackers[key] = LabelTracker(settings, self._frame_rate)
            local, lib_ids = tracker.update(
                detections.xyxy[rows], detections.confidence[rows], clock, self._frame_size
            )
            for row, lib_id in zip(rows[local], lib_ids, strict=True):
                matched[int(row)] = (key, self._camera_id_of(key, int(lib_id)))
        if self._config.low_score_tracks is not None and not head_mode:
            self._track_low(detections, groups.get(PERSON), matched, clock)
        if self._config.head_tracks is not None and not head_mode:
            self._track_lone_heads(detections, ppe_rows, head_rows, matched, clock)
        if self._faces is not None and not head_mode:
            self._track_face_heads(detections, matched, clock)
        self._prune()

        self._observe(detections, ppe_rows, matched, head_mode, frame)
        tracks = [
            self._track(detections, row, key, track_id) for row, (key, track_id) in matched.items()
        ]
        tracks.sort(key=lambda t: t.track_id)
        return TrackedFrame(
            camera_id=self._camera_id,
            seq=frame.seq,
            pts=frame.pts,
            timestamp=frame.timestamp,
            width=frame.width,
            height=frame.height,
            tracks=tuple(tracks),
            detections=detections,
            faces=faces,
        )

    def _track_low(
        self,
        detections: Detections,
        persons: NDArray[np.intp] | None,
        matched: dict[int, tuple[str, int]],
        clock: float,
    ) -> None:
        """Track the weak person boxes the main tracker left alone, so they get PPE verdicts.

        ByteTrack starts tracks only from strong boxes (``activation_confidence``); a worker the
        detector scores at 0.3-0.55 in every frame (small, half hidden, in a crowd) never gets
        one, so never a verdict. Rows below the start threshold that no main track took feed a
        second tracker that starts from ``low_score_tracks`` and needs one more frame to confirm.
        A row is only ever given to one tracker, so one person is never reported twice in a frame.
        """
        start = max(self._config.activation_confidence, self._config.high_confidence)
        rows = np.zeros(0, np.intp) if persons is None else persons
        rows = rows[
            np.asarray([int(r) not in matched for r in rows], np.bool_).reshape(-1)
            & (detections.confidence[rows] < start)
        ]
        tracker = self._trackers.get(_LOW)
        if tracker is None:
            if rows.size == 0:
                return
            low = self._config.low_score_tracks
            settings = self._config.model_copy(
                update={
                    "activation_confidence": low,
                    "high_confidence": low,
                    "min_frames": self._config.min_frames + 1,
                }
            )
            tracker = self._trackers[_LOW] = LabelTracker(settings, self._frame_rate)
        local, lib_ids = tracker.update(
            detections.xyxy[rows], detections.confidence[rows], clock, self._frame_size
        )
        for row, lib_id in zip(rows[local], lib_ids, strict=True):
            matched[int(row)] = (_LOW, self._camera_id_of(_LOW, int(lib_id)))

    def _track_lone_heads(
        self,
        detections: Detections,
        ppe_rows: NDArray[np.bool_],
        head_rows: NDArray[np.intp],
        matched: dict[int, tuple[str, int]],
        clock: float,
    ) -> None:
        """Track the head boxes no person box takes, as persons of their own (head-first).

        On the evaluation photos a fifth of the workers are never detected by the person model
        and more only below the track-start score, while the PPE model still boxes their head.
        Such a head (after the PPE association has given every person detection its head, so a
        head is never a second subject of a detected person) feeds a tracker that starts from
        ``head_tracks``, as in head mode; overlapping hat and bare boxes on one head count once.
        """
        rows = np.zeros(0, np.intp)
        if head_rows.size:
            person_rows = np.flatnonzero(detections.label == PERSON)
            ppe_index = np.cumsum(ppe_rows) - 1  # input row -> row of detections[ppe_rows]
            taken: set[int] = set()
            if person_rows.size:
                found = associate_ppe(
                    detections.xyxy[person_rows], detections[ppe_rows], self._vocabulary
                )
                taken = {hit.index for seen in found for hit in seen.values()}
            lone = np.asarray([int(ppe_index[r]) not in taken for r in head_rows], np.bool_)
            if taken and lone.any():
                # A second box on a head a person already took (the other model's, or a bare
                # box under a hat box) is that person's head again, not a subject of its own.
                held = detections[ppe_rows].xyxy[sorted(taken)]
                lone &= box_iou(detections.xyxy[head_rows], held).max(axis=1) <= SAME_HEAD_IOU
            rows = head_rows[lone]
            if rows.size:
                keep = suppress_overlaps(detections.xyxy[rows], detections.confidence[rows])
                rows = np.sort(rows[keep])
        tracker = self._trackers.get(_LONE)
        if tracker is None:
            if rows.size == 0:
                return
            start = self._config.head_tracks
            settings = self._config.model_copy(
                update={"activation_confidence": start, "high_confidence": start}
            )
            tracker = self._trackers[_LONE] = LabelTracker(settings, self._frame_rate)
        local, lib_ids = tracker.update(
            detections.xyxy[rows], detections.confidence[rows], clock, self._frame_size
        )
        for row, lib_id in zip(rows[local], lib_ids, strict=True):
            matched[int(row)] = (_LONE, self._camera_id_of(_LONE, int(lib_id)))

    def _with_face_heads(
        self, detections: Detections, frame: Frame
    ) -> tuple[Detections, tuple[tuple[float, float, float, float], ...]]:
        """``detections`` plus a :data:`FACE_HEAD` row per face whose centre no head box of this
        frame contains (a head box is a subject of its own, or its wearer's), and those faces'
        own boxes (for privacy: :attr:`~safewatch.domain.tracks.TrackedFrame.faces`)."""
        assert self._faces is not None
        faces = np.asarray(self._faces.detect(frame.image), np.float64)
        if faces.size == 0:
            return detections, ()
        faces = faces.reshape(-1, faces.shape[-1])
        if self._config.face_min_score is not None:
            faces = faces[faces[:, 4] >= self._config.face_min_score]
            if len(faces) == 0:
                return detections, ()
        found = detections.xyxy[np.isin(detections.label, self._head_labels)]
        free = faces[~_centres_inside(faces, found)]
        if len(free) == 0:
            return detections, ()
        boxes = tuple((float(f[0]), float(f[1]), float(f[2]), float(f[3])) for f in free)
        heads = head_from_face(free)
        heads[:, [0, 2]] = np.clip(heads[:, [0, 2]], 0, frame.width)
        heads[:, [1, 3]] = np.clip(heads[:, [1, 3]], 0, frame.height)
        extra = Detections(
            heads.astype(np.float32),
            free[:, 4].astype(np.float32),
            np.array([FACE_HEAD] * len(free), dtype=np.str_),
        )
        return Detections.merge([detections, extra]), boxes

    def _track_face_heads(
        self, detections: Detections, matched: dict[int, tuple[str, int]], clock: float
    ) -> None:
        """Track the :data:`FACE_HEAD` rows no tracked person holds as persons (their tracker
        starts from any face the face detector kept: its own score threshold is the start).

        "Holds": the face's head box is centred in the tracked person's box
        (``face_cover: person``) or only in its head region (``face_cover: head``, see
        :func:`head_regions`; a head-first track's region is its own box), so that in a crowd
        the faces behind a near worker's box are subjects too. A face inside an *untracked*
        person box (one detected below the track start) is tracked: that person has no other
        subject."""
        rows = np.flatnonzero(detections.label == FACE_HEAD)
        taken = [row for row, (key, _) in matched.items() if key in (PERSON, _LOW, _LONE)]
        if rows.size and taken:
            regions = detections.xyxy[taken].astype(np.float64)
            if self._config.face_cover == "head":
                persons = [i for i, row in enumerate(taken) if matched[row][0] != _LONE]
                regions[persons] = head_regions(regions[persons])
            rows = rows[~_centres_inside(detections.xyxy[rows], regions)]
        tracker = self._trackers.get(_FACES)
        if tracker is None:
            if rows.size == 0:
                return
            settings = self._config.model_copy(
                update={"activation_confidence": 0.0, "high_confidence": 0.0}
            )
            tracker = self._trackers[_FACES] = LabelTracker(settings, self._frame_rate)
        local, lib_ids = tracker.update(
            detections.xyxy[rows], detections.confidence[rows], clock, self._frame_size
        )
        for row, lib_id in zip(rows[local], lib_ids, strict=True):
            matched[int(row)] = (_FACES, self._camera_id_of(_FACES, int(lib_id)))

    def _learn_items(self, labels: list[str], ppe_rows: NDArray[np.bool_]) -> None:
        for row in np.flatnonzero(ppe_rows):
            parsed = self._vocabulary.item_of(labels[row])
            if parsed is not None:
                self._items.add(parsed[0])

    def _groups(
        self,
        detections: Detections,
        labels: list[str],
        ppe_rows: NDArray[np.bool_],
        head_rows: NDArray[np.intp],
        head_mode: bool,
    ) -> dict[str, NDArray[np.intp]]:
        """Input rows per tracker key: each object label, or the deduplicated heads."""
        groups: dict[str, list[int]] = {}
        for row in np.flatnonzero(~ppe_rows):
            label = labels[row]
            if head_mode and label == PERSON:
                continue  # a stray person box (e.g. a PPE model's weak Person class)
            if label == FACE_HEAD:
                continue  # tracked by _track_face_heads
            groups.setdefault(label, []).append(int(row))
        result = {k: np.asarray(v, dtype=np.intp) for k, v in groups.items()}
        if head_mode and head_rows.size:
            keep = suppress_overlaps(
                detections.xyxy[head_rows], detections.confidence[head_rows], iou=0.5
            )
            result[_HEADS] = np.sort(head_rows[keep])
        return result

    def _camera_id_of(self, key: str, lib_id: int) -> int:
        track_id = self._ids.get((key, lib_id))
        if track_id is None:
            track_id = self._ids[(key, lib_id)] = self._next_id
            self._next_id += 1
        return track_id

    def _prune(self) -> None:
        """Drop state of dead tracks and of label trackers with nothing alive."""
        alive = {key: tracker.alive_ids() for key, tracker in self._trackers.items()}
        for key in [k for k, t in self._trackers.items() if t.idle]:
            del self._trackers[key]
        for key_id in [k for k in self._ids if k[1] not in alive.get(k[0], ())]:
            del self._ids[key_id]
        self._votes.retain(self._ids.values())

    def _observe(
        self,
        detections: Detections,
        ppe_rows: NDArray[np.bool_],
        matched: dict[int, tuple[str, int]],
        head_mode: bool,
        frame: Frame,
    ) -> None:
        """Record this frame's PPE observations of every matched person track."""
        if head_mode:
            for row, (key, track_id) in matched.items():
                if key != _HEADS:
                    continue
                parsed = self._vocabulary.item_of(str(detections.label[row]))
                seen: dict[str, Observation] = {}
                if parsed is not None:
                    seen[parsed[0]] = Observation(parsed[1], float(detections.confidence[row]), row)
                self._votes.observe(track_id, sorted(self._items), seen)
            return
        self._observe_lone_heads(detections, ppe_rows, matched, frame)
        self._observe_face_heads(detections, matched, frame)
        person_rows = np.flatnonzero(detections.label == PERSON)
        if person_rows.size == 0:
            return
        ppe = detections[ppe_rows]
        found = associate_ppe(detections.xyxy[person_rows], ppe, self._vocabulary)
        if self._verifier is not None:
            # Only tracked persons: their votes are the only ones read.
            tracked = [i for i, row in enumerate(person_rows) if int(row) in matched]
            verified = self._verifier.observe(
                frame.image,
                detections.xyxy[person_rows[tracked]],
                [found[i] for i in tracked],
                ppe,
            )
            for i, seen in zip(tracked, verified, strict=True):
                found[i] = seen
        for person_row, seen in zip(person_rows, found, strict=True):
            hit = matched.get(int(person_row))
            if hit is not None:
                self._votes.observe(hit[1], sorted(self._items), seen)

    def _observe_lone_heads(
        self,
        detections: Detections,
        ppe_rows: NDArray[np.bool_],
        matched: dict[int, tuple[str, int]],
        frame: Frame,
    ) -> None:
        """Observations of head-first tracks: their own box's label, then head verification on
        the box itself (the verifier crops a PPE box it is given by index, as for persons)."""
        lone = [(row, track_id) for row, (key, track_id) in matched.items() if key == _LONE]
        if not lone:
            return
        ppe = detections[ppe_rows]
        ppe_index = np.cumsum(ppe_rows) - 1
        seen_all: list[dict[str, Observation]] = []
        for row, _ in lone:
            seen: dict[str, Observation] = {}
            parsed = self._vocabulary.item_of(str(detections.label[row]))
            if parsed is not None:
                confidence = float(detections.confidence[row])
                seen[parsed[0]] = Observation(parsed[1], confidence, int(ppe_index[row]))
            seen_all.append(seen)
        if self._verifier is not None:
            boxes = detections.xyxy[[row for row, _ in lone]]
            seen_all = self._verifier.observe(frame.image, boxes, seen_all, ppe)
        for (_, track_id), seen in zip(lone, seen_all, strict=True):
            self._votes.observe(track_id, sorted(self._items), seen)

    def _observe_face_heads(
        self, detections: Detections, matched: dict[int, tuple[str, int]], frame: Frame
    ) -> None:
        """Face-first tracks: the head classifier on their head box is their only evidence."""
        faces = [(row, track_id) for row, (key, track_id) in matched.items() if key == _FACES]
        if not faces or self._verifier is None:
            return
        heads = detections.xyxy[[row for row, _ in faces]]
        thresholds = {str(k): v for k, v in self._config.face_thresholds.items()}
        seen = self._verifier.observe_heads(frame.image, heads, [{} for _ in faces], thresholds)
        for (_, track_id), observed in zip(faces, seen, strict=True):
            self._votes.observe(track_id, sorted(self._items), observed)

    def _track(
        self,
        detections: Detections,
        row: int,
        key: str,
        track_id: int,
    ) -> Track:
        label = PERSON if key in _AS_PERSON else key
        attributes: dict[str, PPEState] = {}
        confidence: dict[str, float] = {}
        if label == PERSON:
            for item in sorted(self._items):
                attributes[item], confidence[item] = self._votes.state(track_id, item)
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[row])
        return Track(
            track_id=track_id,
            label=label,
            xyxy=(x1, y1, x2, y2),
            confidence=float(detections.confidence[row]),
            attributes=attributes,
            attribute_confidence=confidence,
            ppe_only=key in _PPE_ONLY,
        )
