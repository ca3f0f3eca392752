"""A bad file anywhere in the footage list fails an audit or a backtest before anything runs.

Before, an empty, truncated or non-video file late in the list failed the run only when its turn
came: the earlier videos had been analysed (hours, on a long export) and the staging folder went
with their results. Every file is now opened up front, and every unreadable one is named.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from assets import asset
from blind_detector import CountingDetector
from safewatch.config.loader import LoadedSite, load_site
from safewatch.errors import SourceError
from safewatch.footage import backtest
from safewatch.footage.audit import AuditOptions, run_audit
from safewatch.footage.backtest import BacktestOptions, NamedRules, run_backtest
from safewatch.ingest.video_trim import trim_video
from safewatch.rules import RuleSet, load_rules

CLIP = "video/construction_cctv_640x352_24s.mp4"


def site_and_rules(folder: Path) -> tuple[LoadedSite, RuleSet]:
    model = {"path": str(asset("models/yolox_nano_coco.onnx")), "format": "yolox"}
    camera = {"source": "x.mp4", "fps": 2, "models": ["coco"]}
    (folder / "site.yaml").write_text(
        yaml.safe_dump({"version": 1, "models": {"coco": model}, "cameras": {"yard": camera}})
    )
    (folder / "rules.yaml").write_text("version: 1\nrules: []\n")
    return load_site(folder / "site.yaml"), load_rules(folder / "rules.yaml")


@pytest.fixture
def footage(tmp_path: Path) -> list[Path]:
    """A one-second clip, an empty file and a text file named like a video."""
    good = tmp_path / "good.mp4"
    trim_video(asset(CLIP), good, frames=24)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    return [good, empty, text]


def test_an_audit_names_every_unreadable_video_before_detecting_anything(
    tmp_path: Path, footage: list[Path]
) -> None:
    site, rules = site_and_rules(tmp_path)
    counting = CountingDetector()
    options = AuditOptions(tuple(footage), tmp_path / "out", clips=False)
    with pytest.raises(SourceError, match=r"2 of 3 video") as raised:
        run_audit(site, rules, options, detector=counting)
    assert "empty.mp4" in str(raised.value) and "notes.mp4" in str(raised.value)
    assert "good.mp4" not in str(raised.value)
    assert counting.frames == 0
    assert not (tmp_path / "out").exists()


def test_a_backtest_names_every_unreadable_video_before_detecting_anything(
    tmp_path: Path, footage: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    site, rules = site_and_rules(tmp_path)
    counting = CountingDetector()
    monkeypatch.setattr(backtest, "build_detector_for", lambda *_: counting)
    sets = [NamedRules("baseline", rules, tmp_path / "rules.yaml")]
    options = BacktestOptions(tuple(footage), tmp_path / "out", cache_dir=None)
    with pytest.raises(SourceError, match=r"2 of 3 video") as raised:
        run_backtest(site, sets, options)
    assert "empty.mp4" in str(raised.value) and "notes.mp4" in str(raised.value)
    assert counting.frames == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["site.yaml", "rules.yaml", "good.mp4", "empty.mp4", "notes.mp4"]
    )


def test_the_cli_names_every_missing_video_before_any_download(tmp_path: Path) -> None:
    from safewatch.cli.audit import resolve_footage

    site, _ = site_and_rules(tmp_path)
    with pytest.raises(SourceError) as raised:
        resolve_footage(site, [tmp_path / "monday.mp4", tmp_path / "tuesday.mp4"])
    assert "monday.mp4" in str(raised.value) and "tuesday.mp4" in str(raised.value)
