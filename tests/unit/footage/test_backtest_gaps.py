"""Reviewed incidents inside a hole of the footage are not scored, and the report says so.

A video's span ran from its first decoded frame to its last, so a reviewed incident inside an
export's outage (the recording keeps it as a gap in time) or an undecodable stretch was "missed"
by every rule set: no rule set could have raised it, yet it lowered every recall.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from assets import asset
from blind_detector import CountingDetector
from incident_factories import make_incident
from safewatch.config.loader import load_site
from safewatch.domain.incidents import IncidentStatus
from safewatch.footage import backtest
from safewatch.footage.backtest import BacktestOptions, NamedRules, covered_spans, run_backtest
from safewatch.footage.backtest_report import build_document
from safewatch.rules import load_rules

START = 1_700_000_000.0


def gapped_video(path: Path) -> Path:
    """10 fps, frames at 0-1.9 s and 10-11.9 s: an 8 s outage kept as a gap in time."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 10)
        for pts in [*range(20), *range(100, 120)]:
            picture = np.full((48, 64, 3), pts % 200, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = pts
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_frames_apart_by_more_than_a_gap_start_a_new_stretch() -> None:
    times = [0.0, 0.2, 0.4, 3.0, 3.2, 3.4]
    assert covered_spans(times) == [(0.0, 0.4), (3.0, 3.4)]
    assert covered_spans([0.0, 0.2, 1.9, 2.1]) == [(0.0, 2.1)]  # 1.7 s: within a gap's length
    lapse = [0.0, 10.0, 20.0, 30.0, 81.0, 90.0]  # time-lapse: a hole of over 5 intervals
    assert covered_spans(lapse) == [(0.0, 30.0), (81.0, 90.0)]
    assert covered_spans([]) == []


def test_a_reviewed_incident_in_an_outage_of_the_footage_is_listed_not_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = {"path": str(asset("models/yolox_nano_coco.onnx")), "format": "yolox"}
    camera = {"source": "x.mp4", "fps": 5, "models": ["coco"]}
    (tmp_path / "site.yaml").write_text(
        yaml.safe_dump({"version": 1, "models": {"coco": model}, "cameras": {"cam-1": camera}})
    )
    (tmp_path / "rules.yaml").write_text("version: 1\nrules: []\n")
    site = load_site(tmp_path / "site.yaml")
    sets = [NamedRules("baseline", load_rules(tmp_path / "rules.yaml"), tmp_path / "rules.yaml")]
    clip = gapped_video(tmp_path / "clip.mp4")
    monkeypatch.setattr(backtest, "build_detector_for", lambda *_: CountingDetector())

    run = run_backtest(site, sets, BacktestOptions((clip,), tmp_path / "out", start=START))

    [(first, last), (again, end)] = run.covered[clip]
    assert first == START and last < START + 2 and again >= START + 10 and end < START + 12
    real = IncidentStatus.RESOLVED
    seen = replace(make_incident(90, START + 1.5, started_at=START + 1.0), status=real)
    in_gap = replace(make_incident(91, START + 6.0, started_at=START + 5.0), status=real)
    document = build_document(run, {"baseline": tmp_path / "rules.yaml"}, [seen, in_gap])
    scores = document["reviewed"]["baseline"]
    assert scores["reviewed"] == 1 and [i["id"] for i in scores["real_missed"]] == [seen.id]
    [excluded] = document["reviewed_excluded"]
    assert excluded["id"] == in_gap.id and excluded["reason"].startswith("in a gap of clip.mp4")
    assert any("1 reviewed incident(s) not scored" in line for line in document["warnings"])
    assert len(document["footage"][0]["gaps"]) == 1
