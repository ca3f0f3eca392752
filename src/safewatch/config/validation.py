"""Validate located YAML with pydantic and report errors as ``file:line: field: message``.

Pydantic's own error text is written for developers (``rules.0.ppe.require  Field required
[type=missing, input_value={...}]``) and echoes input values, which may be interpolated secrets.
Here each error becomes one :class:`ConfigError` with the line of the offending key (or of the
parent mapping for a missing field), a path in the user's terms, and a short message; values are
only ever shown as written in the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from safewatch.config.yaml_lines import LocatedDocument, PathKey, format_path
from safewatch.errors import ConfigError

__all__ = ["ConfigErrors", "validate_document"]

ModelT = TypeVar("ModelT", bound=BaseModel)

_SCALARS = (str, int, float, bool, type(None))
_NO_VALUE_ECHO = {"missing", "extra_forbidden", "union_tag_invalid", "union_tag_not_found"}


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


def _to_config_error(error: ErrorDetails, document: LocatedDocument) -> ConfigError:
    path, value, exists = _resolve(tuple(error["loc"]), document.data)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str((error.get("ctx") or {}).get("discriminator", "kind")).strip("'")
        path = (*path, discriminator)
        exists = error["type"] == "union_tag_invalid"
    line = document.line_of(path) if exists else document.line_of(path[:-1])
    message = _message(error)
    raw = document.raw.get(path)
    if raw is not None and isinstance(value, str) and value:
        message = message.replace(value, raw)
    if exists and error["type"] not in _NO_VALUE_ECHO and isinstance(value, _SCALARS):
        shown = raw if raw is not None else value
        message = f"{message} (got {shown!r})"
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
        errors = [_to_config_error(error, document) for error in exc.errors()]
    errors.sort(key=lambda e: e.line or 0)
    raise ConfigErrors(errors) from None
