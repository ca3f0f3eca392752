"""Request -> model -> validated, guarded rule change, with up to two repair rounds.

Each round takes the model's reply through the same gates, in order: find the one YAML block
(:mod:`~safewatch.llm.reply`), parse it with the rule loader's own YAML reader (no tags, no
interpolation), refuse anything beyond rules (:func:`~safewatch.llm.guard.refuse_outside_rules`),
validate it against the rule-file schema, sort it into additions and allowed changes
(:func:`~safewatch.llm.guard.classify_changes`), check its labels against what the site's models
detect, then validate the whole rule set as it would be with the draft, with the real loader and
the site. A gate that finds *mistakes* sends the exact ``draft.yaml:LINE: field: message`` lines
back to the model for another try; a gate that finds the draft *overreaching* refuses it at once.
A draft that is still invalid after the last repair comes back marked invalid, with the errors, and
can never be saved.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from safewatch.config.rules import (
    LineConfig,
    PPERule,
    ProximityRule,
    Rule,
    RuleFile,
    ZoneClearRule,
    ZoneConfig,
)
from safewatch.config.ruleset import RuleSet
from safewatch.config.site import SiteConfig
from safewatch.config.validation import ConfigErrors, validate_document
from safewatch.config.yaml_lines import LocatedDocument, parse_yaml
from safewatch.errors import ConfigError
from safewatch.llm.client import ChatClient, ChatMessage, ChatReply
from safewatch.llm.errors import DraftError
from safewatch.llm.guard import (
    Change,
    GuardedDraft,
    check_allow_modify,
    classify_changes,
    refuse_outside_rules,
)
from safewatch.llm.prompt import (
    DraftTurn,
    LabelVocabulary,
    build_messages,
    repair_message,
    site_facts,
    site_labels,
)
from safewatch.llm.reply import ReplyFormatError, extract_draft, reply_notes, without_thinking
from safewatch.llm.workspace import RuleWorkspace, Snapshot
from safewatch.llm.yaml_edit import merge_items, remove_items, render_items
from safewatch.rules.explain import explain_rule

__all__ = ["DRAFT_FILE", "DraftResult", "RuleDrafter", "check_draft_text", "unified_diff"]

DRAFT_FILE = "draft.yaml"
"""The name the model's YAML block has in error messages."""

_TRIAL_NAME = "~draft.yaml"  # sorts after every target name, so duplicates are reported in it
_CUT_OFF = "the reply was cut off (max_tokens), so its end is missing; give a shorter draft"
_RAISE_MAX_TOKENS = (
    "the model's last reply was cut off at llm.max_tokens, so the end of its draft is missing; "
    "raise llm.max_tokens in the site file (docs/llm.md) or ask for less at once"
)


@dataclass(frozen=True, slots=True)
class DraftResult:
    """A draft, ready for an operator to review (and, when valid, to confirm).

    Attributes:
        request: The operator's words.
        target: The rule file the draft changes.
        valid: Whether it passed every check; only a valid draft can be saved.
        yaml: The reviewed fragment (the added and changed items, in house style); for an
            invalid draft, the model's last YAML (or reply) as it wrote it.
        diff: Unified diff of the target file (empty for an invalid draft).
        explanation: Each change in plain words (:func:`~safewatch.rules.explain.explain_rule`).
        changes: What is added or changed.
        warnings: What the operator should check (zones drawn by the model, disabled rules,
            rules on disabled cameras only, thresholds in pixels on uncalibrated cameras).
        rounds: Model calls made (1 + repair rounds).
        errors: The last round's problems (empty for a valid draft).
        round_errors: The problems of every failed round, in order.
        model: The model that answered.
        new_text: The target file's text after the change (empty for an invalid draft).
        base_sha256: Hash of the target's text the draft was made against.
        allow_modify: Ids the operator allowed to change.
        assumptions: The model's own words outside its YAML block (what it assumed); empty for
            a draft without a model.
    """

    request: str
    target: Path
    valid: bool
    yaml: str
    diff: str
    explanation: tuple[str, ...]
    changes: tuple[Change, ...]
    warnings: tuple[str, ...]
    rounds: int
    errors: tuple[str, ...]
    round_errors: tuple[tuple[str, ...], ...]
    model: str
    new_text: str
    base_sha256: str
    allow_modify: tuple[str, ...] = ()
    assumptions: str = ""

    def to_json(self) -> dict[str, Any]:
        """Every field as JSON values; :meth:`from_json` gives an equal draft back.

        A draft awaiting its confirmation is kept in the site database (any API node may be
        asked to save it), and what is saved must be exactly what was reviewed.
        """
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DraftResult:
        """The draft :meth:`to_json` gave ``data`` for.

        Fields this version does not know are left out (a newer node's draft, mid-upgrade).

        Raises:
            ValueError: ``data`` lacks a field this version needs (an older node's draft).
        """
        known = {f.name for f in fields(cls)}
        required = {
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        }
        missing = required - data.keys()
        if missing:
            raise ValueError(f"the draft lacks {', '.join(sorted(missing))}")
        values = {name: _tuples(value) for name, value in data.items() if name in known}
        values["target"] = Path(data["target"])
        values["changes"] = tuple(Change(**change) for change in data["changes"])
        return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Change):
        return asdict(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _tuples(value: Any) -> Any:
    """JSON arrays back into the tuples the draft holds (nested ones too)."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def unified_diff(old: str, new: str, name: str, *, created: bool = False) -> str:
    """``diff -u`` of a rule file's text, ``a/NAME`` -> ``b/NAME``."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile="/dev/null" if created else f"a/{name}",
        tofile=f"b/{name}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class _Retry(Exception):
    """A round found mistakes the model may fix."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = tuple(errors)


@dataclass(frozen=True, slots=True)
class _Accepted:
    yaml: str
    new_text: str
    changes: tuple[Change, ...]
    explanation: tuple[str, ...]
    warnings: tuple[str, ...]


def _formatted(error: ConfigError) -> list[str]:
    found = error.errors if isinstance(error, ConfigErrors) else (error,)
    return [ConfigError.format(e) for e in found]


def _label_errors(
    fragment: RuleFile, document: LocatedDocument, labels: LabelVocabulary
) -> list[str]:
    """Labels no model of the site detects: such a rule would never fire."""
    if not labels.complete:
        return []
    errors: list[str] = []

    def check(
        index: int, field: str, values: Sequence[str], known: Sequence[str], what: str
    ) -> None:
        for position, value in enumerate(values):
            if value not in known:
                path = ("rules", index, field, position)
                errors.append(
                    ConfigError(
                        f"no model of this site detects {value!r} ({what}: "
                        f"{', '.join(known) or 'none'})",
                        file=DRAFT_FILE,
                        line=document.line_of(path),
                        field=f"rules[{index}].{field}[{position}]",
                    ).format()
                )

    for index, rule in enumerate(fragment.rules):
        if isinstance(rule, PPERule):
            check(index, "require", rule.require, labels.ppe_items, "PPE items")
        if isinstance(rule, ProximityRule):
            check(index, "subjects", rule.subjects, labels.objects, "labels")
        check(index, "objects", getattr(rule, "objects", ()), labels.objects, "labels")
    return errors


class RuleDrafter:
    """Drafts rule changes with a chat model; see the module docstring for the gates.

    Args:
        client: The chat endpoint.
        max_repairs: Repair rounds after the first reply (the site's ``llm.max_repairs``).
    """

    def __init__(self, client: ChatClient, *, max_repairs: int = 2) -> None:
        self.client = client
        self.max_repairs = max_repairs

    def draft(
        self,
        request: str,
        workspace: RuleWorkspace,
        *,
        allow_modify: Sequence[str] = (),
        history: Sequence[DraftTurn] = (),
    ) -> DraftResult:
        """Ask for a draft and check it; repair up to ``max_repairs`` times.

        Raises:
            ConfigError: The current rules do not validate.
            DraftRefused: The draft overreaches (see :mod:`safewatch.llm.guard`), or
                ``allow_modify`` names an id the request or the target lacks.
            LLMError: The endpoint failed.
        """
        request = request.strip()
        if not request:
            raise DraftError("the request is empty: say what the rule should enforce")
        snapshot = workspace.snapshot()
        allowed = tuple(dict.fromkeys(allow_modify))
        check_allow_modify(request, allowed, snapshot)
        facts = site_facts(workspace.site, snapshot, allow_modify=allowed)
        messages = build_messages(request, facts, history=history)
        round_errors: list[tuple[str, ...]] = []
        last_yaml = ""
        reply = ChatReply(content="", model=self.client.model)
        cut_off = False
        for _ in range(1 + self.max_repairs):
            reply = self.client.complete(messages)
            cut_off = reply.finish_reason == "length"
            try:
                last_yaml = extract_draft(reply.content)
            except ReplyFormatError:
                last_yaml = reply.content
            try:
                accepted = _evaluate(reply.content, workspace, snapshot, allowed, cut_off=cut_off)
                if cut_off:
                    # A reply cut off at max_tokens may still parse: a list cut after its first
                    # item is YAML too ("a hard hat and a vest" became `require: [hardhat]`).
                    # Never valid: another round, asking for the whole draft.
                    raise _Retry([_CUT_OFF])
            except _Retry as retry:
                round_errors.append(retry.errors)
                # The answer goes back without its <think> sections: a reasoning model's thinking
                # is often most of the reply, and each round resent it all (context, cost).
                answer = without_thinking(reply.content) or "(no answer outside <think>)"
                messages = [
                    *messages,
                    ChatMessage("assistant", answer),
                    repair_message(retry.errors),
                ]
                continue
            return _valid_result(
                request,
                snapshot,
                accepted,
                allowed,
                model=reply.model,
                round_errors=round_errors,
                assumptions=reply_notes(reply.content),
            )
        return DraftResult(
            request=request,
            target=snapshot.target,
            valid=False,
            yaml=last_yaml,
            diff="",
            explanation=(),
            changes=(),
            warnings=(),
            rounds=len(round_errors),
            errors=(*round_errors[-1], _RAISE_MAX_TOKENS) if cut_off else round_errors[-1],
            round_errors=tuple(round_errors),
            model=reply.model,
            new_text="",
            base_sha256=snapshot.target_sha256,
            allow_modify=allowed,
            assumptions=reply_notes(reply.content),
        )


def check_draft_text(
    text: str,
    workspace: RuleWorkspace,
    *,
    request: str,
    allow_modify: Sequence[str] = (),
    source: str = "",
) -> DraftResult:
    """Run a rule-file fragment written by a person (the structured rule form) through the same
    gates as a model's draft, once, without a model.

    Raises:
        ConfigError: The current rules do not validate.
        DraftRefused: The fragment overreaches (see :mod:`safewatch.llm.guard`).
    """
    snapshot = workspace.snapshot()
    allowed = tuple(dict.fromkeys(allow_modify))
    check_allow_modify(request, allowed, snapshot)
    try:
        accepted = _evaluate(text, workspace, snapshot, allowed, bare=True)
    except _Retry as retry:
        return DraftResult(
            request=request,
            target=snapshot.target,
            valid=False,
            yaml=text,
            diff="",
            explanation=(),
            changes=(),
            warnings=(),
            rounds=0,
            errors=retry.errors,
            round_errors=(retry.errors,),
            model=source,
            new_text="",
            base_sha256=snapshot.target_sha256,
            allow_modify=allowed,
        )
    return _valid_result(
        request, snapshot, accepted, allowed, model=source, round_errors=[], rounds=0
    )


def _valid_result(
    request: str,
    snapshot: Snapshot,
    accepted: _Accepted,
    allowed: tuple[str, ...],
    *,
    model: str,
    round_errors: Sequence[tuple[str, ...]],
    rounds: int | None = None,
    assumptions: str = "",
) -> DraftResult:
    return DraftResult(
        request=request,
        target=snapshot.target,
        valid=True,
        yaml=accepted.yaml,
        diff=unified_diff(
            snapshot.target_text,
            accepted.new_text,
            snapshot.target.name,
            created=not snapshot.target.exists(),
        ),
        explanation=accepted.explanation,
        changes=accepted.changes,
        warnings=accepted.warnings,
        rounds=len(round_errors) + 1 if rounds is None else rounds,
        errors=(),
        round_errors=tuple(round_errors),
        model=model,
        new_text=accepted.new_text,
        base_sha256=snapshot.target_sha256,
        allow_modify=allowed,
        assumptions=assumptions,
    )


def _evaluate(
    reply: str,
    workspace: RuleWorkspace,
    snapshot: Snapshot,
    allow_modify: Sequence[str],
    *,
    cut_off: bool = False,
    bare: bool = False,
) -> _Accepted:
    """Run one reply (or, ``bare``, a fragment's YAML itself) through every gate; :class:`_Retry`
    with the problems found."""
    hint = [_CUT_OFF] if cut_off else []
    try:
        text = reply if bare else extract_draft(reply)
    except ReplyFormatError as exc:
        raise _Retry([*hint, str(exc)]) from None
    try:
        document = parse_yaml(text, DRAFT_FILE)
    except ConfigError as exc:
        raise _Retry([*hint, *_formatted(exc)]) from None
    refuse_outside_rules(document.data, snapshot.target.name)
    if not isinstance(document.data, dict):
        raise _Retry([f"{DRAFT_FILE}:1: the draft must be a mapping with `rules:`"])
    try:
        fragment = validate_document(RuleFile, document)
    except ConfigError as exc:
        raise _Retry(_formatted(exc)) from None
    guarded = classify_changes(fragment, snapshot, allow_modify)
    if not guarded.changes:
        raise _Retry(
            ["the draft adds or changes nothing: give the new rule(s) the request asks for"]
        )
    problems = _label_errors(fragment, document, site_labels(workspace.site))
    # The trial load checks labels per camera too: one message per field is enough.
    seen = {problem.split(": ", 2)[1] for problem in problems}
    problems += [
        problem
        for problem in _trial_errors(workspace, snapshot, guarded, text)
        if problem.count(": ") < 2 or problem.split(": ", 2)[1] not in seen
    ]
    if problems:
        raise _Retry(problems)
    return _accept(workspace, snapshot, guarded, fragment, document.data)


def _trial_errors(
    workspace: RuleWorkspace, snapshot: Snapshot, guarded: GuardedDraft, text: str
) -> list[str]:
    """The whole set with the draft beside it (repeats and changed items taken out of their
    files), so every message about the draft points into the model's own text."""
    taken: dict[Path, dict[str, list[str]]] = {}
    pairs = [*guarded.unchanged, *((c.kind, c.id) for c in guarded.changes)]
    for kind, item_id in pairs:
        owner = snapshot.owner(kind, item_id)
        if owner is not None:
            taken.setdefault(owner.path, {}).setdefault(kind, []).append(item_id)
    replace = {
        path: remove_items(
            path.read_text(encoding="utf-8"),
            zone_ids=ids.get("zone", ()),
            line_ids=ids.get("line", ()),
            rule_ids=ids.get("rule", ()),
        )
        for path, ids in taken.items()
    }
    _, errors = workspace.trial(replace, {_TRIAL_NAME: (text, DRAFT_FILE)}, bare_names=True)
    return [error.format() for error in errors]


def _accept(
    workspace: RuleWorkspace,
    snapshot: Snapshot,
    guarded: GuardedDraft,
    fragment: RuleFile,
    written: Mapping[str, Any],
) -> _Accepted:
    """Merge the changes into the target's text, validate that text, explain it."""
    ids = {(c.kind, c.id) for c in guarded.changes}
    zones = {k: v for k, v in (written.get("zones") or {}).items() if ("zone", k) in ids}
    lines = {k: v for k, v in (written.get("lines") or {}).items() if ("line", k) in ids}
    rules = [r for r in (written.get("rules") or []) if ("rule", r.get("id")) in ids]
    new_text = merge_items(snapshot.target_text, zones=zones, lines=lines, rules=rules)
    merged, errors = workspace.trial({snapshot.target: new_text}, bare_names=True)
    if merged is None:
        raise _Retry([error.format() for error in errors])
    _check_merge(snapshot.rule_set, merged, fragment, guarded)
    site = workspace.site
    return _Accepted(
        yaml=render_items(zones=zones, lines=lines, rules=rules),
        new_text=new_text,
        changes=guarded.changes,
        explanation=tuple(_explain(guarded.changes, snapshot, merged, fragment, site)),
        warnings=tuple(_warnings(guarded.changes, fragment, merged, site)),
    )


def _check_merge(before: RuleSet, after: RuleSet, fragment: RuleFile, draft: GuardedDraft) -> None:
    """The merged set is the old one plus exactly the draft's changes (a bug guard)."""
    added = {
        kind: sum(1 for c in draft.changes if c.kind == kind and c.action == "add")
        for kind in ("rule", "zone", "line")
    }
    counts_ok = (
        len(after.rules) == len(before.rules) + added["rule"]
        and len(after.zones) == len(before.zones) + added["zone"]
        and len(after.lines) == len(before.lines) + added["line"]
    )
    drafted = {rule.id: rule for rule in fragment.rules}
    rules_ok = all(after.rule(c.id) == drafted[c.id] for c in draft.changes if c.kind == "rule")
    if not (counts_ok and rules_ok):  # pragma: no cover - would be a bug in yaml_edit
        raise DraftError("internal error: the merged rule file does not match the draft")


def _explain(
    changes: Sequence[Change],
    snapshot: Snapshot,
    merged: RuleSet,
    fragment: RuleFile,
    site: SiteConfig,
) -> list[str]:
    lines: list[str] = []
    places: dict[str, ZoneConfig | LineConfig] = {**fragment.zones, **fragment.lines}
    for change in changes:
        if change.kind == "rule":
            rule: Rule = merged.rule(change.id)
            sentence = explain_rule(rule, merged, site)
            if change.action == "add":
                lines.append(f"New rule: {sentence}")
            else:
                before = explain_rule(snapshot.rule_set.rule(change.id), snapshot.rule_set, site)
                lines.append(f"Changed rule: {sentence} (was: {before})")
        else:
            place = places[change.id]
            shape = (
                f"{len(place.polygon)} points"
                if isinstance(place, ZoneConfig)
                else "a two-point line"
            )
            verb = "New" if change.action == "add" else "Changed"
            lines.append(f"{verb} {change.kind} {change.id} on camera {place.camera} ({shape}).")
    return lines


def _pixel_fields(rule: Rule) -> list[tuple[str, str]]:
    """A rule's thresholds given in pixels: (field, value as written)."""
    fields: list[tuple[str, object]] = []
    if isinstance(rule, ProximityRule):
        fields = [("max_distance", rule.max_distance), ("approaching", rule.approaching)]
    elif isinstance(rule, ZoneClearRule):
        fields = [("max_movement", rule.max_movement)]
    return [
        (name, str(value))
        for name, value in fields
        if value is not None and not getattr(value, "metric", True)
    ]


def _warnings(
    changes: Sequence[Change], fragment: RuleFile, merged: RuleSet, site: SiteConfig
) -> list[str]:
    warnings: list[str] = []
    drafted = {rule.id: rule for rule in fragment.rules}
    for change in changes:
        if change.kind in ("zone", "line"):
            place = (fragment.zones if change.kind == "zone" else fragment.lines)[change.id]
            camera = place.camera
            warnings.append(
                f"{change.kind} {change.id!r} was drawn by the language model, which cannot see "
                f"camera {camera!r}: check its points against the picture before relying on it"
            )
        if change.disables:
            warnings.append(f"rule {change.id!r} will be disabled (allowed by the operator)")
        if change.kind == "rule":
            rule = drafted[change.id]
            runs_on = [camera for camera in site.cameras if merged.applies_to(rule, camera)]
            if runs_on and not any(site.cameras[camera].enabled for camera in runs_on):
                # Valid (disabled cameras are validated), but it would never fire.
                off = ", ".join(repr(c) for c in runs_on)
                cameras = f"cameras {off}" if len(runs_on) > 1 else f"camera {off}"
                warnings.append(
                    f"rule {change.id!r} runs only on disabled {cameras}: it fires nothing "
                    "until the camera is enabled in the site file"
                )
            # A pixel threshold on an uncalibrated camera is the model's guess whenever the
            # request was in metres ("3 metres" became 150px, valid and unflagged).
            uncalibrated = [
                camera
                for camera, settings in site.cameras.items()
                if settings.calibration is None and merged.applies_to(rule, camera)
            ]
            cameras = ", ".join(repr(c) for c in uncalibrated)
            where = f"cameras {cameras} are" if len(uncalibrated) > 1 else f"camera {cameras} is"
            for name, value in _pixel_fields(rule) if uncalibrated else ():
                what = "speed" if value.endswith("/s") else "distance"
                warnings.append(
                    f"rule {change.id!r}: {name} {value} is a {what} in pixels: {where} not "
                    "calibrated; check the threshold on the picture"
                )
    return warnings
