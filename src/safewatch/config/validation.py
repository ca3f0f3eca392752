"""Validate located YAML with pydantic and report errors as ``file:line: field: message``.

Pydantic's own error text is written for developers (``rules.0.ppe.require  Field required
[type=missing, input_value={...}]``) and echoes input values, which may be interpolated secrets.
Here each error becomes one :class:`ConfigError` with the line of the offending key (or of the
parent mapping for a missing field), a path in the user's terms, and a short message; values are
only ever shown as written in the file, and a secret field's value (a ``SecretStr``: passwords,
webhook secrets, Slack and Teams URLs) is never shown unless it was written as ``${VAR}``
references alone: a secret typed into the file itself is still a secret when it is malformed.
"""

from __future__ import annotations

import re
import types
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from safewatch.config.secrets import MIN_LENGTH
from safewatch.config.yaml_lines import FieldValueError, LocatedDocument, PathKey, format_path
from safewatch.errors import ConfigError

__all__ = ["ConfigErrors", "validate_document"]

ModelT = TypeVar("ModelT", bound=BaseModel)

_SCALARS = (str, int, float, bool, type(None))
_NO_VALUE_ECHO = {"missing", "extra_forbidden", "union_tag_invalid", "union_tag_not_found"}
_REFERENCES_ONLY = re.compile(r"(?:\$\{[A-Za-z_][A-Za-z0-9_]*\})+")
"""``${A}`` or ``${A}${B}``: text that names secrets without holding any (no ``:-default``)."""


class ConfigErrors(ConfigError):
    """Several problems in one file; behaves as the first, and prints all of them.

    ``check-config`` wants every mistake at once rather than one per run; code that only knows
    :class:`ConfigError` still gets the first problem's file, line and field.

    Attributes:
        errors: Every problem, sorted by line.
    """

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrors needs at least one error")
        self.errors = tuple(errors)
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line, field=first.field)

    def format(self) -> str:
        """One ``file:line: field: message`` line per problem."""
        return "\n".join(ConfigError.format(error) for error in self.errors)


def _child(container: Any, segment: int | str) -> tuple[bool, Any]:
    if isinstance(container, dict) and isinstance(segment, str) and segment in container:
        return True, container[segment]
    if isinstance(container, list) and isinstance(segment, int) and 0 <= segment < len(container):
        return True, container[segment]
    return False, None


def _resolve(loc: tuple[int | str, ...], data: Any) -> tuple[PathKey, Any, bool]:
    """Map a pydantic ``loc`` onto the data: (path, value there, whether the path exists).

    Pydantic inserts segments that are not in the data (a discriminated union's tag, validator
    names); those are skipped. A final segment that is not in the data is a missing or unknown
    field and is kept so the message can name it.
    """
    path: list[str | int] = []
    current = data
    for index, segment in enumerate(loc):
        found, child = _child(current, segment)
        if found:
            path.append(segment)
            current = child
        elif index == len(loc) - 1 and not (isinstance(segment, str) and "[" in segment):
            path.append(segment)
            return tuple(path), None, False
    return tuple(path), current, True


def _members(annotation: Any) -> list[Any]:
    """The types an annotation may hold: ``Annotated`` unwrapped, unions split."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


def _step(annotation: Any, segment: int | str) -> list[Any]:
    """The types found one ``loc`` segment below ``annotation`` (none: not one of its keys)."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if segment in (name, info.alias):
                # A field whose type is defined further down its module keeps a ForwardRef in
                # model_fields; the module's names resolve it.
                try:
                    hints = get_type_hints(annotation, include_extras=True)
                except (NameError, TypeError):
                    hints = {}
                return [hints.get(name, info.annotation)]
        return []
    if origin is dict:
        return [get_args(annotation)[1]]
    if origin in (list, tuple, set, frozenset) and isinstance(segment, int):
        args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
        return (
            args if origin is not tuple or len(args) <= 1 else [args[min(segment, len(args) - 1)]]
        )
    return []


def _is_secret(model: type[BaseModel], loc: tuple[int | str, ...]) -> bool:
    """Whether the field at a pydantic ``loc`` may be a secret (``SecretStr``) in ``model``.

    Walks the annotations along ``loc``; a segment no candidate type has (a discriminated union's
    tag, a validator's name) is one pydantic inserted, and is skipped. Any candidate that is a
    secret makes it a secret: showing too little beats showing a password.
    """
    candidates: list[Any] = [model]
    for segment in loc:
        expanded = [member for candidate in candidates for member in _members(candidate)]
        below = [found for member in expanded for found in _step(member, segment)]
        candidates = below or expanded
    return any(
        isinstance(member, type) and issubclass(member, SecretStr | SecretBytes)
        for candidate in candidates
        for member in _members(candidate)
    )


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "union_tag_invalid":
        discriminator = str(ctx.get("discriminator", "tag")).strip("'")
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"unknown {discriminator} {ctx.get('tag')!r} (expected one of: {expected})"
    if kind == "union_tag_not_found":
        return "required field is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message[:1].lower() + message[1:]


def _to_config_error(
    error: ErrorDetails, document: LocatedDocument, model: type[BaseModel]
) -> ConfigError:
    loc = tuple(error["loc"])
    located = (error.get("ctx") or {}).get("error")
    if isinstance(located, FieldValueError):
        loc = (*loc, *located.loc)
    path, value, exists = _resolve(loc, document.data)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str((error.get("ctx") or {}).get("discriminator", "kind")).strip("'")
        path = (*path, discriminator)
        exists = error["type"] == "union_tag_invalid"
    line = document.line_of(path) if exists else document.line_of(path[:-1])
    message = _message(error)
    raw = document.raw.get(path)
    secret = _is_secret(model, loc)
    if secret and (raw is None or not _REFERENCES_ONLY.fullmatch(raw)):
        raw = None
        if isinstance(value, str) and len(value) >= MIN_LENGTH:
            message = message.replace(value, "***")
    elif raw is not None and isinstance(value, str) and value:
        # A FieldValueError quotes its value (repr) beside other names (a list of the defined
        # ones): replacing every occurrence turned "ppe" into "${DET}e" for DET=pp.
        if isinstance(located, FieldValueError):
            message = message.replace(repr(value), repr(raw))
        else:
            message = message.replace(value, raw)
    # A FieldValueError's message names the value it is about already.
    echo = error["type"] not in _NO_VALUE_ECHO and not isinstance(located, FieldValueError)
    if exists and echo and isinstance(value, _SCALARS):
        if raw is not None:
            message = f"{message} (got {raw!r})"
        elif secret:
            message = f"{message} (the value is a secret: not shown)"
        else:
            message = f"{message} (got {value!r})"
    return ConfigError(message, file=document.file, line=line, field=format_path(path) or None)


def validate_document(model: type[ModelT], document: LocatedDocument) -> ModelT:
    """Validate ``document.data`` as ``model``.

    Raises:
        ConfigErrors: Every validation problem, located; raised ``from None`` so pydantic's
            text (which echoes input values) is not chained into tracebacks.
    """
    try:
        return model.model_validate(document.data if document.data is not None else {})
    except ValidationError as exc:
        errors = [_to_config_error(error, document, model) for error in exc.errors()]
    errors.sort(key=lambda e: e.line or 0)
    raise ConfigErrors(errors) from None
