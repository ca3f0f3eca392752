"""The rule files a draft is made against, and trial validation of a change to them.

A draft is judged by the real loader (:func:`~safewatch.config.ruleset.load_rules`) on the whole
set as it would be after the change, with the site, so every cross-reference check (zones exist,
cameras exist and are calibrated for metres, ids unique across files) applies exactly as at
``safewatch serve``. The trial runs on copies in a temporary folder, never on the real files, and
its messages name the real files (or ``draft.yaml`` for the model's own text).

The target is one ``.yaml`` / ``.yml`` file directly in the rules folder (or the rules file
itself): a draft can never be aimed at another path, whatever the request or the model says.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safewatch.config.loader import read_document
from safewatch.config.rules import LineConfig, Rule, ZoneConfig
from safewatch.config.ruleset import RuleSet, load_rule_file, load_rules
from safewatch.config.site import SiteConfig
from safewatch.config.validation import ConfigErrors
from safewatch.errors import ConfigError

__all__ = [
    "DEFAULT_TARGET",
    "ItemKind",
    "RuleFileItems",
    "RuleWorkspace",
    "Snapshot",
    "sha256_text",
]

DEFAULT_TARGET = "drafts.yaml"
"""The file drafts go to in a rules folder when no target is named."""

ItemKind = Literal["rule", "zone", "line"]

_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.ya?ml$")


def sha256_text(text: str) -> str:
    """Hex SHA-256 of ``text`` as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class RuleFileItems:
    """The validated zones, lines and rules of one file, by id, and the rules as written."""

    path: Path
    zones: Mapping[str, ZoneConfig]
    lines: Mapping[str, LineConfig]
    rules: Mapping[str, Rule]
    written_rules: Mapping[str, Any]

    def get(self, kind: ItemKind, item_id: str) -> ZoneConfig | LineConfig | Rule | None:
        """The item of this kind and id, if this file defines it."""
        table: Mapping[str, Any] = {"rule": self.rules, "zone": self.zones, "line": self.lines}[
            kind
        ]
        return table.get(item_id)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The rule set and the target file at one moment (a draft is made against one).

    Attributes:
        rule_set: The whole current set, validated with the site.
        files: Each file's items.
        target: The file the draft changes (may not exist yet).
        target_text: Its text now (``""`` if it does not exist).
    """

    rule_set: RuleSet
    files: tuple[RuleFileItems, ...]
    target: Path
    target_text: str

    @property
    def target_sha256(self) -> str:
        """Hash of the target's text, to notice an edit between draft and save."""
        return sha256_text(self.target_text)

    def owner(self, kind: ItemKind, item_id: str) -> RuleFileItems | None:
        """The file defining this rule, zone or line."""
        return next((f for f in self.files if f.get(kind, item_id) is not None), None)

    @property
    def target_items(self) -> RuleFileItems | None:
        """The target's items, if the target exists."""
        return next((f for f in self.files if f.path == self.target), None)


class RuleWorkspace:
    """A site, its rules path and the one file drafts may change.

    Args:
        site: The site (cameras for cross-checks and the prompt).
        rules_path: A rules folder or a single rules file, as ``safewatch serve --rules`` takes.
        target: File name (or path) in the folder; default ``drafts.yaml`` for a folder, the
            file itself for a single file.
        environ: Variables for ``${VAR}`` in the existing files; default ``os.environ``.

    Raises:
        ConfigError: The rules path does not exist, or the target is not a YAML file directly in
            the rules folder.
    """

    def __init__(
        self,
        site: SiteConfig,
        rules_path: str | Path,
        target: str | Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.site = site
        self.rules_path = Path(rules_path)
        self.environ = environ
        self.target = self._resolve_target(target)

    def _resolve_target(self, target: str | Path | None) -> Path:
        root = self.rules_path
        if not root.exists():
            raise ConfigError("rules file or folder not found", file=str(root))
        if root.is_file():
            if target is not None and not _names_file(Path(target), root):
                raise ConfigError(
                    f"the draft target must be the rules file itself ({root}), not {target}"
                )
            return root
        candidate = Path(target) if target is not None else Path(DEFAULT_TARGET)
        if len(candidate.parts) > 1 and candidate.resolve().parent != root.resolve():
            raise ConfigError(
                f"the draft target {candidate} is not directly in the rules folder {root}"
            )
        if not _TARGET_NAME.match(candidate.name):
            raise ConfigError(
                f"the draft target {candidate.name!r} must be a .yaml or .yml file name "
                "(letters, digits, '_', '.', '-')"
            )
        return root / candidate.name

    def snapshot(self) -> Snapshot:
        """Load the current rules (which must validate) and read the target.

        Raises:
            ConfigError: The current rule set does not validate (every problem listed).
        """
        rule_set = load_rules(self.rules_path, self.site, environ=self.environ)
        files = []
        for path in rule_set.files:
            rule_file, _ = load_rule_file(path, environ=self.environ)
            written = read_document(path, interpolate=False).data or {}
            written_rules = {
                str(rule.get("id")): rule
                for rule in (written.get("rules") or [])
                if isinstance(rule, dict)
            }
            files.append(
                RuleFileItems(
                    path=path,
                    zones=dict(rule_file.zones),
                    lines=dict(rule_file.lines),
                    rules={rule.id: rule for rule in rule_file.rules},
                    written_rules=written_rules,
                )
            )
        text = self.target.read_text(encoding="utf-8") if self.target.exists() else ""
        return Snapshot(rule_set=rule_set, files=tuple(files), target=self.target, target_text=text)

    def trial(
        self,
        replace: Mapping[Path, str],
        extra: Mapping[str, tuple[str, str]] | None = None,
        *,
        bare_names: bool = False,
    ) -> tuple[RuleSet | None, list[ConfigError]]:
        """Validate the set as it would be with some files' text replaced or added.

        Args:
            replace: File (of the set, or the new target) -> its text in the trial.
            extra: Extra files for the trial: name in the folder -> (text, name shown in
                messages).
            bare_names: Name files without their folder (messages sent to a model need not
                tell it where the server keeps its files).

        Returns:
            The trial rule set (``None`` when invalid) and every problem, located in the real
            files' names.
        """
        extra = extra or {}
        files = {p: p.read_text(encoding="utf-8") for p in self._current_files()}
        files.update(replace)
        with tempfile.TemporaryDirectory(prefix="safewatch-draft-") as folder:
            shown: dict[str, str] = {}
            for path, text in files.items():
                (Path(folder) / path.name).write_text(text, encoding="utf-8")
                shown[str(Path(folder) / path.name)] = path.name if bare_names else str(path)
            for name, (text, display) in extra.items():
                (Path(folder) / name).write_text(text, encoding="utf-8")
                shown[str(Path(folder) / name)] = display
            try:
                return load_rules(folder, self.site, environ=self.environ), []
            except ConfigError as exc:
                found = exc.errors if isinstance(exc, ConfigErrors) else (exc,)
                return None, [_relocate(error, folder, shown) for error in found]

    def _current_files(self) -> list[Path]:
        if self.rules_path.is_file():
            return [self.rules_path]
        return sorted(
            p for p in self.rules_path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
        )


def _names_file(target: Path, root: Path) -> bool:
    """Whether ``target`` names the single rules file ``root``.

    A bare name is a name in the rules' folder, as it is for a rules folder (the API sends the
    name; the server's working directory is anywhere); a path is resolved as given. Before, a
    bare name was resolved against the working directory, so the Rules page of a server started
    elsewhere could neither check nor save a draft of its one rules file.
    """
    if len(target.parts) == 1:
        return target.name == root.name
    return target.resolve() == root.resolve()


def _relocate(error: ConfigError, folder: str, shown: Mapping[str, str]) -> ConfigError:
    """The same error with the trial folder's file names replaced by the real ones."""
    message = error.message
    for trial_name, real_name in sorted(shown.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(trial_name, real_name)
    file = shown.get(error.file or "", error.file)
    if file is not None and file.startswith(folder):
        file = file.replace(folder, "<trial>")  # pragma: no cover - every trial file is mapped
    return ConfigError(message, file=file, line=error.line, field=error.field)
