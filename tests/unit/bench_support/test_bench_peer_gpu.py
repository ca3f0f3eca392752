"""bench/peer and bench/gpu without their optional parts: they skip and say why."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bench.gpu
import bench.peer
import pytest


def test_peer_skips_without_a_venv() -> None:
    python, reason = bench.peer.peer_python(None)
    assert python is None
    assert "SAFEWATCH_PEER_VENV" in reason and "never a safewatch dependency" in reason


def test_peer_skips_with_a_folder_that_is_no_venv(tmp_path: Path) -> None:
    python, reason = bench.peer.peer_python(str(tmp_path))
    assert python is None and "is not a virtual environment" in reason


def test_peer_skips_when_the_venv_lacks_ultralytics() -> None:
    # safewatch's own venv has onnxruntime but (deliberately) no ultralytics
    python, reason = bench.peer.peer_python(str(Path(sys.executable).parents[1]))
    assert python is None and "lacks ultralytics" in reason


def test_peer_main_writes_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench.peer, "write_results", lambda name, data: _write(tmp_path, data))
    bench.peer.main(["--venv", str(tmp_path / "missing")])
    assert "bench.peer skipped" in capsys.readouterr().out
    assert "skipped" in json.loads((tmp_path / "out.json").read_text())


def test_gpu_bench_skips_without_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    providers, reason = bench.gpu.gpu_providers()
    if providers:
        pytest.skip("this machine has a GPU provider; the skip path is not reachable")
    monkeypatch.setattr(bench.gpu, "write_results", lambda name, data: _write(tmp_path, data))
    bench.gpu.main([])
    out = capsys.readouterr().out
    assert out.startswith("bench.gpu skipped: ") and reason in out


def _write(folder: Path, data: object) -> Path:
    path = folder / "out.json"
    path.write_text(json.dumps(data))
    return path
