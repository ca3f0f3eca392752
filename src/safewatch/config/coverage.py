"""Which site labels a camera's models can produce, and which labels a rule needs to ever fire.

A rule is only as good as the detections it reads: a hard-hat rule on a camera whose models have
no ``hardhat`` (nor ``no_hardhat``) class validates, loads and runs, and never opens an incident;
``rules explain`` would describe it as protection. So when rules are loaded against a site
(``check-config``, ``rules validate`` / ``explain --config``, every reload, dashboard saves and
drafts), :func:`missing_labels` turns that into a ``file:line`` error. The other way protection
disappears, a camera left without any enabled rule, is :func:`unwatched_cameras` (reported by the
reloader and ``/readyz``, not an error: a camera may be there only to be watched live). A third is
a typo beside a good label (``objects: [persn, vehicle]``): the rule fires for vehicles and never
for persons, so a label that the rule writes out and that no model of any of its cameras produces
is an error too, naming the closest label they do produce (``persn``: ``person``).

A model's labels are known without loading it when the site file says them: the values of its
``labels:`` map (only mapped classes are kept), else its ``class_names`` (normalised as the
detector does). A model whose classes come only from its file's metadata is not judged here
unless it was loaded (``check-config`` loads every model and passes their labels); otherwise a
camera with such a model is given the benefit of the doubt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from typing import TYPE_CHECKING

from safewatch.config.rules import PPERule, ProximityRule, Rule
from safewatch.config.site import ModelConfig, SiteConfig
from safewatch.domain.ppe import DEFAULT_ITEMS, NEGATIVE_PREFIX

if TYPE_CHECKING:  # ruleset imports this module
    from safewatch.config.ruleset import RuleSet

__all__ = [
    "Need",
    "camera_labels",
    "missing_labels",
    "model_labels",
    "normalise_label",
    "rule_needs",
    "unwatched_cameras",
]

_SEPARATORS = re.compile(r"[\s\-]+")


def normalise_label(name: str) -> str:
    """Lower-case, with runs of spaces and hyphens turned into one underscore.

    The one spelling of a model class as a site label (``NO-Safety Vest`` is ``no_safety_vest``):
    the detector names its detections so (:mod:`safewatch.detect.labels` imports this), and rule
    checks and LLM drafting read ``class_names`` so, so a label one accepts the others do too.
    It lives here because config does not import the detector."""
    return _SEPARATORS.sub("_", name.strip()).lower()


Need = tuple[tuple[str | int, ...], tuple[str, ...]]
"""A field of a rule and the labels of which at least one must be producible for it."""


def model_labels(model: ModelConfig) -> frozenset[str] | None:
    """Site labels a model produces, or ``None`` when only its file knows them."""
    if model.labels is not None:
        return frozenset(model.labels.values())
    if model.class_names is not None:
        return frozenset(normalise_label(n) for n in model.class_names)
    return None


def camera_labels(
    site: SiteConfig, camera_id: str, loaded: Mapping[str, frozenset[str]] | None = None
) -> frozenset[str] | None:
    """Union of the labels of a camera's models; ``None`` when one of them is not known.

    ``loaded`` gives the labels of models already loaded (``check-config``), by model key.
    """
    labels: set[str] = set()
    for key in site.cameras[camera_id].models:
        model = site.models.get(key)
        known = (loaded or {}).get(key) or (None if model is None else model_labels(model))
        if known is None:
            return None
        labels |= known
    return frozenset(labels)


def rule_needs(rule: Rule) -> list[Need]:
    """What a rule reads: each group needs at least one producible label.

    The watched ``objects`` (and a proximity rule's ``subjects``) need one of their labels; each
    required PPE item needs its ``no_`` class or, for a built-in item (``hardhat``, ``vest``,
    ...), its own class (either decides the attribute). Another item's own class alone is no
    PPE to the tracker, which follows it as an object (:mod:`safewatch.domain.ppe`): a camera
    whose models say ``helmet`` but never ``no_helmet`` can never judge a helmet.
    A rule that watches any class (an empty ``objects``) needs nothing in particular.
    """
    needs: list[Need] = []
    if isinstance(rule, ProximityRule) and rule.subjects:
        needs.append((("subjects",), tuple(rule.subjects)))
    objects = tuple(getattr(rule, "objects", ()))
    if objects:
        needs.append((("objects",), objects))
    if isinstance(rule, PPERule):
        for index, item in enumerate(rule.require):
            absent = NEGATIVE_PREFIX + item
            needs.append(
                (("require", index), (item, absent) if item in DEFAULT_ITEMS else (absent,))
            )
    return needs


def _did_you_mean(labels: Sequence[str], known: Sequence[str]) -> str:
    """``did you mean 'x'?`` with the known label closest to one of ``labels``, or nothing."""
    for label in labels:
        close = get_close_matches(label, sorted(known), n=1)
        if close:
            return f"did you mean {close[0]!r}?"
    return ""


def _typo_of(label: str, known: Sequence[str]) -> str | None:
    """The produced label ``label`` is most likely a misspelling of, if any.

    Strict, since it refuses a rule: difflib's default likeness (0.6) took real classes for typos
    of a COCO model's (``forklift``: ``fork``, ``cart``: ``cat``, ``crane``: ``orange``). Only a
    label of five letters or more, at least 0.8 alike, and not a longer name built on the
    other (``hand_truck`` on ``truck``; a plural's one letter is still a typo) counts.
    """
    if len(label) < 5:
        return None
    for close in get_close_matches(label, sorted(known), n=3, cutoff=0.8):
        short, long = sorted((close, label), key=len)
        if short in long and len(long) - len(short) >= 3:
            continue
        return close
    return None


def _cameras_lack(blind: Sequence[str], site: SiteConfig, seen: set[str]) -> str:
    """``camera 'yard' has no model producing it (models coco produce: person, vehicle)``."""
    models = sorted({m for c in blind for m in site.cameras[c].models})
    return (
        f"camera{'s' if len(blind) > 1 else ''} {', '.join(repr(c) for c in blind)} "
        f"ha{'ve' if len(blind) > 1 else 's'} no model producing it (models "
        f"{', '.join(models) or 'none'} produce: {', '.join(sorted(seen)) or 'nothing'})"
    )


def _unproduced_labels(
    rule: Rule,
    field: str,
    wanted: tuple[str, ...],
    cameras: list[str],
    site: SiteConfig,
    loaded: Mapping[str, frozenset[str]] | None,
) -> list[tuple[tuple[str | int, ...], str]]:
    """Each label of a watched list the rule wrote out that none of its cameras produces.

    :func:`missing_labels` asks only for one producible label per list, so ``[persn, vehicle]``
    passed and the rule silently stopped watching persons. Only a label close to one they do
    produce (a typo) is reported: one far from all (``forklift`` on a site without a forklift
    model) is a class the site may add, and refusing it broke rules copied from the docs.
    Judged across the rule's cameras,
    not per camera: a rule on two cameras may list one camera's ``forklift`` beside the other's
    ``person``. A default list (a speed rule's ``vehicle, forklift``) is not the user's to
    fix, and a camera whose labels are unknown leaves the list unjudged.
    """
    if field not in rule.model_fields_set or not cameras:
        return []
    union: set[str] = set()
    for camera_id in cameras:
        labels = camera_labels(site, camera_id, loaded)
        if labels is None:
            return []
        union |= labels
    problems: list[tuple[tuple[str | int, ...], str]] = []
    lack = _cameras_lack(cameras, site, union)
    for index, label in enumerate(wanted):
        if label in union:
            continue
        typo = _typo_of(label, list(union))
        if typo is None:
            # No produced label is that close: a class the site may add later (``[vehicle,
            # forklift]`` copied from the docs onto a site without forklifts), not a typo.
            continue
        hint = f"did you mean {typo!r}?"
        problems.append(
            (
                (field, index),
                f"rule {rule.id!r} watches {label!r} but {lack}"
                f"{f'; {hint} It' if hint else '; it'} never sees a {label!r} there: correct the "
                f"label, remove it from `{field}`, or add a model with that class to the camera",
            )
        )
    return problems


def missing_labels(
    rule: Rule,
    cameras: list[str],
    site: SiteConfig,
    loaded: Mapping[str, frozenset[str]] | None = None,
) -> list[tuple[tuple[str | int, ...], str]]:
    """``(field, message)`` for every need of ``rule`` that one of ``cameras`` cannot meet
    (``loaded``: labels of models already loaded, see :func:`camera_labels`), and for every
    label of a watched list that none of them produces (:func:`_unproduced_labels`)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for path, wanted in rule_needs(rule):
        blind: list[str] = []
        seen: set[str] = set()
        for camera_id in cameras:
            labels = camera_labels(site, camera_id, loaded)
            if labels is None or labels & set(wanted):
                continue
            blind.append(camera_id)
            seen |= labels
        field = str(path[0])
        if not blind:
            if field != "require":
                problems.extend(_unproduced_labels(rule, field, wanted, cameras, site, loaded))
            continue
        what = " or ".join(repr(label) for label in wanted)
        item = (
            rule.require[int(path[1])] if isinstance(rule, PPERule) and field == "require" else ""
        )
        worn = (
            f" ({item!r} alone is tracked as an object, not worn: only the built-in items "
            f"{', '.join(sorted(DEFAULT_ITEMS))} are PPE without their `no_` class)"
            if item and item not in DEFAULT_ITEMS and item in seen
            else ""
        )
        # A typo of a label ([persn]) names its closest spelling.
        hint = _did_you_mean(wanted, list(seen)) if field != "require" else ""
        lead = f"rule {rule.id!r} needs {what}"
        if item and item not in DEFAULT_ITEMS and item not in seen:
            # A misspelt built-in item (hard_hat) was reported as a missing 'no_hard_hat'
            # class, which sent people looking for a model instead of at the spelling.
            close = _did_you_mean([item], list(DEFAULT_ITEMS))
            lead = (
                f"rule {rule.id!r}: {item!r} is not a built-in PPE item "
                f"({', '.join(sorted(DEFAULT_ITEMS))}){f'; {close} As' if close else '; as'} an "
                f"item of its own it needs {what}"
            )
        problems.append(
            (
                path,
                f"{lead} but {_cameras_lack(blind, site, seen)}{worn}"
                f"{f' ({hint})' if hint else ''}; it could never fire there: add a model with "
                "that class to the camera, map the class in the model's `labels:`, or list only "
                "the `cameras` that can see it",
            )
        )
    return problems


def unwatched_cameras(rules: RuleSet, site: SiteConfig) -> tuple[str, ...]:
    """Enabled cameras of the site that no enabled rule runs on: nothing is watched there."""
    return tuple(
        camera_id
        for camera_id, camera in site.cameras.items()
        if camera.enabled and not rules.for_camera(camera_id)
    )
