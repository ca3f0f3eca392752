"""``${VAR}`` and ``${VAR:-default}`` in config strings, read from the environment.

Camera URLs carry credentials; keeping them in the environment (or a secrets manager that fills
it) keeps them out of the site file and out of version control. The syntax is the shell's subset
everyone knows: ``${VAR}`` must be set and not empty, ``${VAR:-default}`` falls back when the
variable is unset or empty (``${VAR:-}``: empty is fine), and ``$${`` writes a literal ``${``.
Errors name the variable, never its value.

An empty ``${VAR}`` is refused like an unset one, unlike the shell: a container manager passes a
variable it was not given on as empty (compose's ``VAR: ${VAR:-}``, deploy/compose.yaml), and the
empty value then failed far from its cause (``source '': no file at ...``) instead of naming the
variable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from safewatch.config.yaml_lines import PathKey, format_path
from safewatch.errors import ConfigError

__all__ = ["Interpolation", "expand"]

_PATTERN = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Interpolation:
    """Expands ``${VAR}`` against one environment mapping (``os.environ`` by default).

    A callable object rather than a closure so tests pass a plain dict as the environment.
    ``expanded`` collects every value taken from the environment: they are the secrets the docs
    promise to mask by value (:mod:`safewatch.config.secrets`), except values at the paths
    ``public`` says name something the API shows anyway (a rule file's camera ids).
    """

    def __init__(
        self, environ: Mapping[str, str], public: Callable[[PathKey], bool] | None = None
    ) -> None:
        self._environ = environ
        self._public = public
        self.expanded: set[str] = set()

    def __call__(self, text: str, file: str, line: int, path: PathKey) -> str:
        """Expand ``text``; see :func:`expand`."""
        found = None if self._public is not None and self._public(path) else self.expanded
        return expand(text, self._environ, file=file, line=line, path=path, found=found)


def expand(
    text: str,
    environ: Mapping[str, str],
    *,
    file: str | None = None,
    line: int | None = None,
    path: PathKey = (),
    found: set[str] | None = None,
) -> str:
    """Replace every ``${VAR}`` / ``${VAR:-default}`` in ``text``.

    ``found``, when given, receives each value taken from ``environ``.

    Raises:
        ConfigError: When a variable without a default is unset or empty, or a reference is
            malformed.
            The message quotes the reference as written, never a value.
    """

    def error(message: str) -> ConfigError:
        return ConfigError(message, file=file, line=line, field=format_path(path) or None)

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group(1)
        name, has_default, default = body.partition(":-")
        if not _NAME.match(name):
            raise error(
                f"invalid variable reference ${{{body}}}: expected ${{NAME}} or ${{NAME:-default}}"
            )
        value = environ.get(name)
        if value:
            if found is not None:
                found.add(value)
            return value
        if has_default:
            return default
        if value is None:
            raise error(f"environment variable {name} is not set (referenced as ${{{name}}})")
        raise error(
            f"environment variable {name} is empty (referenced as ${{{name}}}; "
            f"write ${{{name}:-}} where an empty value is meant)"
        )

    if "${" in _PATTERN.sub("", text):
        raise error("unterminated variable reference: expected ${NAME} or ${NAME:-default}")
    return _PATTERN.sub(replace, text)
