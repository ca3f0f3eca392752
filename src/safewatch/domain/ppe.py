"""PPE items as labels name them, and the body region each is worn on.

An item ``x`` is observed *present* by a detection labelled ``x`` and *absent* by one labelled
``no_x``. Which labels are items is decided here, where both the tracker (which boxes are PPE
rather than objects to track) and rule checks (whether a camera can ever judge a required item)
read it, so the two cannot disagree: the built-in items (:data:`DEFAULT_ITEMS`) always, and any
other ``x`` on a camera whose models produce ``no_x`` (a model that can say "no helmet" is
speaking about helmets, so its ``helmet`` boxes are worn, not tracked).

An item's region is its built-in one, else guessed from the words of its name
(:func:`item_region`: ``safety_helmet`` on the head, ``hi_vis_vest`` on the torso), else the whole
body, where any box inside the widened person box matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "DEFAULT_ITEMS",
    "NEGATIVE_PREFIX",
    "BodyRegion",
    "item_region",
    "negated_items",
]

NEGATIVE_PREFIX = "no_"
"""``no_x`` is the detection of item ``x`` being visibly absent (``no_hardhat``: a bare head)."""


class BodyRegion(StrEnum):
    """Where on a person an item is worn; picks the part of the person box a PPE box must lie in."""

    HEAD = "head"
    TORSO = "torso"
    HANDS = "hands"
    FEET = "feet"
    BODY = "body"


DEFAULT_ITEMS: Mapping[str, BodyRegion] = MappingProxyType(
    {
        "hardhat": BodyRegion.HEAD,
        "goggles": BodyRegion.HEAD,
        "mask": BodyRegion.HEAD,
        "vest": BodyRegion.TORSO,
        "harness": BodyRegion.TORSO,
        "gloves": BodyRegion.HANDS,
        "boots": BodyRegion.FEET,
    }
)
"""The built-in items and their regions: ``x`` and ``no_x`` are PPE on every camera."""

_REGION_WORDS: Mapping[str, BodyRegion] = MappingProxyType(
    {
        **{
            word: BodyRegion.HEAD
            for word in (
                "hat", "hardhat", "helmet", "cap", "hood", "goggles", "glasses", "mask",
                "visor", "shield", "respirator", "earmuffs", "earplugs",
            )
        },
        **{
            word: BodyRegion.TORSO
            for word in ("vest", "jacket", "coat", "harness", "apron", "hivis", "shirt")
        },
        **{word: BodyRegion.HANDS for word in ("glove", "gloves")},
        **{word: BodyRegion.FEET for word in ("boot", "boots", "shoe", "shoes")},
    }
)  # fmt: skip
"""Words of an item's name (split at ``_``) that say where it is worn; the first one found wins."""


def item_region(item: str) -> BodyRegion:
    """Where ``item`` is worn: its built-in region, else the first word of its name that names a
    region (``safety_helmet``: head), else the whole body."""
    if item in DEFAULT_ITEMS:
        return DEFAULT_ITEMS[item]
    for word in item.split("_"):
        if word in _REGION_WORDS:
            return _REGION_WORDS[word]
    return BodyRegion.BODY


def negated_items(labels: Iterable[str]) -> set[str]:
    """The items ``x`` whose ``no_x`` is among ``labels``."""
    return {
        label[len(NEGATIVE_PREFIX) :]
        for label in labels
        if label.startswith(NEGATIVE_PREFIX) and len(label) > len(NEGATIVE_PREFIX)
    }
