"""Edit a rule file's text without losing what people wrote in it.

Safety officers comment their rule files (why a zone is where it is, who asked for a rule), so a
drafted change must add or replace its rules and leave every other line as it was: the diff the
operator confirms then shows only the change. ruamel.yaml's round-trip mode keeps comments, key
order, quoting and flow style; the sequence indentation is read from the file so a file written
``rules:\\n- id: ...`` is not re-indented. New items are written from plain, already validated data
in the house style (``[x, y]`` lists in flow style, times quoted), so nothing of the model's own
formatting (tags, anchors, odd quoting) reaches the file.

Known gaps (docs/llm.md says so): a comment before an explicit ``---`` at the top is dropped with
the ``---``, and a comment just above the item after a replaced one can go with it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

__all__ = ["merge_items", "remove_items", "render_items", "to_yaml_node"]

_SECTIONS = ("zones", "lines", "rules")
_FIRST_KEYS = ("id", "kind", "description")  # of a rule
_NEW_FILE_HEADER = (
    "# Rules drafted with `safewatch rules draft` and confirmed by an operator (docs/llm.md).\n"
)
_TIME = re.compile(r"^[0-9]{1,2}:[0-9]{2}$")
_SEQUENCE_ITEM = re.compile(r"^rules:[ \t]*(?:#.*)?\n(?:[ \t]*(?:#.*)?\n)*([ \t]*)- ", re.M)


def _yaml(text: str = "") -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap long lines the user wrote
    match = _SEQUENCE_ITEM.search(text)
    offset = len(match.group(1)) if match else 2
    rt.indent(mapping=2, sequence=offset + 2, offset=offset)
    return rt


def _needs_quotes(text: str) -> bool:
    """Whether a plain scalar would read back as something else than this string.

    Checked with PyYAML's YAML 1.1 rules, the loosest common reader: ``22:00`` (a base-60
    integer there), ``no``, ``on``, ``1e3``, ``null`` and friends get quotes; so do all times
    of day, as the docs write them.
    """
    if _TIME.match(text):
        return True
    try:
        return bool(yaml.safe_load(text) != text)
    except yaml.YAMLError:
        return True


def _all_scalars(items: Sequence[Any]) -> bool:
    return all(not isinstance(item, dict | list) for item in items)


def to_yaml_node(value: Any) -> Any:
    """Plain data -> ruamel nodes in the house style (short lists inline, times quoted)."""
    if isinstance(value, dict):
        node = CommentedMap()
        first = [k for k in _FIRST_KEYS if k in value] if "id" in value else []
        keys = first + [k for k in value if k not in first]
        for key in keys:
            node[key] = to_yaml_node(value[key])
        return node
    if isinstance(value, list):
        seq = CommentedSeq(to_yaml_node(item) for item in value)
        if _all_scalars(value) or all(isinstance(i, list) and _all_scalars(i) for i in value):
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, str) and _needs_quotes(value):
        return DoubleQuotedScalarString(value)
    return value


def _dump(rt: YAML, document: Any) -> str:
    stream = io.StringIO()
    rt.dump(document, stream)
    return stream.getvalue()


def _load(rt: YAML, text: str) -> CommentedMap:
    document = rt.load(text) if text.strip() else None
    if document is None:
        return CommentedMap(version=1)
    if not isinstance(document, CommentedMap):
        raise ValueError("the rule file is not a YAML mapping")
    return document


def _section(document: CommentedMap, name: str) -> Any:
    """The ``zones`` / ``lines`` mapping or ``rules`` list, created if absent."""
    current = document.get(name)
    if current is None:
        current = CommentedSeq() if name == "rules" else CommentedMap()
        document[name] = current
    return current


def _deepest_last(node: Any) -> tuple[CommentedMap, Any] | None:
    """The mapping and key holding the last scalar (or flow list) of a block node."""
    while isinstance(node, CommentedMap | CommentedSeq) and len(node) > 0:
        key = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
        child = node[key]
        nested = isinstance(child, CommentedMap | CommentedSeq) and len(child) > 0
        if nested and not child.fa.flow_style():
            node = child
            continue
        return (node, key) if isinstance(node, CommentedMap) else None
    return None


def _move_trailing_gap(old_last: Any, new_last: Any) -> None:
    """Keep the blank lines and comments that closed a section after the item appended to it.

    ruamel hangs what follows a section's last item (the blank line before ``rules:``, say) on
    that item's last value, so an appended item would land after the gap instead of before it.
    """
    source, target = _deepest_last(old_last), _deepest_last(new_last)
    if source is None or target is None:
        return
    container, key = source
    slots = container.ca.items.get(key)
    if not slots or len(slots) < 3 or slots[2] is None:
        return
    token, slots[2] = slots[2], None
    target_map, target_key = target
    target_map.ca.items.setdefault(target_key, [None, None, None, None])[2] = token


def _rule_index(rules: Any, rule_id: str) -> int | None:
    for index, rule in enumerate(rules):
        if isinstance(rule, Mapping) and rule.get("id") == rule_id:
            return index
    return None


def merge_items(
    text: str,
    *,
    zones: Mapping[str, Any] | None = None,
    lines: Mapping[str, Any] | None = None,
    rules: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Add (or replace, by id) zones, lines and rules in a rule file's text.

    Args:
        text: The file as it is now; ``""`` for a file that does not exist yet.
        zones: Zone id -> plain zone data.
        lines: Line id -> plain line data.
        rules: Plain rule data; a rule whose id is in the file replaces it in place, others are
            appended in order.

    Returns:
        The new text; everything not replaced is kept as written.
    """
    rt = _yaml(text)
    document = _load(rt, text)
    for name, items in (("zones", zones or {}), ("lines", lines or {})):
        if items:
            section = _section(document, name)
            for item_id, item in items.items():
                last = section[list(section)[-1]] if section and item_id not in section else None
                section[item_id] = to_yaml_node(dict(item))
                if last is not None:
                    _move_trailing_gap(last, section[item_id])
    if rules:
        section = _section(document, "rules")
        for rule in rules:
            index = _rule_index(section, str(rule["id"]))
            node = to_yaml_node(dict(rule))
            if index is None:
                last = section[-1] if len(section) > 0 else None
                section.append(node)
                if last is not None:
                    _move_trailing_gap(last, node)
            else:
                section[index] = node
    out = _dump(rt, document)
    return out if text.strip() else _NEW_FILE_HEADER + out


def remove_items(
    text: str,
    *,
    zone_ids: Iterable[str] = (),
    line_ids: Iterable[str] = (),
    rule_ids: Iterable[str] = (),
) -> str:
    """The file's text without the named zones, lines and rules (for trial validation only)."""
    rt = _yaml(text)
    document = _load(rt, text)
    for name, ids in (("zones", set(zone_ids)), ("lines", set(line_ids))):
        section = document.get(name)
        if isinstance(section, CommentedMap):
            for item_id in ids & set(section):
                del section[item_id]
    drop = set(rule_ids)
    rules = document.get("rules")
    if drop and isinstance(rules, list):
        for index in reversed(range(len(rules))):
            rule = rules[index]
            if isinstance(rule, Mapping) and rule.get("id") in drop:
                del rules[index]
    return _dump(rt, document)


def render_items(
    *,
    zones: Mapping[str, Any] | None = None,
    lines: Mapping[str, Any] | None = None,
    rules: Sequence[Mapping[str, Any]] = (),
) -> str:
    """A standalone rule-file fragment holding just these items (what the operator reviews)."""
    document = CommentedMap(version=1)
    for name, items in (("zones", zones or {}), ("lines", lines or {})):
        if items:
            document[name] = CommentedMap((k, to_yaml_node(dict(v))) for k, v in items.items())
    if rules:
        document["rules"] = CommentedSeq(to_yaml_node(dict(rule)) for rule in rules)
    return _dump(_yaml(), document)
