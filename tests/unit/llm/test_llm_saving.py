"""Saving a confirmed draft: re-checked against the files as they are now, atomic, and recorded
in the site's audit log (the dashboard's table, in a real SQLite database)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from llm_site import drafts_saved, make_site, site_audit
from safewatch.config.loader import load_site
from safewatch.config.ruleset import load_rules
from safewatch.errors import ConfigError, StorageError
from safewatch.llm import (
    SAVED_ACTION,
    DraftRefused,
    RuleWorkspace,
    StaleDraft,
    check_draft_text,
    save_draft,
)
from safewatch.llm.drafting import DraftResult

NIGHT_RULE = """\
rules:
  - id: press-hardhat-night
    kind: ppe
    require: [hardhat]
    zones: [press_area]
    schedule: {between: ["22:00", "06:00"]}
"""


def workspace_of(plant: tuple[Path, Path], target: str | None = None) -> RuleWorkspace:
    return RuleWorkspace(load_site(plant[0]).config, plant[1], target)


def drafted(plant: tuple[Path, Path], rule: str = NIGHT_RULE) -> tuple[DraftResult, RuleWorkspace]:
    workspace = workspace_of(plant)
    result = check_draft_text(rule, workspace, request="night hard hats", source="form")
    assert result.valid, result.errors
    return result, workspace


@pytest.fixture
def plant(tmp_path: Path) -> tuple[Path, Path]:
    return make_site(tmp_path)


def test_save_writes_a_valid_set_and_an_audit_record(plant: tuple[Path, Path]) -> None:
    result, workspace = drafted(plant)
    with site_audit(plant[0]) as audit:
        saved = save_draft(
            result, workspace, actor="ann", audit=audit, source="form", client="10.0.0.7"
        )
    target = plant[1] / "drafts.yaml"
    assert saved.target == target and target.read_text() == result.new_text
    rule_set = load_rules(plant[1], load_site(plant[0]).config)
    assert [r.id for r in rule_set.rules][-1] == "press-hardhat-night"
    (record,) = drafts_saved(plant[0])
    assert (record.actor, record.action, record.subject) == ("ann", SAVED_ACTION, "drafts.yaml")
    assert record.client == "10.0.0.7"
    detail = record.detail
    assert detail["source"] == "form" and detail["request"] == "night hard hats"
    assert detail["model"] == "form"
    assert detail["result_yaml"] == result.yaml and detail["diff"] == result.diff
    assert detail["diff_sha256"] == hashlib.sha256(result.diff.encode()).hexdigest()
    assert detail["changes"] == [
        {"kind": "rule", "id": "press-hardhat-night", "action": "add", "disables": False}
    ]
    assert [p.name for p in plant[1].iterdir() if p.name.endswith(".tmp")] == []


def test_no_record_no_save(plant: tuple[Path, Path]) -> None:
    result, workspace = drafted(plant)
    with site_audit(plant[0]) as audit:
        with audit._session("break the audit log") as session:
            session.execute(text("DROP TABLE audit_log"))
        with pytest.raises(StorageError):
            save_draft(result, workspace, actor="ann", audit=audit)
    assert [p.name for p in plant[1].iterdir()] == ["base.yaml"]


def test_an_edit_of_the_target_since_the_draft_makes_it_stale(plant: tuple[Path, Path]) -> None:
    result, workspace = drafted(plant)
    target = plant[1] / "drafts.yaml"
    target.write_text("version: 1\n")
    with site_audit(plant[0]) as audit, pytest.raises(StaleDraft, match="changed since"):
        save_draft(result, workspace, actor="ann", audit=audit)
    assert target.read_text() == "version: 1\n"
    assert drafts_saved(plant[0]) == []


def test_save_validates_against_the_rules_as_they_are_now(plant: tuple[Path, Path]) -> None:
    result, workspace = drafted(plant)
    base = plant[1] / "base.yaml"
    base.write_text(base.read_text().replace("press_area:", "press_bay:"))
    with site_audit(plant[0]) as audit, pytest.raises(ConfigError) as caught:
        save_draft(result, workspace, actor="ann", audit=audit)
    assert caught.value.file == str(plant[1] / "drafts.yaml")
    assert "unknown zone 'press_area'" in caught.value.message
    assert not (plant[1] / "drafts.yaml").exists()
    assert drafts_saved(plant[0]) == []


def test_an_id_taken_elsewhere_since_the_draft_is_refused_at_save(
    plant: tuple[Path, Path],
) -> None:
    result, workspace = drafted(plant)
    (plant[1] / "other.yaml").write_text(
        "rules:\n  - id: press-hardhat-night\n    kind: ppe\n    require: [vest]\n"
    )
    with (
        site_audit(plant[0]) as audit,
        pytest.raises(DraftRefused, match="changes existing rule 'press-hardhat-night'"),
    ):
        save_draft(result, workspace, actor="ann", audit=audit)
    assert not (plant[1] / "drafts.yaml").exists()


def test_save_keeps_the_file_mode_and_the_comments(plant: tuple[Path, Path]) -> None:
    workspace = workspace_of(plant, "base.yaml")
    result = check_draft_text(NIGHT_RULE, workspace, request="night hard hats")
    base = plant[1] / "base.yaml"
    base.chmod(0o600)
    before = base.read_text()
    with site_audit(plant[0]) as audit:
        save_draft(result, workspace, actor="ann", audit=audit)
    after = base.read_text()
    assert base.stat().st_mode & 0o777 == 0o600
    assert after.startswith(before)  # the new rule is appended; nothing above it changes
    assert after[len(before) :].startswith("  - id: press-hardhat-night\n")


def test_a_failed_rename_leaves_the_old_file_and_says_so_in_the_log(
    plant: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Running as root, no real permission error can be provoked; the rename is made to fail.
    result, workspace = drafted(plant)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    with site_audit(plant[0]) as audit:
        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(StorageError, match="No space left on device"):
            save_draft(result, workspace, actor="ann", audit=audit)
        monkeypatch.undo()
    assert not (plant[1] / "drafts.yaml").exists()
    assert [p for p in plant[1].iterdir() if p.name.endswith(".tmp")] == []
    assert len(drafts_saved(plant[0])) == 1
    (failed,) = drafts_saved(plant[0], "rules.draft_save_failed")
    assert "No space left on device" in failed.detail["error"]


def test_form_drafts_pass_the_same_gates(plant: tuple[Path, Path]) -> None:
    workspace = workspace_of(plant)
    invalid = check_draft_text(NIGHT_RULE.replace("press_area", "press"), workspace, request="form")
    assert not invalid.valid
    assert invalid.errors == (
        "draft.yaml:5: rules[0].zones[0]: unknown zone 'press' (defined: loading_dock, press_area)",
    )
    with pytest.raises(DraftRefused, match="disables existing rule 'hardhat-required'"):
        check_draft_text(
            "rules:\n  - id: hardhat-required\n    kind: ppe\n    require: [hardhat]\n"
            "    severity: high\n    enabled: false\n",
            workspace,
            request="form",
        )
