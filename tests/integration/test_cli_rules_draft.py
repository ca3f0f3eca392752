"""``safewatch rules draft`` as a user runs it: a real process talking to a local replay server."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_audit import safewatch

from llm_replay import ReplayServer, load_scenario, replay
from llm_site import drafts_saved, make_site

# Each test starts the CLI in fresh interpreters (about 2 s apiece).
pytestmark = pytest.mark.slow

REQUEST = "no one in the press area without a hard hat during the night shift"


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    scenarios = ("valid", "never_valid", "malicious_disable")
    with replay({name: load_scenario(name) for name in scenarios}) as running:
        yield running


def plant_with_llm(folder: Path, server: ReplayServer, model: str) -> tuple[Path, Path]:
    return make_site(folder, llm=f"base_url: {server.base_url}\nmodel: {model}\ntimeout: 10")


def test_without_yes_and_without_a_terminal_it_shows_and_does_not_save(
    tmp_path: Path, server: ReplayServer
) -> None:
    site, rules = plant_with_llm(tmp_path, server, "valid")
    done = safewatch("rules", "draft", REQUEST, "-c", site, "-r", rules)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert f"Draft for {rules / 'drafts.yaml'} (model replay, 1 round):" in text
    assert "  - id: press-hardhat-night\n    kind: ppe\n" in text
    assert "Diff:\n--- /dev/null\n+++ b/drafts.yaml\n" in text
    assert "In plain words:\n  New rule: press-hardhat-night (high): on camera press-line" in text
    assert "  the model says: Assumed the night shift runs from 22:00 to 06:00.\n" in text
    assert "not saved (no terminal to confirm on; rerun with --yes to save)" in text
    assert not (rules / "drafts.yaml").exists()
    assert not (tmp_path / "safewatch-data").exists()


def test_yes_saves_and_records_the_os_user(tmp_path: Path, server: ReplayServer) -> None:
    site, rules = plant_with_llm(tmp_path, server, "valid")
    done = safewatch("rules", "draft", REQUEST, "-c", site, "-r", rules, "--yes")
    assert done.returncode == 0, done.stderr
    assert f"saved {rules / 'drafts.yaml'}" in done.stdout
    check = safewatch("rules", "explain", rules, "-c", site)
    assert "press-hardhat-night (high): on camera press-line" in check.stdout
    (record,) = drafts_saved(site)
    assert (record.actor, record.subject) == (getpass.getuser(), "drafts.yaml")
    assert record.detail["source"] == "cli" and record.detail["request"] == REQUEST
    assert record.detail["model"] == "replay"


def test_failures_are_one_clear_line_and_save_nothing(tmp_path: Path, server: ReplayServer) -> None:
    site, rules = make_site(tmp_path / "plain")
    done = safewatch("rules", "draft", REQUEST, "-c", site, "-r", rules, "--yes")
    assert done.returncode == 2
    assert "error: no language model configured: add an `llm:` block" in done.stderr

    site, rules = plant_with_llm(tmp_path / "never", server, "never_valid")
    done = safewatch("rules", "draft", REQUEST, "-c", site, "-r", rules, "--yes")
    assert done.returncode == 2
    assert "invalid: draft.yaml:3: rules[0].kind: unknown kind 'hardhat'" in done.stdout
    assert "error: no valid draft after 3 rounds; nothing was saved" in done.stderr

    site, rules = plant_with_llm(tmp_path / "evil", server, "malicious_disable")
    done = safewatch("rules", "draft", REQUEST, "-c", site, "-r", rules, "--yes")
    assert done.returncode == 2
    assert (
        "error: draft refused, nothing was saved: the draft disables existing rule" in done.stderr
    )
    for folder in ("plain", "never", "evil"):
        assert [p.name for p in (tmp_path / folder / "rules").iterdir()] == ["base.yaml"]


def test_a_bad_endpoint_option_is_one_line_naming_the_option(
    tmp_path: Path, server: ReplayServer
) -> None:
    """``--base-url`` without a scheme gave pydantic's raw ValidationError (a traceback) with no
    ``llm:`` block, and was copied unchecked over a block that has one."""
    site, rules = make_site(tmp_path / "plain")
    done = safewatch(
        "rules", "draft", REQUEST, "-c", site, "-r", rules, "--base-url", "localhost:11434/v1",
        "--model", "m",
    )  # fmt: skip
    assert done.returncode == 2
    assert "error: --base-url: string should match pattern '^https?://\\S+$' (got " \
        "'localhost:11434/v1')" in done.stderr  # fmt: skip
    assert "Traceback" not in done.stderr and "ValidationError" not in done.stderr

    site, rules = plant_with_llm(tmp_path / "llm", server, "valid")
    done = safewatch(
        "rules", "draft", REQUEST, "-c", site, "-r", rules, "--base-url", "localhost:11434/v1"
    )
    assert done.returncode == 2
    assert "error: --base-url: string should match pattern" in done.stderr
    assert not server.requests
