"""Hide the heads of the people filmed: blur or pixelate, from person and PPE boxes.

Evidence is looked at by people who need to see *what* happened, not *who* it happened to, so every
still, clip and annotated video hides heads unless a site or camera turns it off. Head regions come
from what the pipeline already found, with no face detector to run:

- a head box (``no_hardhat``, ``head``) covers the head as it is;
- a hat box (``hardhat``, ``helmet``) covers the top of the head only, so the region reaches down
  by :data:`FACE_BELOW_HAT` hat heights to include the face; it starts below the top
  :data:`HAT_SHOWN` of the hat box and never grows above that line, so the hard hat itself stays
  visible and whoever reviews a PPE incident can check the verdict;
- a person with neither gets the top ``head_fraction`` of its box, across its full width (the head
  of a leaning or turning person is not always centred; hiding a shoulder is the safer error).
- a face the tracker's own face detector found for a face subject (``tracker.face_subjects``,
  carried as ``TrackedFrame.faces``) is hidden as :func:`face_regions` hides a face, and that
  subject's head box (made from the face) gets no region of its own, so its hat stays visible.

Every region is grown by ``margin`` per side. Tracked people and raw person detections are both
used, so someone the tracker has not confirmed yet is hidden too. Work is proportional to the region
sizes (a few small rectangles per frame), so it can run on the analysis thread for stills.

People no detector found have no box to hide. With ``privacy.faces`` set (e.g. ``yunet``), a face
detector (:mod:`safewatch.incidents.faces`) also runs on the frame being hidden and every face it
finds is hidden as well, grown by ``margin`` but never above the visible dome of the hat box on
it, so a hard hat stays checkable (and never from below the face's upper third: see
:func:`face_regions`). It costs one 640x640 run (about 18 ms of CPU) per evidence still
or clip frame; the live view, which hides every pushed frame, skips it (``faces=False``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from safewatch.config.site import PrivacyConfig, PrivacyMode
from safewatch.detect.nms import box_iou
from safewatch.domain import Image, Track, TrackedFrame
from safewatch.domain.tracks import FACE_HEAD
from safewatch.incidents.faces import face_detector

__all__ = [
    "FACE_BELOW_HAT",
    "HAT_SHOWN",
    "Box",
    "anonymise",
    "anonymise_heads",
    "face_regions",
    "head_regions",
]

Box = tuple[int, int, int, int]
"""``(x1, y1, x2, y2)`` in whole pixels, ``x2``/``y2`` exclusive."""

FACE_BELOW_HAT = 1.5
"""How far below a hat box the face reaches, in hat heights (a hard hat is about half a head)."""

HAT_SHOWN = 0.6
"""Top share of a hat box left unhidden: the dome of the hat, above the brim and the face."""

_PIXEL_BLOCKS = 6
"""Blocks across the shorter side of a pixelated region, at most: a shape, never a face."""


def _person_boxes(tracked: TrackedFrame) -> list[tuple[float, float, float, float]]:
    """Boxes of people: person tracks and person detections. A face subject's track (its box is
    a :data:`~safewatch.domain.tracks.FACE_HEAD` box) is left out: its face is hidden from
    :attr:`TrackedFrame.faces <safewatch.domain.tracks.TrackedFrame.faces>` itself, and the top of
    its box is the hair or hat, which stays visible."""
    det = tracked.detections
    face_heads = np.asarray(det.xyxy[det.label == FACE_HEAD], np.float64).reshape(-1, 4)

    def face_subject(track: Track) -> bool:
        if not track.ppe_only or len(face_heads) == 0:  # the usual case: no array work
            return False
        box = np.asarray(track.xyxy, np.float64)
        return bool(np.any(np.all(np.abs(face_heads - box) <= 0.5, axis=1)))

    boxes = [t.xyxy for t in tracked.tracks if t.label == "person" and not face_subject(t)]
    boxes += [
        (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        for b, label in zip(det.xyxy, det.label, strict=True)
        if str(label) == "person"
    ]
    return boxes


def _head_boxes(
    tracked: TrackedFrame, config: PrivacyConfig
) -> tuple[list[tuple[float, float, float, float]], list[tuple[float, float, float, float]]]:
    """Head and hat boxes as found, and the regions to hide for them (below a hat's dome)."""
    heads = set(config.head_labels)
    hats = set(config.hat_labels)
    found: list[tuple[float, float, float, float]] = []
    regions: list[tuple[float, float, float, float]] = []
    det = tracked.detections
    for box, label in zip(det.xyxy, det.label, strict=True):
        name = str(label)
        x1, y1, x2, y2 = (float(v) for v in box)
        if name in hats:
            height = y2 - y1
            regions.append((x1, y1 + HAT_SHOWN * height, x2, y2 + FACE_BELOW_HAT * height))
        elif name in heads:
            regions.append((x1, y1, x2, y2))
        else:
            continue
        found.append((x1, y1, x2, y2))
    return found, regions


def _fits(
    person: tuple[float, float, float, float], head: tuple[float, float, float, float]
) -> bool:
    """Whether a head box could be this person's: its top centre in the person box's upper
    half (or just above the box)."""
    px1, py1, px2, py2 = person
    hx1, hy1, hx2, _ = head
    cx = (hx1 + hx2) / 2.0
    return px1 <= cx <= px2 and py1 - (py2 - py1) * 0.1 <= hy1 <= py1 + (py2 - py1) / 2.0


def _with_heads(
    persons: Sequence[tuple[float, float, float, float]],
    heads: Sequence[tuple[float, float, float, float]],
) -> set[int]:
    """Indices of the persons a head box was found for, each head given to one person only:
    of those it fits (:func:`_fits`), the one whose box top is nearest the head's top.

    Any fitting head used to count, someone else's included: in a crowd, the head of a person
    standing behind another lies in the upper half of the front person's box, and the front
    person's own head, not detected, stayed visible in stills and clips. One person often has
    two boxes here (its track's and its detection's): a box that overlaps the chosen one by
    :data:`_SAME_PERSON` IoU or more is the same person and gets the head too.
    """
    owners: set[int] = set()
    for head in heads:
        fitting = [i for i, person in enumerate(persons) if _fits(person, head)]
        if fitting:
            best = min(fitting, key=lambda i: abs(head[1] - persons[i][1]))
            overlap = box_iou(np.asarray([persons[i] for i in fitting]), np.asarray(persons[best]))
            owners.update(
                i for i, iou in zip(fitting, overlap[:, 0], strict=True) if iou >= _SAME_PERSON
            )
    return owners


_SAME_PERSON = 0.7
"""IoU above which two person boxes are one person's (its track and its detection)."""


def _grow(
    box: tuple[float, float, float, float],
    margin: float,
    width: int,
    height: int,
    top: float = 0.0,
) -> Box:
    """``box`` grown by ``margin`` of its size per side, clipped to the frame and below ``top``."""
    x1, y1, x2, y2 = box
    dx = (x2 - x1) * margin
    dy = (y2 - y1) * margin
    return (
        max(0, int(np.floor(x1 - dx))),
        max(0, int(np.floor(y1 - dy)), int(np.ceil(top))),
        min(width, int(np.ceil(x2 + dx))),
        min(height, int(np.ceil(y2 + dy))),
    )


def head_regions(tracked: TrackedFrame, config: PrivacyConfig) -> list[Box]:
    """Regions to hide in a frame of ``tracked.width`` x ``tracked.height`` pixels.

    Returns:
        Non-empty boxes clipped to the frame; empty when privacy is off or nobody is in view.
    """
    if config.mode == "off":
        return []
    heads, hidden = _head_boxes(tracked, config)
    # Hat regions may not grow above the line that keeps the hat in view.
    tops = [r[1] if r != h else 0.0 for r, h in zip(hidden, heads, strict=True)]
    regions = list(hidden)
    persons = list(_person_boxes(tracked))
    with_heads = _with_heads(persons, heads)
    for index, person in enumerate(persons):
        if index not in with_heads:
            x1, y1, x2, y2 = person
            regions.append((x1, y1, x2, y1 + (y2 - y1) * config.head_fraction))
            tops.append(0.0)
    boxes = (
        _grow(r, config.margin, tracked.width, tracked.height, top)
        for r, top in zip(regions, tops, strict=True)
    )
    found = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
    if tracked.faces:  # the faces behind face subjects, found by the tracker's face detector
        found += face_regions(np.asarray(tracked.faces, np.float64), tracked, config)
    return found


def face_regions(
    faces: NDArray[np.floating], tracked: TrackedFrame, config: PrivacyConfig
) -> list[Box]:
    """Regions hiding ``(N, 4+)`` face boxes of a frame, each grown by ``margin``.

    A face under a hat box (the hat overlaps it horizontally and starts above its centre) is
    hidden only below the hat's visible dome, the line :func:`head_regions` keeps for the hat, but
    never from lower than the face's own top, unless the hat sits on this face (the face's centre
    within the hat's width, the hat's top at or above the face's): then never from lower than the
    face's upper third. Keeping hats in view is the goal, hiding faces the rule: any overlapping
    hat used to set the line, and a neighbour's hat beside the face put it near the chin, leaving
    the eyes and nose in view. (Hat boxes cover the hat and often the head below it, so a hat's
    bottom says nothing about whose it is.)
    """
    hats = set(config.hat_labels)
    det = tracked.detections
    domes = [
        (float(b[0]), float(b[2]), float(b[1]), float(b[1] + HAT_SHOWN * (b[3] - b[1])))
        for b, label in zip(det.xyxy, det.label, strict=True)
        if str(label) in hats
    ]
    out: list[Box] = []
    boxes = np.asarray(faces, np.float64)
    for face in boxes.reshape(-1, boxes.shape[-1]) if boxes.size else ():
        x1, y1, x2, y2 = (float(v) for v in face[:4])
        middle, centre, third = (x1 + x2) / 2.0, (y1 + y2) / 2.0, y1 + (y2 - y1) / 3.0
        top = max(
            (
                min(line, third if hx1 <= middle <= hx2 and hy1 <= y1 else y1)
                for hx1, hx2, hy1, line in domes
                if hx1 < x2 and hx2 > x1 and hy1 < centre
            ),
            default=0.0,
        )
        box = _grow((x1, y1, x2, y2), config.margin, tracked.width, tracked.height, top)
        if box[2] > box[0] and box[3] > box[1]:
            out.append(box)
    return out


def _odd(value: int) -> int:
    return value if value % 2 else value + 1


def _hide(roi: Image, mode: PrivacyMode) -> Image:
    height, width = roi.shape[:2]
    if mode == "pixelate":
        # At least 2 px a block, rounded up: ``side // 6`` gave 1 px blocks under 12 px, which
        # left a small face (a distant worker) exactly as it was.
        side = min(width, height)
        block = max(2, -(-side // _PIXEL_BLOCKS))
        small = cv2.resize(
            roi,
            (max(1, width // block), max(1, height // block)),
            interpolation=cv2.INTER_AREA,
        )
        return np.asarray(
            cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST), np.uint8
        )
    # A kernel as wide as the region leaves a smooth blob: no feature of a face survives, while
    # the colour of a hat or hair still shows. Stack blur approximates a Gaussian at a cost that
    # does not grow with the kernel (a Gaussian this wide took ~10 ms per head at 720p).
    kernel = _odd(max(3, width, height))
    return np.asarray(cv2.stackBlur(roi, (kernel, kernel)), np.uint8)


def anonymise(image: Image, regions: Iterable[Box], mode: PrivacyMode) -> Image:
    """Return a copy of ``image`` with each region blurred or pixelated (``image`` is untouched).

    Overlapping regions are hidden one after another, which only hides them more. Pixels outside
    every region are copied unchanged.
    """
    boxes = list(regions)
    if mode == "off" or not boxes:
        return image
    out: Image = np.array(image, dtype=np.uint8, copy=True, order="C")
    height, width = out.shape[:2]
    for box in boxes:
        x1, y1 = max(0, box[0]), max(0, box[1])
        x2, y2 = min(width, box[2]), min(height, box[3])
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] = _hide(out[y1:y2, x1:x2], mode)
    return out


def anonymise_heads(
    image: Image, tracked: TrackedFrame, config: PrivacyConfig, *, faces: bool = True
) -> Image:
    """Hide every head :func:`head_regions` finds in ``tracked``, and every face the site's face
    detector finds in ``image`` (``privacy.faces``; ``faces=False`` skips it, for the live view).

    Returns:
        ``image`` itself when there is nothing to hide (privacy off, nobody in view), else a new
        image. Callers treat the result as read-only either way, like every frame.

    Raises:
        ModelError: ``privacy.faces`` names a model that is not available (the first call loads
            it; the live server's start-up warm-up makes that call).
    """
    regions = head_regions(tracked, config)
    if faces and config.face_model:
        found = face_detector(config.face_model).detect(image)
        regions += face_regions(found, tracked, config)
    return anonymise(image, regions, config.mode)
