"""One writer lock per rules folder, shared by dashboard saves, drafts and the CLI."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from safewatch.api.rulefiles import RuleFiles
from safewatch.config.rules_lock import lock_path, replace_rule_file
from safewatch.config.site import SiteConfig
from safewatch.errors import StorageError

SITE = SiteConfig.model_validate(
    {
        "version": 1,
        "site": {"name": "s"},
        "models": {"coco": {"path": "m.onnx", "format": "yolox"}},
        "cameras": {"cam": {"source": "rtsp://h/s", "models": ["coco"]}},
    }
)
RULES = "version: 1\nrules: []\n"


def test_the_lock_file_is_the_same_for_every_spelling_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    assert lock_path(tmp_path / "rules") == lock_path(tmp_path / "rules" / ".." / "rules")
    assert lock_path(tmp_path / "rules") != lock_path(tmp_path)


def test_a_dashboard_save_waits_while_another_process_holds_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a.yaml").write_text(RULES)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from pathlib import Path
                from safewatch.config.rules_lock import rules_folder_lock
                with rules_folder_lock(Path({str(folder)!r})):
                    print("held", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        files = RuleFiles(folder, lambda: SITE)
        done = threading.Event()
        saver = threading.Thread(
            target=lambda: (files.save("a.yaml", RULES + "# edited\n"), done.set()), daemon=True
        )
        saver.start()
        # Waiting can only show that the save has not happened yet (a slow machine makes this
        # check weaker, never wrong): it must not, while the other writer holds the folder.
        time.sleep(0.5)
        assert not done.is_set()
        assert "# edited" not in (folder / "a.yaml").read_text()
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert done.wait(60)
        assert "# edited" in (folder / "a.yaml").read_text()
    finally:
        holder.kill()
        holder.wait()


def test_a_folder_that_cannot_be_synced_after_the_rename_is_a_made_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some network and FUSE file systems refuse to sync a folder: the rename had put the new
    rules in place (and the watcher loads them), yet the save was answered 503 and recorded as
    failed. Only a rename that did not happen is a failure."""
    target = tmp_path / "yard.yaml"
    target.write_text("old\n")
    made: list[str] = []

    def no_folder_sync(folder: Path) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr("safewatch.storage.atomic._sync_folder", no_folder_sync)
    replace_rule_file(target, "new\n", lambda: made.append("record"), failed=made.append)
    assert target.read_text() == "new\n"
    assert made == ["record"]
    assert [p.name for p in tmp_path.iterdir()] == ["yard.yaml"]


def test_a_rename_that_fails_is_recorded_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "yard.yaml"
    target.write_text("old\n")
    failures: list[OSError] = []

    def refused(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("safewatch.storage.atomic.os.replace", refused)
    with pytest.raises(StorageError, match="read-only"):
        replace_rule_file(target, "new\n", lambda: None, failed=failures.append)
    assert target.read_text() == "old\n" and len(failures) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["yard.yaml"]
