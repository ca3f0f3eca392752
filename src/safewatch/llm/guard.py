"""What a model's draft may do: add to one rule file, and change only what the operator named.

The policy is deliberately small enough to state in a sentence and check mechanically:

* A draft is a rule-file fragment: ``version``, ``zones``, ``lines``, ``rules``. A draft that
  tries to write a file (``path:``, ``files:``, keys that look like file names) or site settings
  (``cameras:``, ``storage:``, ``llm:`` ...) is refused; so is any ``${VAR}`` reference, which
  would read the server's environment (secrets) into a rule description.
* New ids are additions, always allowed (the validator still has its say).
* A draft can never remove anything: it is merged into the target, never replaces it.
* An item repeated exactly as it is now is harmless and dropped.
* Changing an existing rule, zone or line, including disabling a rule, is allowed only when the
  operator named its id in the request **and** allowed it explicitly (``--allow-modify ID`` or
  the API's ``allow_modify``), and only in the target file.

So "asked to touch" means named twice by a person, never inferred from the model's reply or
from text in camera names, zone descriptions or earlier chat turns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from safewatch.config.rules import RuleFile
from safewatch.llm.errors import DraftRefused
from safewatch.llm.workspace import ItemKind, Snapshot

__all__ = [
    "ALLOWED_KEYS",
    "Change",
    "GuardedDraft",
    "check_allow_modify",
    "classify_changes",
    "refuse_outside_rules",
]

ALLOWED_KEYS = frozenset({"version", "zones", "lines", "rules"})
"""Top-level keys of a draft."""

_FILE_OR_SITE_KEYS = frozenset(
    {
        "path",
        "paths",
        "file",
        "files",
        "filename",
        "target",
        "write",
        "output",
        "content",
        "contents",
        "site",
        "cameras",
        "models",
        "storage",
        "llm",
        "evidence",
        "privacy",
        "runtime",
        "tracker",
        "retention",
        "users",
    }
)
_FILE_LIKE = re.compile(r"[/\\]|\.(?:ya?ml|json|py|sh|txt|cfg|conf|ini|toml|env)$", re.I)
_HOW_TO_MODIFY = (
    "to change an existing item on purpose, name its id in the request and allow it "
    "(--allow-modify ID, or allow_modify in the API)"
)


def _env_references(value: Any, path: str = "") -> Iterable[str]:
    if isinstance(value, str):
        if "${" in value:
            yield path or "(top level)"
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _env_references(key, path)
            yield from _env_references(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _env_references(child, f"{path}[{index}]")


def refuse_outside_rules(data: Any, target_name: str) -> None:
    """Refuse a draft that reaches beyond rules, zones and lines of the target file.

    Other unknown keys (a misspelt ``rule:``) are left to the schema, whose error goes back to
    the model in a repair round.

    Raises:
        DraftRefused: Keys that name files or site settings, or ``${VAR}`` references.
    """
    reasons: list[str] = []
    if isinstance(data, dict):
        outside = [
            repr(str(key))
            for key in data
            if str(key) not in ALLOWED_KEYS
            and (str(key).lower() in _FILE_OR_SITE_KEYS or _FILE_LIKE.search(str(key)))
        ]
        if outside:
            reasons.append(
                f"the draft tries to write {', '.join(outside)}; a draft may only add rules, "
                f"zones and lines to {target_name}"
            )
    places = list(_env_references(data))
    if places:
        reasons.append(
            "the draft uses ${...} environment references (at "
            f"{', '.join(places[:5])}); drafts may not read the server's environment"
        )
    if reasons:
        raise DraftRefused(reasons)


def _names_id(request: str, item_id: str) -> bool:
    pattern = rf"(?<![A-Za-z0-9_.-]){re.escape(item_id)}(?![A-Za-z0-9_-])"
    return re.search(pattern, request, re.IGNORECASE) is not None


def check_allow_modify(request: str, allow_modify: Sequence[str], snapshot: Snapshot) -> None:
    """Before anything is sent: each allowed id is in the target and named in the request.

    Raises:
        DraftRefused: An allowed id the target does not define, or the request does not name.
    """
    reasons = []
    target = snapshot.target_items
    for item_id in allow_modify:
        kinds: tuple[ItemKind, ...] = ("rule", "zone", "line")
        if target is None or all(target.get(kind, item_id) is None for kind in kinds):
            owner = next(
                (snapshot.owner(kind, item_id) for kind in kinds if snapshot.owner(kind, item_id)),
                None,
            )
            where = (
                f"it is defined in {owner.path.name}; draft with that file as the target"
                if owner is not None
                else "no rule, zone or line has that id"
            )
            reasons.append(
                f"cannot allow changes to {item_id!r} in {snapshot.target.name}: {where}"
            )
        elif not _names_id(request, item_id):
            reasons.append(
                f"{item_id!r} is allowed to change but the request does not name it; say in "
                "the request what should change about it"
            )
    if reasons:
        raise DraftRefused(reasons)


@dataclass(frozen=True, slots=True)
class Change:
    """One item a draft adds or changes in the target file.

    Attributes:
        kind: rule, zone or line.
        id: Its id.
        action: ``add`` (new id) or ``modify`` (allowed change of an existing one).
        disables: A rule change that sets ``enabled: false``.
    """

    kind: ItemKind
    id: str
    action: Literal["add", "modify"]
    disables: bool = False


@dataclass(frozen=True, slots=True)
class GuardedDraft:
    """The draft's effect after the guard.

    Attributes:
        changes: Additions and allowed modifications, in draft order.
        unchanged: Items the draft repeated exactly as they are (dropped).
    """

    changes: tuple[Change, ...]
    unchanged: tuple[tuple[ItemKind, str], ...]


def _differences(old: BaseModel, new: BaseModel) -> list[str]:
    before, after = old.model_dump(), new.model_dump()
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _describe(kind: ItemKind, item_id: str, old: BaseModel, new: BaseModel) -> str:
    if kind == "rule" and getattr(old, "enabled", True) and not getattr(new, "enabled", True):
        return f"disables existing rule {item_id!r}"
    fields = ", ".join(_differences(old, new)) or "its definition"
    return f"changes existing {kind} {item_id!r} ({fields})"


def classify_changes(
    fragment: RuleFile, snapshot: Snapshot, allow_modify: Sequence[str]
) -> GuardedDraft:
    """Sort the draft's items into additions, allowed changes and repeats; refuse the rest.

    Raises:
        DraftRefused: The draft changes or disables an item it was not allowed to, or one that
            lives in another file than the target.
    """
    items: list[tuple[ItemKind, str, BaseModel]] = [
        *(("zone", zone_id, zone) for zone_id, zone in fragment.zones.items()),
        *(("line", line_id, line) for line_id, line in fragment.lines.items()),
        *(("rule", rule.id, rule) for rule in fragment.rules),
    ]
    allowed = set(allow_modify)
    changes: list[Change] = []
    unchanged: list[tuple[ItemKind, str]] = []
    refused: list[str] = []
    for kind, item_id, new in items:
        owner = snapshot.owner(kind, item_id)
        if owner is None:
            changes.append(Change(kind, item_id, "add"))
            continue
        old = owner.get(kind, item_id)
        assert isinstance(old, BaseModel)
        if old == new:
            unchanged.append((kind, item_id))
            continue
        what = _describe(kind, item_id, old, new)
        if item_id not in allowed:
            refused.append(f"the draft {what}, which the request did not allow")
        elif owner.path != snapshot.target:
            refused.append(
                f"the draft {what}, which is defined in {owner.path.name}, not in the target "
                f"{snapshot.target.name}"
            )
        else:
            disables = what.startswith("disables")
            changes.append(Change(kind, item_id, "modify", disables=disables))
    if refused:
        raise DraftRefused([*refused, _HOW_TO_MODIFY])
    return GuardedDraft(tuple(changes), tuple(unchanged))
