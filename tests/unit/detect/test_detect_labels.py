"""Class names -> site labels, and per-label thresholds."""

from __future__ import annotations

import pytest

from safewatch.detect.labels import normalise_label, plan_labels
from safewatch.errors import ModelError

PPE = ["Hardhat", "NO-Hardhat", "Safety Vest", "NO-Safety Vest", "Person", "Safety Cone"]


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("Hardhat", "hardhat"),
        ("NO-Hardhat", "no_hardhat"),
        ("NO-Safety Vest", "no_safety_vest"),
        ("traffic light", "traffic_light"),
        ("  Fall-Detected ", "fall_detected"),
        ("a -  b", "a_b"),
    ],
)
def test_normalise_label(name: str, label: str) -> None:
    assert normalise_label(name) == label


def test_no_map_keeps_every_class_normalised() -> None:
    plan = plan_labels("ppe", PPE, None, 0.25, {})
    assert plan.class_ids.tolist() == list(range(len(PPE)))
    assert plan.labels.tolist() == [
        "hardhat",
        "no_hardhat",
        "safety_vest",
        "no_safety_vest",
        "person",
        "safety_cone",
    ]
    assert plan.thresholds.tolist() == pytest.approx([0.25] * len(PPE))


def test_map_drops_unlisted_classes_and_applies_label_thresholds() -> None:
    plan = plan_labels(
        "ppe",
        PPE,
        {"Hardhat": "hardhat", "NO-Hardhat": "no_hardhat", "Safety Vest": "vest"},
        0.25,
        {"no_hardhat": 0.6},
    )
    assert plan.class_ids.tolist() == [0, 1, 2]
    assert plan.labels.tolist() == ["hardhat", "no_hardhat", "vest"]
    assert plan.thresholds.tolist() == pytest.approx([0.25, 0.6, 0.25])
    assert plan.min_threshold == pytest.approx(0.25)


def test_map_keys_match_normalised_class_names() -> None:
    plan = plan_labels("ppe", PPE, {"no_hardhat": "no_hardhat"}, 0.25, {})
    assert plan.class_ids.tolist() == [1]


def test_two_classes_may_share_a_label() -> None:
    plan = plan_labels(
        "coco", ["person", "car", "bus", "truck"], {"car": "vehicle", "truck": "vehicle"}, 0.3, {}
    )
    assert plan.class_ids.tolist() == [1, 3]
    assert plan.labels.tolist() == ["vehicle", "vehicle"]


def test_unknown_map_key_is_an_error_listing_the_classes() -> None:
    with pytest.raises(ModelError, match=r"labels maps 'Helmet'.*Hardhat, NO-Hardhat"):
        plan_labels("ppe", PPE, {"Helmet": "hardhat"}, 0.25, {})


def test_two_map_keys_naming_one_class_are_an_error() -> None:
    """The last key used to win silently: Hardhat was reported as helmet, not hardhat."""
    with pytest.raises(ModelError, match=r"both 'Hardhat' and 'hardhat'.* class 'Hardhat'"):
        plan_labels("ppe", PPE, {"Hardhat": "hardhat", "hardhat": "helmet"}, 0.25, {})


def test_threshold_for_a_label_never_produced_is_an_error() -> None:
    with pytest.raises(ModelError, match="label_confidence names hardhat"):
        plan_labels("coco", ["person"], None, 0.25, {"hardhat": 0.5})


def test_empty_map_keeps_nothing() -> None:
    plan = plan_labels("ppe", PPE, {}, 0.25, {})
    assert len(plan.class_ids) == 0
    assert plan.min_threshold == 1.0
