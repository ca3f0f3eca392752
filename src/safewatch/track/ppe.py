"""PPE items, the body region each is worn on, and matching PPE boxes to person boxes.

PPE models detect items (a hard hat, a bare head, a vest), not people wearing them. To say "person
#4 has no hard hat" each item box must be given to the person whose head (or torso, hands, feet) it
sits on. The region is a fixed fraction of the person box, widened a little because detectors draw
person boxes tight and a hat brim or a side-on head pokes out of them. Matching is greedy over
(person, box) pairs by ``confidence x overlap x proximity`` so one box serves at most one person and
each person gets at most one observation per item per frame, which keeps two people standing close
together from sharing a hat. A head-worn item's boxes count once per head: a weaker box on a head
a stronger box already marks is dropped before matching.

Vocabulary: an item ``x`` is observed *present* by a detection labelled ``x`` and *absent* by one
labelled ``no_x`` (``hardhat`` / ``no_hardhat``, ``vest`` / ``no_vest``, ``gloves`` /
``no_gloves``); which ``x`` are items and where each is worn is :mod:`safewatch.domain.ppe`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from safewatch.detect.nms import box_iou
from safewatch.domain import Detections, PPEState
from safewatch.domain.ppe import (
    DEFAULT_ITEMS,
    NEGATIVE_PREFIX,
    BodyRegion,
    item_region,
    negated_items,
)
from safewatch.track.heads import suppress_overlaps

__all__ = [
    "DEFAULT_ITEMS",
    "NEGATIVE_PREFIX",
    "SAME_HEAD_IOU",
    "BodyRegion",
    "Observation",
    "PPEVocabulary",
    "associate_ppe",
    "region_boxes",
]

# Region as fractions of the person box (x1, y1, x2, y2); 0 = left/top edge, 1 = right/bottom.
# The head band is the top ~28 % widened sideways and upwards: hats stick out of tight person boxes.
_REGION_FRACTIONS: Mapping[BodyRegion, tuple[float, float, float, float]] = MappingProxyType(
    {
        BodyRegion.HEAD: (-0.20, -0.15, 1.20, 0.28),
        BodyRegion.TORSO: (-0.15, 0.12, 1.15, 0.70),
        BodyRegion.HANDS: (-0.40, 0.25, 1.40, 0.80),
        BodyRegion.FEET: (-0.20, 0.75, 1.20, 1.10),
        BodyRegion.BODY: (-0.10, -0.10, 1.10, 1.10),
    }
)

SAME_HEAD_IOU = 0.3
"""Above this IoU a head box is a head already marked, seen again: under a stronger box of the
other polarity (a bare box under a hat, which no model's NMS compares), or under a box a person
took (then it is never a head-first subject of its own)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What one frame says about one item on one person.

    Attributes:
        state: ``PRESENT`` (item box matched) or ``ABSENT`` (``no_`` box matched).
        confidence: Confidence of the matched detection.
        index: Row of the matched box in the detections given to :func:`associate_ppe`.
    """

    state: PPEState
    confidence: float
    index: int


class PPEVocabulary:
    """Which labels are PPE, which item they speak about, and where that item is worn.

    Args:
        items: Item name to body region. Labels ``x`` in it (and every ``no_x``) are PPE; all
            other labels are objects to track. Extend it for site-specific items
            (``{"apron": BodyRegion.TORSO}``), or with :meth:`with_labels` from what a camera's
            models produce.
    """

    def __init__(self, items: Mapping[str, BodyRegion] = DEFAULT_ITEMS) -> None:
        self._items = dict(items)

    @property
    def items(self) -> Mapping[str, BodyRegion]:
        """The items whose ``x`` labels are PPE, with their regions."""
        return MappingProxyType(self._items)

    def with_labels(self, labels: Iterable[str]) -> PPEVocabulary:
        """This vocabulary plus every item ``x`` whose ``no_x`` is among ``labels`` (a model that
        says "no helmet" speaks about helmets, so its ``helmet`` boxes are worn, not objects),
        placed by :func:`~safewatch.domain.ppe.item_region`; ``self`` when none is new."""
        new = {item: item_region(item) for item in negated_items(labels) - self._items.keys()}
        return PPEVocabulary({**self._items, **new}) if new else self

    def item_of(self, label: str) -> tuple[str, PPEState] | None:
        """The item a label observes and whether it says present or absent; ``None`` if not PPE."""
        if label.startswith(NEGATIVE_PREFIX) and len(label) > len(NEGATIVE_PREFIX):
            return label[len(NEGATIVE_PREFIX) :], PPEState.ABSENT
        if label in self._items:
            return label, PPEState.PRESENT
        return None

    def is_ppe(self, label: str) -> bool:
        """Whether ``label`` is a PPE observation rather than an object to track."""
        return self.item_of(label) is not None

    def region(self, item: str) -> BodyRegion:
        """Body region of ``item``; an item not in the vocabulary (seen only as ``no_x``) is
        placed by its name (:func:`~safewatch.domain.ppe.item_region`)."""
        return self._items.get(item) or item_region(item)

    def ppe_mask(self, labels: NDArray[np.str_]) -> NDArray[np.bool_]:
        """Boolean mask of the PPE rows among ``labels``."""
        return np.fromiter((self.is_ppe(str(x)) for x in labels), dtype=np.bool_, count=len(labels))


def region_boxes(persons: NDArray[np.float32], region: BodyRegion) -> NDArray[np.float64]:
    """Boxes of ``region`` for ``(P, 4)`` person boxes, ``(P, 4)`` xyxy."""
    p = np.asarray(persons, dtype=np.float64).reshape(-1, 4)
    fx1, fy1, fx2, fy2 = _REGION_FRACTIONS[region]
    w = p[:, 2] - p[:, 0]
    h = p[:, 3] - p[:, 1]
    return np.stack(
        [p[:, 0] + fx1 * w, p[:, 1] + fy1 * h, p[:, 0] + fx2 * w, p[:, 1] + fy2 * h], axis=1
    )


def _pair_scores(
    regions: NDArray[np.float64], boxes: NDArray[np.float64], min_overlap: float
) -> NDArray[np.float64]:
    """``(P, K)`` match quality of each box to each region; 0 where they must not match.

    Quality is the share of the box inside the region times a proximity term, so a hat straddling
    two neighbours' head regions goes to the one it sits squarely on. The box centre must lie inside
    the region and at least ``min_overlap`` of the box's area inside it.
    """
    r = regions[:, None, :]
    b = boxes[None, :, :]
    iw = np.clip(np.minimum(r[..., 2], b[..., 2]) - np.maximum(r[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(r[..., 3], b[..., 3]) - np.maximum(r[..., 1], b[..., 1]), 0, None)
    area = np.maximum((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]), 1e-9)
    overlap = iw * ih / area
    cx = (b[..., 0] + b[..., 2]) / 2
    cy = (b[..., 1] + b[..., 3]) / 2
    inside = (cx >= r[..., 0]) & (cx <= r[..., 2]) & (cy >= r[..., 1]) & (cy <= r[..., 3])
    rcx = (r[..., 0] + r[..., 2]) / 2
    rcy = (r[..., 1] + r[..., 3]) / 2
    scale = np.maximum(r[..., 2] - r[..., 0], 1e-9)
    proximity = 1.0 / (1.0 + np.hypot(cx - rcx, cy - rcy) / scale)
    scores: NDArray[np.float64] = np.where(
        inside & (overlap >= min_overlap), overlap * proximity, 0.0
    )
    return scores


def _one_box_per_head(
    rows: NDArray[np.intp],
    boxes: NDArray[np.float64],
    confidence: NDArray[np.float32],
    states: Mapping[int, PPEState],
) -> NDArray[np.intp]:
    """``rows`` (boxes of one head-worn item) less those that are a weaker box on the same head.

    The greedy association never gives a person two boxes of an item, so without this a weaker
    second box on a head its wearer took (a 0.3 bare box under a 0.8 hat) would go to the
    neighbour whose head band reaches it, as that neighbour's verdict. A hat and a bare box are
    the same head above :data:`SAME_HEAD_IOU` (as for head-first subjects): no model's NMS
    compares them. Two boxes saying the same thing are one head only above 0.5, as in head mode:
    a model's own NMS (0.45 by default) already keeps such a pair only as two heads, and in a
    crowd of small heads neighbours' boxes overlap by 0.3-0.45 (5 such pairs on the held-out
    training photos; merging them from 0.3 left one hard-hatted worker without a verdict).
    """
    kept = rows[suppress_overlaps(boxes[rows], confidence[rows])]
    absent = np.asarray([states[int(r)] is PPEState.ABSENT for r in kept], np.bool_)
    iou = box_iou(boxes[kept], boxes[kept])
    keep: list[int] = []
    for i in range(len(kept)):  # strongest first (suppress_overlaps' order)
        if not any(absent[i] != absent[j] and iou[i, j] > SAME_HEAD_IOU for j in keep):
            keep.append(i)
    return np.sort(kept[keep])


def associate_ppe(
    persons: NDArray[np.float32],
    ppe: Detections,
    vocabulary: PPEVocabulary,
    min_overlap: float = 0.3,
) -> list[dict[str, Observation]]:
    """Give each PPE box to at most one person, and each person at most one box per item.

    Args:
        persons: ``(P, 4)`` person boxes of this frame (all of them, confirmed tracks or not, so a
            hat is not handed to a neighbour just because its wearer is not yet confirmed).
        ppe: This frame's PPE detections (labels ``x`` / ``no_x``); non-PPE rows are ignored.
        vocabulary: Items and regions.
        min_overlap: Least share of a box's area that must fall inside the region.

    Returns:
        One dict per person, item to :class:`Observation`; items with no matched box are missing.
    """
    n_persons = int(np.asarray(persons).reshape(-1, 4).shape[0])
    result: list[dict[str, Observation]] = [{} for _ in range(n_persons)]
    if n_persons == 0 or len(ppe) == 0:
        return result
    by_item: dict[str, list[int]] = {}
    states: dict[int, PPEState] = {}
    for index, label in enumerate(ppe.label):
        parsed = vocabulary.item_of(str(label))
        if parsed is not None:
            by_item.setdefault(parsed[0], []).append(index)
            states[index] = parsed[1]
    boxes_all = ppe.xyxy.astype(np.float64)
    for item in sorted(by_item):
        rows = np.asarray(by_item[item], dtype=np.intp)
        if vocabulary.region(item) is BodyRegion.HEAD:
            rows = _one_box_per_head(rows, boxes_all, ppe.confidence, states)
        regions = region_boxes(persons, vocabulary.region(item))
        quality = _pair_scores(regions, boxes_all[rows], min_overlap)
        score = quality * ppe.confidence[rows].astype(np.float64)[None, :]
        person_idx, box_idx = np.nonzero(score > 0)
        # Sort by score, then by position so the outcome never depends on the input order.
        person_boxes = np.asarray(persons, dtype=np.float64).reshape(-1, 4)
        keys = (
            person_boxes[person_idx, 1],
            person_boxes[person_idx, 0],
            boxes_all[rows[box_idx], 1],
            boxes_all[rows[box_idx], 0],
            -score[person_idx, box_idx],
        )
        order = np.lexsort(keys)
        used: set[int] = set()
        for k in order:
            p, b = int(person_idx[k]), int(rows[box_idx[k]])
            if b in used or item in result[p]:
                continue
            used.add(b)
            result[p][item] = Observation(states[b], float(ppe.confidence[b]), b)
    return result
