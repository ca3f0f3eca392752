"""Saving a confirmed draft: re-checked against the files as they are now, atomic, audited."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from llm_site import make_site
from safewatch.config.loader import load_site
from safewatch.config.ruleset import load_rules
from safewatch.errors import ConfigError, StorageError
from safewatch.llm import (
    DraftAuditLog,
    DraftRefused,
    RuleWorkspace,
    StaleDraft,
    audit_log_for,
    check_draft_text,
    save_draft,
)
from safewatch.llm.audit import GENESIS
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


def drafted(plant: tuple[Path, Path], text: str = NIGHT_RULE) -> tuple[DraftResult, RuleWorkspace]:
    workspace = workspace_of(plant)
    result = check_draft_text(text, workspace, request="night hard hats", source="form")
    assert result.valid, result.errors
    return result, workspace


@pytest.fixture
def plant(tmp_path: Path) -> tuple[Path, Path]:
    return make_site(tmp_path)


def test_save_writes_a_valid_set_and_an_audit_record(
    plant: tuple[Path, Path], tmp_path: Path
) -> None:
    result, workspace = drafted(plant)
    log = DraftAuditLog(tmp_path / "data" / "rule-drafts.jsonl")
    saved = save_draft(result, workspace, actor="ann", audit_log=log, source="form")
    target = plant[1] / "drafts.yaml"
    assert saved.target == target and target.read_text() == result.new_text
    rule_set = load_rules(plant[1], load_site(plant[0]).config)
    assert [r.id for r in rule_set.rules][-1] == "press-hardhat-night"
    (record,) = log.records()
    assert record["event"] == "rule_draft_saved"
    assert record["actor"] == "ann" and record["source"] == "form"
    assert record["request"] == "night hard hats" and record["model"] == "form"
    assert record["result_yaml"] == result.yaml
    assert record["diff_sha256"] == hashlib.sha256(result.diff.encode()).hexdigest()
    assert record["changes"] == [
        {"kind": "rule", "id": "press-hardhat-night", "action": "add", "disables": False}
    ]
    assert record["prev_sha256"] == GENESIS
    assert [p.name for p in plant[1].iterdir() if p.name.endswith(".tmp")] == []


def test_audit_records_are_chained_and_tampering_is_found(
    plant: tuple[Path, Path], tmp_path: Path
) -> None:
    log = DraftAuditLog(tmp_path / "audit.jsonl")
    save_draft(*drafted(plant), actor="ann", audit_log=log)
    second = NIGHT_RULE.replace("press-hardhat-night", "press-vest").replace("hardhat]", "vest]")
    save_draft(*drafted(plant, second), actor="bob", audit_log=log)
    first_line, second_line = log.path.read_text().splitlines()
    assert json.loads(second_line)["prev_sha256"] == hashlib.sha256(first_line.encode()).hexdigest()
    assert log.verify() is None
    log.path.write_text(first_line.replace('"ann"', '"eve"') + "\n" + second_line + "\n")
    assert log.verify() == 2


def test_an_edit_of_the_target_since_the_draft_makes_it_stale(
    plant: tuple[Path, Path], tmp_path: Path
) -> None:
    result, workspace = drafted(plant)
    target = plant[1] / "drafts.yaml"
    target.write_text("version: 1\n")
    log = DraftAuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(StaleDraft, match="changed since this draft was made"):
        save_draft(result, workspace, actor="ann", audit_log=log)
    assert target.read_text() == "version: 1\n"
    assert log.records() == []


def test_save_validates_against_the_rules_as_they_are_now(
    plant: tuple[Path, Path], tmp_path: Path
) -> None:
    result, workspace = drafted(plant)
    base = plant[1] / "base.yaml"
    base.write_text(base.read_text().replace("press_area:", "press_bay:"))
    log = DraftAuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(ConfigError) as caught:
        save_draft(result, workspace, actor="ann", audit_log=log)
    assert caught.value.file == str(plant[1] / "drafts.yaml")
    assert "unknown zone 'press_area'" in caught.value.message
    assert not (plant[1] / "drafts.yaml").exists()
    assert log.records() == []


def test_an_id_taken_elsewhere_since_the_draft_is_refused_at_save(
    plant: tuple[Path, Path], tmp_path: Path
) -> None:
    result, workspace = drafted(plant)
    (plant[1] / "other.yaml").write_text(
        "rules:\n  - id: press-hardhat-night\n    kind: ppe\n    require: [vest]\n"
    )
    with pytest.raises(DraftRefused, match="changes existing rule 'press-hardhat-night'"):
        save_draft(result, workspace, actor="ann", audit_log=DraftAuditLog(tmp_path / "a.jsonl"))
    assert not (plant[1] / "drafts.yaml").exists()


def test_save_keeps_the_file_mode_and_the_comments(
    plant: tuple[Path, Path], tmp_path: Path
) -> None:
    workspace = workspace_of(plant, "base.yaml")
    result = check_draft_text(NIGHT_RULE, workspace, request="night hard hats")
    base = plant[1] / "base.yaml"
    base.chmod(0o600)
    before = base.read_text()
    save_draft(result, workspace, actor="ann", audit_log=DraftAuditLog(tmp_path / "a.jsonl"))
    after = base.read_text()
    assert base.stat().st_mode & 0o777 == 0o600
    assert after.startswith(before)  # the new rule is appended; nothing above it changes
    assert after[len(before) :].startswith("  - id: press-hardhat-night\n")


def test_a_failed_rename_leaves_the_old_file_and_says_so_in_the_log(
    plant: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Running as root, no real permission error can be provoked; the rename is made to fail.
    result, workspace = drafted(plant)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    log = DraftAuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(StorageError, match="No space left on device"):
        save_draft(result, workspace, actor="ann", audit_log=log)
    assert not (plant[1] / "drafts.yaml").exists()
    assert [p for p in plant[1].iterdir() if p.name.endswith(".tmp")] == []
    assert [r["event"] for r in log.records()] == ["rule_draft_saved", "rule_draft_save_failed"]


def test_the_default_audit_log_is_in_the_sites_data_folder(tmp_path: Path) -> None:
    site, _ = make_site(tmp_path)
    assert audit_log_for(load_site(site)).path == tmp_path / "safewatch-data/rule-drafts.jsonl"
    site, _ = make_site(
        tmp_path, llm="base_url: http://127.0.0.1:9/v1\nmodel: m\naudit_log: logs/drafts.jsonl"
    )
    assert audit_log_for(load_site(site)).path == tmp_path / "logs/drafts.jsonl"


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
