"""A backtest's staging folder never outlives a failure, and a symbolic link as ``-o`` is refused.

Before, anything failing between the run and its publication (reading the reviewed incidents,
writing the report, Ctrl-C) left a hidden ``.NAME.partial-*`` folder behind, and ``-o`` naming a
symbolic link to an earlier backtest ended in ``OSError: Cannot call rmtree on a symbolic link``
with the staging folder left beside the link's target.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from safewatch.errors import ConfigError, StorageError
from safewatch.footage.backtest import BacktestRun, published


def staged_run(folder: Path) -> BacktestRun:
    staging = folder / ".out.partial-test"
    (staging / "baseline").mkdir(parents=True)
    (staging / "baseline" / "incidents.db").write_bytes(b"db")
    return BacktestRun("yard", ["baseline"], staging=staging)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failure_while_reporting_removes_the_staging_folder(tmp_path: Path) -> None:
    run = staged_run(tmp_path)
    with pytest.raises(KeyboardInterrupt), published(run, tmp_path / "out"):
        raise KeyboardInterrupt
    assert hidden(tmp_path) == [] and not (tmp_path / "out").exists()


def test_a_successful_report_is_published(tmp_path: Path) -> None:
    run = staged_run(tmp_path)
    with published(run, tmp_path / "out") as staging:
        (staging / "backtest.json").write_text("{}")
    assert (tmp_path / "out" / "backtest.json").is_file() and hidden(tmp_path) == []
    assert run.staging == tmp_path / "out"


def test_a_symbolic_link_as_output_is_refused_and_left_alone(tmp_path: Path) -> None:
    earlier = tmp_path / "sub" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "backtest.json").write_text("earlier")
    link = tmp_path / "latest"
    link.symlink_to(earlier)
    run = staged_run(tmp_path)
    with pytest.raises(ConfigError, match="is a symbolic link"), published(run, link):
        pass
    assert link.is_symlink() and (earlier / "backtest.json").read_text() == "earlier"
    assert hidden(tmp_path) == [] and hidden(tmp_path / "sub") == []


def test_a_failed_publish_keeps_the_earlier_backtest_and_the_new_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The earlier output was deleted before the move: a move that then failed (a full disk, a
    file another user owns) lost the earlier backtest and the new results alike."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "backtest.json").write_text("earlier")
    run = staged_run(tmp_path)
    staging = run.staging
    real_rename = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if self == staging:
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with (
        pytest.raises(StorageError, match=r"its results are in .*\.out\.partial-test"),
        published(run, out) as folder,
    ):
        (folder / "backtest.json").write_text("new")
    assert (out / "backtest.json").read_text() == "earlier"
    assert (staging / "backtest.json").read_text() == "new"
    assert hidden(tmp_path) == [".out.partial-test"]  # the new results, named in the error
