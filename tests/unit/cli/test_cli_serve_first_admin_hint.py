"""The first-admin advice of ``safewatch serve`` names the safewatch that is running."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from safewatch.cli.app import command
from safewatch.cli.serve import _hint_first_admin


def _venv_script(folder: Path) -> Path:
    script = folder / ".venv" / "bin" / "safewatch"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return script


def test_after_make_run_the_advice_names_the_venv_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make run` starts .venv/bin/safewatch, which is not on PATH: the advice said
    `safewatch users add admin ...`, which the shell then did not find."""
    script = _venv_script(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/safewatch", "serve"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    _hint_first_admin("sqlite:///safewatch.db", tmp_path, Path("examples/site.yaml"))
    text = capsys.readouterr().err
    assert f"    {script} users add admin --role admin -c examples/site.yaml\n" in text
    assert f'"$PASSWORD" | {script} users add admin --role admin --password-stdin' in text


def test_the_bare_name_when_path_finds_this_safewatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _venv_script(tmp_path)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", ["safewatch", "serve"])  # found on PATH by the shell
    assert command() == "safewatch"
    monkeypatch.setattr(sys, "argv", [str(script), "serve"])  # typed in full, the same one
    assert command() == "safewatch"
    other = _venv_script(tmp_path / "other")  # another installation comes first on PATH
    monkeypatch.setenv("PATH", f"{other.parent}:{script.parent}")
    assert command() == str(script)
    # Another program running safewatch's code (a test runner) is no way to run safewatch.
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "pytest"), "-q"])
    (tmp_path / "pytest").write_text("#!/bin/sh\n")
    assert command() == "safewatch"


def test_python_m_safewatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/x/site-packages/safewatch/__main__.py", "serve"])
    assert command() == f"{shlex.quote(sys.executable)} -m safewatch"
