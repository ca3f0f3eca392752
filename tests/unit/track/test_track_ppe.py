"""PPE vocabulary, body regions and one-box-one-person association."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.domain import Detections, PPEState
from safewatch.track.ppe import BodyRegion, PPEVocabulary, associate_ppe, region_boxes

VOCAB = PPEVocabulary()


def _det(*rows: tuple[str, float, float, float, float, float]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([r[2:] for r in rows], np.float32),
        np.array([r[1] for r in rows], np.float32),
        np.array([r[0] for r in rows]),
    )


def _persons(*boxes: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(boxes, np.float32).reshape(-1, 4)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("hardhat", ("hardhat", PPEState.PRESENT)),
        ("no_hardhat", ("hardhat", PPEState.ABSENT)),
        ("vest", ("vest", PPEState.PRESENT)),
        ("no_vest", ("vest", PPEState.ABSENT)),
        ("gloves", ("gloves", PPEState.PRESENT)),
        ("no_gloves", ("gloves", PPEState.ABSENT)),
        ("no_apron", ("apron", PPEState.ABSENT)),
        ("person", None),
        ("vehicle", None),
        ("forklift", None),
        ("no_", None),
    ],
)
def test_vocabulary_reads_item_and_polarity(
    label: str, expected: tuple[str, PPEState] | None
) -> None:
    assert VOCAB.item_of(label) == expected


def test_vocabulary_can_be_extended_and_unknown_items_are_placed_by_their_name() -> None:
    vocab = PPEVocabulary({"apron": BodyRegion.FEET})
    assert vocab.item_of("apron") == ("apron", PPEState.PRESENT)
    assert vocab.region("apron") is BodyRegion.FEET
    assert VOCAB.region("apron") is BodyRegion.TORSO
    assert VOCAB.region("safety_helmet") is BodyRegion.HEAD
    assert VOCAB.region("hi_vis_vest") is BodyRegion.TORSO
    assert VOCAB.region("ear_defenders") is BodyRegion.BODY  # no word it knows: anywhere


def test_a_no_x_label_makes_x_an_item() -> None:
    """``require`` takes any item a model reports as ``x`` / ``no_x``: a camera whose models say
    ``no_helmet`` wears its ``helmet`` boxes instead of tracking them as objects."""
    assert VOCAB.item_of("helmet") is None
    vocab = VOCAB.with_labels(["person", "helmet", "no_helmet", "no_safety_vest"])
    assert vocab.item_of("helmet") == ("helmet", PPEState.PRESENT)
    assert vocab.item_of("safety_vest") == ("safety_vest", PPEState.PRESENT)
    assert vocab.region("helmet") is BodyRegion.HEAD
    assert vocab.region("safety_vest") is BodyRegion.TORSO
    assert vocab.item_of("person") is None
    assert vocab.with_labels(["no_helmet", "no_hardhat"]) is vocab  # nothing new
    assert VOCAB.item_of("helmet") is None  # the default is left as it was


def test_head_region_is_the_widened_top_of_the_person_box() -> None:
    (head,) = region_boxes(_persons((100, 100, 140, 200)), BodyRegion.HEAD)
    x1, y1, x2, y2 = head
    assert x1 < 100 and x2 > 140  # widened sideways
    assert y1 < 100  # a hat may poke above a tight person box
    assert 120 <= y2 <= 135  # top ~25-30 % of the height


def test_hat_on_the_head_is_present_and_bare_head_is_absent() -> None:
    persons = _persons((100, 100, 140, 200), (300, 100, 340, 200))
    ppe = _det(("hardhat", 0.8, 110, 95, 130, 115), ("no_hardhat", 0.7, 310, 100, 330, 118))
    found = associate_ppe(persons, ppe, VOCAB)
    assert found[0]["hardhat"].state is PPEState.PRESENT
    assert found[0]["hardhat"].confidence == pytest.approx(0.8)
    assert found[1]["hardhat"].state is PPEState.ABSENT


def test_hat_at_the_feet_or_beside_the_person_matches_nobody() -> None:
    persons = _persons((100, 100, 140, 200))
    ppe = _det(("hardhat", 0.9, 110, 185, 130, 200), ("hardhat", 0.9, 200, 100, 220, 120))
    assert associate_ppe(persons, ppe, VOCAB) == [{}]


def test_vest_matches_the_torso_not_the_head() -> None:
    persons = _persons((100, 100, 140, 200))
    on_torso = associate_ppe(persons, _det(("vest", 0.6, 102, 125, 138, 160)), VOCAB)
    on_head = associate_ppe(persons, _det(("vest", 0.6, 110, 95, 130, 112)), VOCAB)
    assert on_torso[0]["vest"].state is PPEState.PRESENT
    assert on_head == [{}]


def test_one_hat_goes_to_one_person_the_one_it_sits_on() -> None:
    # Two people overlapping (one slightly behind): the hat sits on the left one's head.
    persons = _persons((100, 100, 140, 200), (118, 104, 158, 204))
    ppe = _det(("hardhat", 0.9, 106, 96, 126, 114))
    found = associate_ppe(persons, ppe, VOCAB)
    assert "hardhat" in found[0]
    assert "hardhat" not in found[1]


def test_each_person_gets_one_observation_per_item_the_best_one() -> None:
    persons = _persons((100, 100, 140, 200))
    ppe = _det(("no_hardhat", 0.4, 110, 96, 130, 114), ("hardhat", 0.9, 110, 96, 130, 114))
    found = associate_ppe(persons, ppe, VOCAB)
    assert found[0]["hardhat"].state is PPEState.PRESENT
    assert found[0]["hardhat"].index == 1


def test_a_weaker_second_box_on_a_taken_head_goes_to_no_neighbour() -> None:
    """A 0.8 hat and a 0.3 bare box on one head: the bare box is the same head seen again, not
    the bare head of the person standing shoulder to shoulder (whose own head has no box)."""
    persons = _persons((100, 100, 140, 200), (128, 102, 168, 202))
    ppe = _det(("hardhat", 0.8, 110, 96, 130, 114), ("no_hardhat", 0.3, 111, 97, 131, 115))
    found = associate_ppe(persons, ppe, VOCAB)
    assert found[0]["hardhat"].state is PPEState.PRESENT
    assert found[1] == {}


def test_neighbours_overlapping_hats_in_a_crowd_stay_two_heads() -> None:
    """Two hats at IoU 0.33 (small heads side by side, both kept by the model's own NMS) are two
    heads: only a hat and a bare box are merged from an IoU of 0.3."""
    persons = _persons((100, 100, 120, 160), (107, 100, 127, 160))
    ppe = _det(("hardhat", 0.5, 103, 96, 117, 110), ("hardhat", 0.4, 110, 96, 124, 110))
    found = associate_ppe(persons, ppe, VOCAB)
    assert [f["hardhat"].index for f in found] == [0, 1]


def test_overlapping_boxes_of_a_body_worn_item_are_not_merged() -> None:
    """Only head boxes are deduplicated: two people's vests may overlap in a crowd."""
    persons = _persons((100, 100, 140, 200), (112, 100, 152, 200))
    ppe = _det(("vest", 0.8, 102, 125, 138, 160), ("no_vest", 0.4, 114, 125, 150, 160))
    found = associate_ppe(persons, ppe, VOCAB)
    assert found[0]["vest"].state is PPEState.PRESENT
    assert found[1]["vest"].state is PPEState.ABSENT


def test_two_hats_two_neighbours_each_get_their_own() -> None:
    persons = _persons((100, 100, 140, 200), (135, 100, 175, 200))
    ppe = _det(("no_hardhat", 0.8, 145, 98, 165, 116), ("hardhat", 0.8, 110, 98, 130, 116))
    found = associate_ppe(persons, ppe, VOCAB)
    assert found[0]["hardhat"].state is PPEState.PRESENT
    assert found[1]["hardhat"].state is PPEState.ABSENT


def test_no_persons_or_no_ppe_gives_empty_observations() -> None:
    assert associate_ppe(_persons(), _det(("hardhat", 0.9, 0, 0, 5, 5)), VOCAB) == []
    assert associate_ppe(_persons((0, 0, 10, 10)), _det(), VOCAB) == [{}]


def test_generalises_to_gloves_in_the_hand_band() -> None:
    persons = _persons((100, 100, 140, 200))
    found = associate_ppe(persons, _det(("no_gloves", 0.5, 92, 150, 102, 160)), VOCAB)
    assert found[0]["gloves"].state is PPEState.ABSENT
