"""A detection cache that cannot be written costs the next run its speed-up, not this run's results.

Before, a cache folder that could not be written (a file in its place, read-only, a full disk)
ended the backtest in a traceback after the detection pass, and every result was discarded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from assets import asset
from blind_detector import CountingDetector
from safewatch.config.loader import load_site
from safewatch.footage import backtest
from safewatch.footage.backtest import BacktestOptions, NamedRules, published, run_backtest
from safewatch.footage.backtest_report import build_document, write_outputs
from safewatch.ingest.video_trim import trim_video
from safewatch.rules import load_rules

CLIP = "video/construction_cctv_640x352_24s.mp4"


def test_a_cache_that_cannot_be_written_is_warned_about_and_the_results_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = {"path": str(asset("models/yolox_nano_coco.onnx")), "format": "yolox"}
    camera = {"source": "x.mp4", "fps": 2, "models": ["coco"]}
    (tmp_path / "site.yaml").write_text(
        yaml.safe_dump({"version": 1, "models": {"coco": model}, "cameras": {"yard": camera}})
    )
    (tmp_path / "rules.yaml").write_text("version: 1\nrules: []\n")
    site = load_site(tmp_path / "site.yaml")
    sets = [NamedRules("baseline", load_rules(tmp_path / "rules.yaml"), tmp_path / "rules.yaml")]
    clip = tmp_path / "clip.mp4"
    trim_video(asset(CLIP), clip, frames=24)
    counting = CountingDetector()
    monkeypatch.setattr(backtest, "build_detector_for", lambda *_: counting)
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be\n")
    out = tmp_path / "out"

    with caplog.at_level(logging.WARNING, logger="safewatch.footage.backtest"):
        run = run_backtest(site, sets, BacktestOptions((clip,), out, cache_dir=cache))
    with published(run, out) as staging:
        write_outputs(build_document(run, {s.name: s.source for s in sets}, None), staging)

    assert counting.frames > 0 and run.frames[clip] == counting.frames
    document = json.loads((out / "backtest.json").read_text())
    assert [(f["path"], f["frames_analysed"]) for f in document["footage"]] == [
        (str(clip), counting.frames)
    ]
    assert run.uncached == {clip}
    assert f"detection cache {cache} cannot be written" in caplog.text
