"""YAML parsing that remembers the line of every key and value.

Pydantic validates plain dicts and lists and reports a location as a path (``cameras.yard.fps``);
to print ``site.yaml:12: cameras.yard.fps: ...`` we need the line each path came from. PyYAML's
``compose`` keeps a start mark on every node, so we compose (never construct) and turn the node
tree into plain data and a path -> line table ourselves. Doing the conversion by hand also lets us
refuse duplicate keys (PyYAML silently keeps the last one) and interpolate ``${VAR}`` per scalar
while remembering the raw text, so an error message never shows a secret.

The resolver is deliberately closer to YAML 1.2 than PyYAML's 1.1 default: ``06:00`` stays the
string ``"06:00"`` (not the sexagesimal integer 360), ``2024-01-02`` stays a string and ``no`` is
not ``False`` (pydantic still accepts ``yes``/``no``/``on``/``off`` for boolean fields).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from safewatch.errors import ConfigError

__all__ = ["FieldValueError", "LocatedDocument", "PathKey", "format_path", "parse_yaml"]

PathKey = tuple[str | int, ...]
"""A location in a document: mapping keys (str) and sequence indexes (int)."""

Interpolator = Callable[[str, str, int, PathKey], str]
"""``(text, file, line, path) -> expanded text``; raises :class:`ConfigError` when it cannot."""

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars (see the module docstring)."""


# A fresh table: add_implicit_resolver copies the parent's table unless the class has its own.
_Loader.yaml_implicit_resolvers = {}


_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_Loader.add_implicit_resolver(_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


def format_path(path: PathKey) -> str:
    """Render a path the way users read it: ``rules[0].require``, ``cameras.yard.fps``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class FieldValueError(ValueError):
    """A model validator's error about one field below the model, not the model as a whole.

    Pydantic locates an error raised by a ``model_validator`` at the model itself, so a
    cross-field check (a camera naming an undefined model) was reported at the line of the
    model's first key (``version: 1`` for the site file) with no field. Raising this instead
    lets :func:`safewatch.config.validation.validate_document` locate it at ``loc`` below the
    model (file, line and field), as it locates any field's error.

    Attributes:
        loc: Path from the validated model to the offending field, e.g.
            ``("cameras", "yard", "models", 1)``.
    """

    def __init__(self, message: str, *loc: int | str) -> None:
        super().__init__(message)
        self.loc = loc


@dataclass(frozen=True, slots=True)
class LocatedDocument:
    """A parsed YAML document and where each part of it came from.

    Attributes:
        file: The file name used in messages (as given by the caller).
        data: Plain Python data: dicts, lists, str, int, float, bool, None.
        lines: Path -> 1-based line. For a mapping entry, the line of its key; for a sequence
            item, the line the item starts on; ``()`` is the document's first line.
        raw: Path -> the scalar's text before ``${VAR}`` interpolation, for scalars that were
            interpolated; messages show this text instead of the (possibly secret) value.
    """

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)
    raw: dict[PathKey, str] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int:
        """Line of ``path``, or of its nearest ancestor that has one (a missing field's parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


MAX_NODES = 100_000
"""Most values a site or rule file may hold once its aliases are expanded (a large real file holds
a few thousand)."""


MAX_DEPTH = 64
"""Most levels a site or rule file may nest (a real one nests fewer than ten). Python recursion
stops near a thousand: a file of ~2,000 ``[`` or an alias inside the block it names
(``rules: &r [*r]``) raised RecursionError, a traceback from check-config and a 500 from the
dashboard's rule editor, which validates files any operator may send."""


class _Converter:
    """Walks a composed node tree into plain data, filling the line and raw tables."""

    def __init__(self, file: str, interpolate: Interpolator | None) -> None:
        self.file = file
        self.interpolate = interpolate
        self.lines: dict[PathKey, int] = {}
        self.raw: dict[PathKey, str] = {}
        self.nodes = 0

    def error(self, node: Node, path: PathKey, message: str) -> ConfigError:
        return ConfigError(
            message, file=self.file, line=_line(node), field=format_path(path) or None
        )

    def convert(self, node: Node, path: PathKey) -> Any:
        if len(path) > MAX_DEPTH:
            raise ConfigError(  # no field: the path is the nesting itself, thousands of chars
                f"nested more than {MAX_DEPTH} levels deep; a YAML alias (*name) inside the "
                "block it names?",
                file=self.file,
                line=_line(node),
            )
        self.nodes += 1
        if self.nodes > MAX_NODES:
            # Aliases nest: a few hundred bytes of `&a [*b, *b, ...]` expand to billions of
            # values, and the API validates files any viewer may send.
            raise self.error(
                node,
                path,
                f"the file expands to more than {MAX_NODES:,} values; YAML aliases (*name) "
                "repeating large blocks? Write the values out",
            )
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                raise self.error(node, path, f"unsupported YAML tag {node.tag}")
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = _line(item)
                items.append(self.convert(item, (*path, index)))
            return items
        assert isinstance(node, ScalarNode)
        return self._scalar(node, path)

    def _mapping(self, node: MappingNode, path: PathKey) -> dict[str, Any]:
        if node.tag != _MAP:
            raise self.error(node, path, f"unsupported YAML tag {node.tag}")
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.error(key_node, path, "mapping keys must be plain text")
            key = str(key_node.value)
            if key == "<<" and key_node.style is None:
                raise self.error(key_node, path, "YAML merge keys (<<) are not supported")
            if key in first_line:
                raise self.error(
                    key_node,
                    (*path, key),
                    f"duplicate key (first defined at line {first_line[key]})",
                )
            first_line[key] = _line(key_node)
            self.lines[(*path, key)] = _line(key_node)
            result[key] = self.convert(value_node, (*path, key))
        return result

    def _scalar(self, node: ScalarNode, path: PathKey) -> Any:
        text = str(node.value)
        tag = node.tag
        if tag == _STR:
            if self.interpolate is not None and "$" in text:
                expanded = self.interpolate(text, self.file, _line(node), path)
                if expanded != text:
                    self.raw[path] = text
                return expanded
            return text
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return text.lower() == "true"
        if tag == _INT:
            return int(text, 0) if text.startswith(("0x", "0o")) else int(text)
        if tag == _FLOAT:
            lowered = text.lower()
            if lowered.endswith(".nan"):
                return float("nan")
            if lowered.endswith(".inf"):
                return float("-inf") if text.startswith("-") else float("inf")
            return float(text)
        raise self.error(node, path, f"unsupported YAML tag {tag}")


def parse_yaml(
    text: str, file: str | Path, *, interpolate: Interpolator | None = None
) -> LocatedDocument:
    """Parse one YAML document with a line for every path.

    Args:
        text: The YAML source.
        file: Name shown in error messages.
        interpolate: Called on every string scalar containing ``$`` (see
            :func:`safewatch.config.interpolate.expand`); ``None`` leaves strings as written.

    Returns:
        The document; an empty file gives ``data=None``.

    Raises:
        ConfigError: On a syntax error (with the line PyYAML reports), a duplicate key, an
            unsupported tag, more than one document, nesting deeper than :data:`MAX_DEPTH`, or
            a failed interpolation.
    """
    name = str(file)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else int(mark.line) + 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", file=name, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=name) from None
    except RecursionError:  # PyYAML composes recursively: see MAX_DEPTH
        raise ConfigError(
            f"YAML nested too deeply to read (more than {MAX_DEPTH} levels are refused anyway)",
            file=name,
        ) from None
    if node is None:
        return LocatedDocument(name, None, {(): 1})
    converter = _Converter(name, interpolate)
    converter.lines[()] = _line(node)
    data = converter.convert(node, ())
    return LocatedDocument(name, data, converter.lines, converter.raw)
