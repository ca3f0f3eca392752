"""The README's first-admin commands as a script runs them: no terminal, password on stdin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SITE = """\
version: 1
models:
  coco: {path: model.onnx}
cameras:
  yard: {source: clip.mp4, models: [coco]}
"""


def users_add(site: Path, *extra: str, stdin: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safewatch", "users", "add", "admin", "--role", "admin",
         "-c", str(site), *extra],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_without_a_terminal_the_prompt_is_refused_with_the_way_to_script_it(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    result = users_add(site, stdin=None)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "no terminal to ask for the password" in message and "--password-stdin" in message
    assert "Can not control echo" not in result.stderr


def test_password_stdin_enforces_ten_characters_then_adds(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    short = users_add(site, "--password-stdin", stdin="123456789\n")
    assert short.returncode != 0
    assert "at least 10 characters" in " ".join(short.stderr.split())
    added = users_add(site, "--password-stdin", stdin="a long enough password\n")
    assert added.returncode == 0, added.stderr
    assert "added admin (admin)" in added.stdout
