"""Without ``--baseline``, several proposals are compared with the first, and the command says so.

docs/backtest.md said the proposals were then listed on their own, while ``proposal-1`` silently
became the reference the others were compared with.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from safewatch.cli import app
from safewatch.errors import SourceError


def test_several_proposals_without_a_baseline_name_their_reference(tmp_path: Path) -> None:
    model = tmp_path / "coco.onnx"
    model.write_bytes(b"")
    camera = {"source": "x.mp4", "fps": 5, "models": ["coco"]}
    models = {"coco": {"path": str(model), "format": "yolox"}}
    (tmp_path / "site.yaml").write_text(
        yaml.safe_dump({"version": 1, "models": models, "cameras": {"cam-1": camera}})
    )
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("version: 1\nrules: []\n")
    args = ["backtest", str(tmp_path / "missing.mp4"), "-c", str(tmp_path / "site.yaml")]
    runner = CliRunner()
    result = runner.invoke(
        app, [*args, "-r", str(tmp_path / "a.yaml"), "-r", str(tmp_path / "b.yaml")]
    )
    assert isinstance(result.exception, SourceError)  # the footage does not exist: nothing runs
    said = " ".join(result.output.split())
    assert f"no --baseline: proposal-2 compared with proposal-1 ({tmp_path / 'a.yaml'})" in said
    result = runner.invoke(app, [*args, "-r", str(tmp_path / "a.yaml")])
    assert isinstance(result.exception, SourceError)
    assert "no --baseline" not in result.output
