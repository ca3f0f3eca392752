"""Save a confirmed draft: checked again, written atomically, recorded.

Between a draft and its confirmation the rules may have moved on (another save, a hand edit, a
zone removed from another file). So the save starts over from the files as they are *now*: the
target must be byte-for-byte what the draft was made against (otherwise the operator confirmed a
diff that no longer applies), the draft's items go through the guard again, and the whole set is
validated again with the site. Only then is the new text written to a temporary file beside the
target and renamed over it, so a reader (the hot-reload watcher, ``safewatch serve``) sees the old
file or the new one, never half of one.

The record goes to the site's audit log, the dashboard's ``audit_log`` table (action
``rules.draft_saved``: who, the request, the model, the resulting YAML, the diff and its hash),
so drafts saved from the command line and from the Rules page are read in one place. It is
written before the rename: a crash in between leaves a record of a change that did not happen,
never a change without a record; a failed rename adds ``rules.draft_save_failed``. Saves of the
same rules folder are serialised across threads and processes (the CLI and the server, drafts and
dashboard saves) by :func:`~safewatch.config.rules_lock.rules_folder_lock`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from safewatch.config.rules import RuleFile
from safewatch.config.rules_lock import replace_rule_file, rules_folder_lock
from safewatch.config.validation import ConfigErrors, validate_document
from safewatch.config.yaml_lines import parse_yaml
from safewatch.llm.drafting import DraftResult
from safewatch.llm.errors import DraftError, StaleDraft
from safewatch.llm.guard import classify_changes, refuse_outside_rules
from safewatch.llm.workspace import RuleWorkspace, sha256_text
from safewatch.llm.yaml_edit import merge_items

__all__ = ["SAVED_ACTION", "AuditWriter", "SavedDraft", "save_draft"]

SAVED_ACTION = "rules.draft_saved"
"""Audit-log action of a saved draft."""
FAILED_ACTION = "rules.draft_save_failed"


class AuditWriter(Protocol):
    """Where save records go: the dashboard's :class:`~safewatch.api.auth.store.AuthStore`."""

    def audit(
        self,
        action: str,
        *,
        actor: str | None,
        subject: str | None = None,
        detail: Mapping[str, Any] | None = None,
        client: str | None = None,
    ) -> None:
        """Append one record; raise :class:`~safewatch.errors.StorageError` if it cannot."""
        ...


@dataclass(frozen=True, slots=True)
class SavedDraft:
    """A saved draft.

    Attributes:
        target: The rule file written.
        diff_sha256: SHA-256 of the diff that was applied.
        detail: The audit record's detail, as written.
    """

    target: Path
    diff_sha256: str
    detail: Mapping[str, Any]


def _reapply(result: DraftResult, workspace: RuleWorkspace) -> str:
    """The draft's items merged into the target as it is now, guarded and validated again."""
    snapshot = workspace.snapshot()
    if snapshot.target_sha256 != result.base_sha256:
        raise StaleDraft(
            f"{snapshot.target} changed since this draft was made; draft again so the change "
            "you confirm is the one that will be saved"
        )
    document = parse_yaml(result.yaml, "draft.yaml")
    refuse_outside_rules(document.data, snapshot.target.name)
    fragment = validate_document(RuleFile, document)
    guarded = classify_changes(fragment, snapshot, result.allow_modify)
    if guarded.changes != result.changes:
        raise StaleDraft(
            "the rules changed since this draft was made (it would now change other items); "
            "draft again"
        )
    written = document.data
    new_text = merge_items(
        snapshot.target_text,
        zones=written.get("zones") or {},
        lines=written.get("lines") or {},
        rules=written.get("rules") or [],
    )
    merged, errors = workspace.trial({snapshot.target: new_text})
    if merged is None:
        raise ConfigErrors(errors)
    if new_text != result.new_text:  # pragma: no cover - same base and items, same merge
        raise StaleDraft("the merged file differs from the reviewed one; draft again")
    return new_text


def save_draft(
    result: DraftResult,
    workspace: RuleWorkspace,
    *,
    actor: str,
    audit: AuditWriter,
    source: str = "cli",
    client: str | None = None,
) -> SavedDraft:
    """Write a confirmed draft into its target and record who did it.

    Args:
        result: A valid draft of this workspace's target.
        workspace: The site and rules, as they are now.
        actor: Who confirmed: the OS user for the CLI, the signed-in user for the API.
        audit: The site's audit log.
        source: ``cli``, ``api`` or ``form``.
        client: The client's address, for API saves.

    Raises:
        DraftError: The draft is invalid, or for another target.
        StaleDraft: The target changed since the draft.
        DraftRefused: The draft now overreaches (an id it adds appeared elsewhere).
        ConfigError: The set with the draft no longer validates.
        StorageError: The file or the audit record cannot be written (then nothing changed).
    """
    if not result.valid:
        raise DraftError("an invalid draft cannot be saved; fix the request or write the rule")
    if result.target.resolve() != workspace.target.resolve():
        raise DraftError(f"the draft is for {result.target}, not {workspace.target}")
    target = workspace.target
    diff_sha256 = hashlib.sha256(result.diff.encode("utf-8")).hexdigest()
    with rules_folder_lock(target.parent):
        new_text = _reapply(result, workspace)
        detail = {
            "source": source,
            "request": result.request,
            "model": result.model or None,
            "target": str(target),
            "changes": [asdict(change) for change in result.changes],
            "allow_modify": list(result.allow_modify),
            "rounds": result.rounds,
            "result_yaml": result.yaml,
            "diff": result.diff,
            "diff_sha256": diff_sha256,
            "file_sha256": sha256_text(new_text),
        }

        def record() -> None:
            audit.audit(
                SAVED_ACTION, actor=actor, subject=target.name, detail=detail, client=client
            )

        def record_failure(exc: OSError) -> None:
            audit.audit(
                FAILED_ACTION,
                actor=actor,
                subject=target.name,
                detail={"diff_sha256": diff_sha256, "error": str(exc)},
                client=client,
            )

        replace_rule_file(target, new_text, record, failed=record_failure)
    return SavedDraft(target=target, diff_sha256=diff_sha256, detail=detail)
