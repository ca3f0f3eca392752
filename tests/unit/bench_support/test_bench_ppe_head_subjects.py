"""bench/ppe_compliance scores head subjects (head-first and face-first tracks) by their head box.

A face-derived head box sits higher and is smaller than the labelled head, so the person-box gate
(a head point 10 % down the box) matched few of them: a right call on a bare head counted as an
unmatched extra, not a hit. These check the head-subject rule and that person boxes are scored as
before.
"""

from __future__ import annotations

import numpy as np
from bench.padding import Padding
from bench.ppe_compliance import Outcome, PersonVerdict, match_head_subjects, match_heads, score

from safewatch.track.camera import head_from_face

NO_PADDING = Padding(height=600, width=800)
BARE = (100.0, 100.0, 160.0, 170.0)  # a labelled bare head, 60 x 70 px
HAT = (400.0, 100.0, 470.0, 175.0)


def _face_head(head: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The head box safewatch makes from the face inside a labelled head (its lower part)."""
    x1, y1, x2, y2 = head
    w, h = x2 - x1, y2 - y1
    face = np.array([[x1 + 0.2 * w, y1 + 0.4 * h, x2 - 0.2 * w, y2 - 0.05 * h, 0.9]])
    return tuple(float(v) for v in head_from_face(face)[0])  # type: ignore[return-value]


def _outcome(persons: list[PersonVerdict]) -> Outcome:
    outcome = Outcome()
    heads = np.array([BARE, HAT])
    score(outcome, heads, ["bare", "hat"], persons, NO_PADDING)
    return outcome


def test_a_face_subject_on_a_bare_head_is_a_hit_and_on_a_hat_a_false_call() -> None:
    on_bare = PersonVerdict(_face_head(BARE), "violation", head=True)
    on_hat = PersonVerdict(_face_head(HAT), "violation", head=True)
    outcome = _outcome([on_bare, on_hat])
    assert outcome.matrix["bare"]["violation"] == 1
    assert outcome.matrix["hat"]["violation"] == 1
    assert sum(outcome.extra.values()) == 0
    summary = outcome.summary()
    assert summary["violation_recall"] == 1.0 and summary["violation_precision"] == 0.5


def _small_high(head: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A head box 0.6 of the labelled head's side, centred 0.31 of its own side above the
    labelled head's centre: the median face-derived box before its geometry was calibrated."""
    x1, y1, x2, y2 = head
    side = 0.6 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 - 0.31 * side
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def test_the_person_gate_misses_small_high_head_boxes_the_head_rule_matches() -> None:
    # Why the rule exists: scored as person boxes, neither head subject takes its head.
    boxes = np.array([_small_high(BARE), _small_high(HAT)])
    assert match_heads(np.array([BARE, HAT]), boxes) == []
    assert sorted(match_head_subjects(np.array([BARE, HAT]), boxes)) == [(0, 0), (1, 1)]


def test_a_head_subject_far_from_every_head_is_an_extra() -> None:
    stray = PersonVerdict((600.0, 400.0, 640.0, 440.0), "violation", head=True)
    outcome = _outcome([stray])
    assert outcome.extra["violation"] == 1
    assert outcome.matrix["bare"]["missed"] == 1 and outcome.matrix["hat"]["missed"] == 1


def test_a_person_box_takes_its_head_before_any_head_subject() -> None:
    w = BARE[2] - BARE[0]
    person = PersonVerdict(
        (BARE[0] - w, BARE[1] - 5, BARE[2] + w, BARE[3] + 6 * w), "compliant", head=False
    )
    face = PersonVerdict(_face_head(BARE), "violation", head=True)
    outcome = _outcome([face, person])
    assert outcome.matrix["bare"]["compliant"] == 1, "the person box is scored as before"
    assert outcome.extra["violation"] == 1, "the second subject on the same head is an extra"


def test_each_labelled_head_goes_to_one_head_subject_the_nearest() -> None:
    near = _face_head(BARE)
    off = (near[0] + 12, near[1] + 12, near[2] + 12, near[3] + 12)
    pairs = match_head_subjects(np.array([BARE]), np.array([off, near]))
    assert pairs == [(0, 1)]
