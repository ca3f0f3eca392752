"""Which catalogue files a command pulls before it runs: the whole site for ``serve``; for
footage judged under one camera's settings (``audit``, ``backtest``), that camera's only."""

from __future__ import annotations

from pathlib import Path

from safewatch.cli.fetch import names_in_site
from safewatch.config.loader import load_site

SITE = """\
version: 1
models:
  coco: {path: yolox_nano}
  ppe: {path: ppe14_yolov8n_int8}
cameras:
  gate: {source: rtsp://10.0.0.5/stream, models: [coco]}
  yard: {source: construction_cctv, models: [coco, ppe], enabled: false}
privacy:
  faces: yunet
"""


def test_serve_pulls_the_enabled_cameras_files_and_footage_only_its_cameras(
    tmp_path: Path,
) -> None:
    (tmp_path / "site.yaml").write_text(SITE)
    site = load_site(tmp_path / "site.yaml")
    assert names_in_site(site) == ["yolox_nano", "yunet"]  # yard is disabled
    # Audit or backtest under yard's settings: its models, not its live source; a machine
    # without the gate's files (or the demo clip) can still judge footage as yard does.
    assert names_in_site(site, "yard") == ["yolox_nano", "ppe14_yolov8n_int8", "yunet"]
    assert names_in_site(site, "gate") == ["yolox_nano", "yunet"]
