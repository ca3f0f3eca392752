"""Edit the rule files, which stay the source of truth: the API never keeps rules anywhere else.

A save (a whole file from the YAML editor, a zone drawn on a still, a rule switched on or off)
goes through the same validation as ``safewatch rules validate`` and the hot reload: the candidate
file is put beside copies of the other rule files in a private temporary folder and the *whole*
set is loaded there (:func:`~safewatch.config.ruleset.load_rules`, with the site's cameras), since
references cross files. Only a valid set is written, atomically (a temporary file renamed over the
original, so the watcher never sees half a file) under the rules folder's writer lock (the one
confirmed LLM drafts take too), and reloaded; an invalid one is answered with
every ``file:line: field: message`` error and nothing on disk changes. Error locations name the
real file, not the temporary copy.

A file's version is its :func:`etag` (the SHA-256 of its text). A whole-file save or removal
that names the version it was made against (HTTP ``If-Match``) is refused with
:class:`~safewatch.errors.EditConflict` when the file has changed since, checked under the writer
lock: an editor left open would otherwise silently undo another admin's switch, zone or draft.

Structured edits (zones, lines, ``enabled``) use ruamel.yaml's round-trip mode, which keeps key
order and most comments, but re-indents the file (fixed indent, width 100), can lose the comment
above the next entry when the edited entry's last key is removed or replaced, and drops a header
comment before an explicit ``---`` (docs/api.md says so; a byte-exact edit is future work).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from safewatch.config.interpolate import expand
from safewatch.config.rules_lock import replace_rule_file, rule_write_error, rules_folder_lock
from safewatch.config.ruleset import RuleSet, load_rules, rules_using
from safewatch.config.site import SiteConfig
from safewatch.config.validation import ConfigErrors
from safewatch.errors import ConfigError, EditConflict, NotFound, SafewatchError
from safewatch.llm.workspace import sha256_text

__all__ = ["GeometryTaken", "Record", "RuleFiles", "SaveResult", "etag"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}\.ya?ml$")
MAX_FILE_BYTES = 1 << 20
"""Largest rule file the API accepts (1 MiB: thousands of rules)."""


class GeometryInUse(SafewatchError):
    """A zone or line that rules still name cannot be removed (HTTP 409).

    Validating the set without it answered "unknown zone 'drop_zone'" at a line of the unsaved
    text, which sent the user looking for a typo; this names the rules and where they are.
    """

    def __init__(self, kind: str, key: str, users: list[tuple[str, str, int]]) -> None:
        named = ", ".join(f"{rule_id} ({file}:{line})" for rule_id, file, line in users)
        rules = "rule" if len(users) == 1 else "rules"
        that = "that rule" if len(users) == 1 else "those rules"
        super().__init__(f"{kind} {key} is used by {rules} {named}; change or remove {that} first")


class GeometryTaken(SafewatchError):
    """A zone drawn under an id that another camera's zone has, or a line under another
    camera's line's id (HTTP 409).

    Ids are site-wide (a rule names its zone by id alone), so saving it would move that zone off
    its camera and silently change what the rules using it watch. Zones and lines are separate
    namespaces: a zone may have the id of a line."""

    def __init__(self, kind: str, key: str, camera: str) -> None:
        self.kind = kind
        self.key = key
        self.camera = camera
        super().__init__(f"{kind} {key} belongs to camera {camera}; choose another id")


@dataclass(frozen=True, slots=True)
class SaveResult:
    """A validated set and the file written (``None`` when only validated)."""

    rules: RuleSet
    file: Path | None


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _flow(points: list[list[float]]) -> CommentedSeq:
    outer = CommentedSeq()
    for x, y in points:
        inner = CommentedSeq([round(float(x), 4), round(float(y), 4)])
        inner.fa.set_flow_style()
        outer.append(inner)
    outer.fa.set_flow_style()
    return outer


class Record(Protocol):
    """Writes the audit record of a change to a rule file, before the change is put in place,
    and the record of its failure when the file then cannot be replaced or removed (the first
    record would otherwise stand for a change that never happened)."""

    def __call__(self, name: str, text: str | None) -> None:
        """Record the change of rule file ``name`` to ``text`` (``None``: removed)."""

    def failed(self, name: str, error: OSError) -> None:
        """Record that the change just recorded could not be made."""


def etag(text: str) -> str:
    """The HTTP entity tag of a rule file's text (quoted, as the ``ETag`` header carries it)."""
    return f'"{sha256_text(text)}"'


def _text_of(path: Path) -> str:
    """A rule file's text exactly as stored: ``read_text`` turns ``\r\n`` into ``\n``, so the
    version of a file saved with Windows line endings differed from the one its save returned,
    and the client's next save with that ``If-Match`` was refused."""
    return path.read_bytes().decode("utf-8")


def _check_version(path: Path, if_match: str | None) -> None:
    """Refuse a change made against another version of ``path`` (``If-Match``; ``*``: any).

    Raises:
        EditConflict: The file's current version is none of those named.
    """
    if if_match is None:
        return
    current = etag(_text_of(path)) if path.is_file() else None
    wanted = [tag.strip().removeprefix("W/") for tag in if_match.split(",")]
    if current is not None and ("*" in wanted or current in wanted):
        return
    raise EditConflict(
        f"{path.name} was changed by someone else since you opened it; reload it, re-apply your "
        "edit and save again"
        if current is not None
        else f"{path.name} was removed since you opened it"
    )


def _write(path: Path, text: str, record: Record | None) -> None:
    """Replace rule file ``path`` atomically, recorded first (as confirmed drafts are): a record
    that cannot be written leaves the file, and so the rules in force, unchanged."""
    if record is None:
        replace_rule_file(path, text)
        return
    replace_rule_file(
        path,
        text,
        lambda: record(path.name, text),
        failed=lambda error: record.failed(path.name, error),
    )


def _remove_entry(data: CommentedMap, section: str, key: str) -> None:
    """Delete ``data[section][key]`` with the comment written above it, and the section itself
    once it is empty.

    ruamel keeps the comment above a mapping's first entry on the mapping (and on its parent's
    key); left there after the entry is gone it was written as a comment followed by ``{}`` at
    column 0, which is not YAML, so deleting a commented zone or line failed with a syntax
    error in a file that had none.
    """
    block = data[section]
    first = next(iter(block)) == key
    del block[key]
    if first:
        block.ca.comment = None
        above = data.ca.items.get(section)
        if above is not None and len(above) > 3:
            above[3] = None
    if not block:
        del data[section]


class RuleFiles:
    """The rule folder (or single rule file) the runtime watches.

    Args:
        path: Rules folder or file.
        site: The site in force (rules are checked against its cameras).
    """

    def __init__(self, path: Path, site: Callable[[], SiteConfig]) -> None:
        self.path = path
        self._site = site

    @property
    def folder(self) -> Path:
        """The folder holding the rule files."""
        return self.path if self.path.is_dir() else self.path.parent

    def names(self) -> list[str]:
        """Rule file names, in load order."""
        if not self.path.is_dir():
            return [self.path.name]
        return sorted(
            p.name for p in self.path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
        )

    def file(self, name: str) -> Path:
        """The path of rule file ``name``.

        Raises:
            ValueError: Not a plain ``*.yaml`` name (no folders, no dot-files).
        """
        if not _NAME.match(name):
            raise ConfigError(
                "a rule file name is letters, digits, '_', '.', '-' ending in .yaml or .yml",
                field="name",
            )
        if not self.path.is_dir() and name != self.path.name:
            raise NotFound("rule file", name)
        return self.folder / name

    def read(self, name: str) -> str:
        """The text of rule file ``name``.

        Raises:
            NotFound: No such file.
        """
        path = self.file(name)
        if not path.is_file():
            raise NotFound("rule file", name)
        return _text_of(path)

    def validate(self, name: str, text: str | None) -> RuleSet:
        """Load the whole set as it would be with ``name`` holding ``text`` (``None``: deleted).

        Raises:
            ConfigError: Every problem, located in the real files.
        """
        with tempfile.TemporaryDirectory(prefix="safewatch-rules-") as tmp:
            return self.stage({name: text}, Path(tmp))

    def stage(self, changes: Mapping[str, str | None], folder: Path) -> RuleSet:
        """Copy the rule files into ``folder`` with ``changes`` applied, and load that set.

        A backtest of unsaved edits runs on such a copy; validation uses a throwaway one.

        Args:
            changes: File name -> its new text (``None``: the file is removed).
            folder: An empty folder to write the proposed set into.

        Raises:
            ConfigError: Every problem, located in the real files (nothing of them changes).
        """
        for name, text in changes.items():
            self.file(name)  # a plain rule-file name, or an error
            if text is not None and len(text.encode()) > MAX_FILE_BYTES:
                raise ConfigError(f"rule file is larger than {MAX_FILE_BYTES} bytes", file=name)
        for other in self.names():
            if other not in changes:
                shutil.copyfile(self.folder / other, folder / other)
        for name, text in changes.items():
            if text is not None:
                (folder / name).write_text(text, encoding="utf-8")
        source = folder if self.path.is_dir() else folder / self.path.name
        try:
            return load_rules(source, self._site())
        except ConfigError as exc:
            raise _relocate(exc, folder, self.folder) from None

    def save(
        self, name: str, text: str, *, record: Record | None = None, if_match: str | None = None
    ) -> SaveResult:
        """Validate, then write ``name`` atomically (``record`` first, see :func:`_write`).

        Raises:
            ConfigError: The set would be invalid (nothing is written).
            EditConflict: ``if_match`` names another version than the file's (nothing written).
        """
        with rules_folder_lock(self.folder):
            _check_version(self.file(name), if_match)
            rules = self.validate(name, text)
            path = self.file(name)
            _write(path, text, record)
            return SaveResult(rules, path)

    def delete(
        self, name: str, *, record: Record | None = None, if_match: str | None = None
    ) -> SaveResult:
        """Remove rule file ``name`` if the rest stays valid (``record`` first).

        Raises:
            NotFound: No such file.
            ConfigError: Other files refer to what it defines.
        """
        with rules_folder_lock(self.folder):
            path = self.file(name)
            if not path.is_file():
                raise NotFound("rule file", name)
            _check_version(path, if_match)
            if not self.path.is_dir():
                raise ConfigError("the only rule file cannot be removed", file=name)
            rules = self.validate(name, None)
            if record is not None:
                record(name, None)
            try:
                path.unlink()
            except OSError as exc:
                if record is not None:
                    record.failed(name, exc)
                raise rule_write_error(path, exc) from None
            return SaveResult(rules, None)

    # -- structured edits -------------------------------------------------------------------

    def _load(self, name: str) -> tuple[YAML, Any]:
        yaml = _yaml()
        try:
            data = yaml.load(self.read(name))
        except YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", file=name) from None
        if data is None:
            data = CommentedMap([("version", 1)])
        if not isinstance(data, CommentedMap):
            raise ConfigError("a rule file is a mapping (version, zones, lines, rules)", file=name)
        return yaml, data

    def _dump(self, yaml: YAML, data: Any) -> str:
        out = io.StringIO()
        yaml.dump(data, out)
        return out.getvalue()

    def locate(self, section: str, key: str) -> str | None:
        """The file defining zone/line ``key`` (``section`` ``zones`` or ``lines``), if any."""
        for name in self.names():
            try:
                _, data = self._load(name)
            except ConfigError:
                continue
            block = data.get(section)
            if isinstance(block, dict) and key in block:
                return name
        return None

    def geometry_edit(
        self,
        section: str,
        key: str,
        camera: str,
        points: list[list[float]],
        *,
        description: str | None = None,
        file: str | None = None,
    ) -> tuple[str, str]:
        """The rule file that would hold zone/line ``key`` and its text with the edit (not saved).

        The zone stays in the file that defines it; a new one goes to ``file`` (default: the
        first rule file, or ``zones.yaml`` in an empty folder). Key order and the other entries
        are kept (comments mostly: see the module docstring).

        A zone/line whose camera is not in the site in force is re-homed on ``camera``: its
        camera was removed (or renamed), the whole rule set no longer loads because of it, and
        redrawing it on a camera the site has (or deleting it) is how the dashboard fixes that.

        Raises:
            GeometryTaken: ``key`` is another camera's zone (line, for a line), that camera
                being in the site (redrawing it here would take it off that camera, under the
                rules that use it).
        """
        name = self.locate(section, key) or file or (self.names() or ["zones.yaml"])[0]
        path = self.file(name)
        if path.is_file():
            yaml, data = self._load(name)
        else:
            yaml, data = _yaml(), CommentedMap([("version", 1)])
        block = data.get(section)
        if not isinstance(block, CommentedMap):
            block = CommentedMap()
            data[section] = block
        entry = block.get(key)
        if not isinstance(entry, CommentedMap):
            entry = CommentedMap()
            block[key] = entry
        owner = _camera_of(entry.get("camera", camera))
        if owner != camera and owner in self._site().cameras:
            raise GeometryTaken(section[:-1], key, owner)
        if "camera" not in entry or owner != camera:  # a ``${VAR}`` naming it stays as written
            entry["camera"] = camera
        entry["polygon" if section == "zones" else "points"] = _flow(points)
        if description is not None:
            if description:
                entry["description"] = description
            else:
                entry.pop("description", None)
        return name, self._dump(yaml, data)

    def put_geometry(
        self,
        section: str,
        key: str,
        camera: str,
        points: list[list[float]],
        *,
        description: str | None = None,
        file: str | None = None,
        record: Record | None = None,
    ) -> SaveResult:
        """Create or replace zone/line ``key`` and save (see :meth:`geometry_edit`)."""
        with rules_folder_lock(self.folder):
            name, text = self.geometry_edit(
                section, key, camera, points, description=description, file=file
            )
            rules = self.validate(name, text)
            path = self.file(name)
            _write(path, text, record)
            return SaveResult(rules, path)

    def delete_geometry(
        self, section: str, key: str, *, record: Record | None = None
    ) -> SaveResult:
        """Remove zone/line ``key`` (refused while a rule still uses it).

        Raises:
            NotFound: No such zone or line.
            GeometryInUse: Rules name it (each one and its ``file:line``).
            ConfigError: The set would not load without it for another reason.
        """
        with rules_folder_lock(self.folder):
            name = self.locate(section, key)
            if name is None:
                raise NotFound(section[:-1], key)
            files = [self.folder / other for other in self.names()]
            users = rules_using(files, section[:-1], key)
            if users:
                raise GeometryInUse(
                    section[:-1],
                    key,
                    [(rule, Path(file).name, line) for rule, file, line in users],
                )
            yaml, data = self._load(name)
            _remove_entry(data, section, key)
            text = self._dump(yaml, data)
            rules = self.validate(name, text)
            path = self.file(name)
            _write(path, text, record)
            return SaveResult(rules, path)

    def set_enabled(
        self, rule_id: str, enabled: bool, *, record: Record | None = None
    ) -> SaveResult:
        """Switch rule ``rule_id`` on or off in its file."""
        with rules_folder_lock(self.folder):
            for name in self.names():
                yaml, data = self._load(name)
                for rule in data.get("rules") or []:
                    if isinstance(rule, CommentedMap) and rule.get("id") == rule_id:
                        if enabled:
                            rule.pop("enabled", None)
                        else:
                            rule["enabled"] = False
                        text = self._dump(yaml, data)
                        rules = self.validate(name, text)
                        path = self.file(name)
                        _write(path, text, record)
                        return SaveResult(rules, path)
            raise NotFound("rule", rule_id)


def _camera_of(written: object) -> str:
    """The camera a zone's or line's ``camera:`` names, as the rule set loads it: ``${VAR}``
    expanded from the environment (compared as written, ``camera: ${YARD_CAM}`` redrawn on its
    own camera was refused as "belongs to camera ${YARD_CAM}"). A reference that does not
    expand (an unset variable: the set cannot load) names no camera of the site."""
    try:
        return expand(str(written), os.environ)
    except ConfigError:
        return str(written)


def _relocate(error: ConfigError, scratch: Path, real: Path) -> ConfigError:
    """The same error with the temporary folder replaced by the real one in every location."""

    def fix(one: ConfigError) -> ConfigError:
        file = one.file
        if file is not None:
            file = file.replace(str(scratch), str(real))
        message = one.message.replace(str(scratch), str(real))
        return ConfigError(message, file=file, line=one.line, field=one.field)

    if isinstance(error, ConfigErrors):
        return ConfigErrors([fix(e) for e in error.errors])
    return fix(error)
