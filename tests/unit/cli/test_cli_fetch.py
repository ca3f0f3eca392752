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


def test_a_face_detector_is_pulled_only_where_privacy_runs_it(tmp_path: Path) -> None:
    """``privacy.mode: off`` hides nothing, so the evidence writer never loads ``faces``: before,
    ``serve``, ``audit`` and ``check-config`` still pulled it, and an offline machine failed
    with "the mirror has no copy of yunet" for a model nothing would run."""
    off = SITE.replace("privacy:\n  faces: yunet\n", 'privacy:\n  mode: "off"\n  faces: yunet\n')
    (tmp_path / "site.yaml").write_text(off)
    site = load_site(tmp_path / "site.yaml")
    assert names_in_site(site) == ["yolox_nano"]
    assert names_in_site(site, "yard") == ["yolox_nano", "ppe14_yolov8n_int8"]
    # A camera that turns privacy back on for itself runs the site's face detector.
    (tmp_path / "site.yaml").write_text(
        off.replace("models: [coco]}", "models: [coco], privacy: {mode: blur}}")
    )
    assert names_in_site(load_site(tmp_path / "site.yaml")) == ["yolox_nano", "yunet"]
