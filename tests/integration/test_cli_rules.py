"""``safewatch rules validate | explain | test`` as a user runs them: a real process, and for
``test`` a real model on a real clip."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from test_cli_audit import EXAMPLE_RULES, EXAMPLE_SITE, safewatch

from assets import asset

CLIP = "video/construction_cctv_640x352_24s.mp4"


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 4 s of the construction clip (workers are in view from the first frame)."""
    path = tmp_path_factory.mktemp("clip") / "yard-4s.mp4"
    with av.open(str(asset(CLIP))) as source, av.open(str(path), "w") as target:
        stream = target.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 352, "yuv420p"
        for index, frame in enumerate(source.decode(video=0)):
            if index >= 100:
                break
            out = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            out.pts = index
            target.mux(stream.encode(out))
        target.mux(stream.encode(None))
    return path


def coco_site(folder: Path) -> Path:
    """A one-camera site with the small COCO model only (fast on a CPU)."""
    site = folder / "site.yaml"
    site.write_text(
        "version: 1\n"
        "site: {name: test, timezone: Europe/Berlin}\n"
        "models:\n"
        f"  coco: {{path: {asset('models/yolox_nano_coco.onnx')}, format: yolox,"
        " labels: {person: person}}\n"
        "cameras:\n"
        "  yard: {source: unused.mp4, fps: 5, models: [coco]}\n"
    )
    return site


def test_validate_lists_every_mistake_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n"
        "  - id: hardhat\n"
        "    kind: ppe\n"
        "    require: [hardhat]\n"
        "    min_duration: soon\n"
        "  - id: press\n"
        "    kind: zone_intrusion\n"
        "    zone: press\n"
        "    colour: red\n"
    )
    result = safewatch("rules", "validate", tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: {tmp_path / 'a.yaml'}:5: rules[0].min_duration: invalid")
    assert lines[1] == f"error: {tmp_path / 'a.yaml'}:9: rules[1].colour: unknown field"
    assert "Traceback" not in result.stderr


def test_validate_accepts_the_examples() -> None:
    result = safewatch("rules", "validate", EXAMPLE_RULES, "--config", EXAMPLE_SITE)
    assert result.returncode == 0, result.stderr
    assert "ok 3 rule(s), 2 zone(s)" in result.stdout


@pytest.mark.slow
def test_rules_test_runs_an_audit_with_those_rules(short_clip: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "yard.yaml").write_text(
        "zones:\n"
        "  whole_yard: {camera: yard, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}\n"
        "rules:\n"
        "  - id: nobody-in-the-yard\n"
        "    kind: zone_intrusion\n"
        "    zone: whole_yard\n"
        "    min_duration: 1s\n"
        "    severity: high\n"
    )
    out = tmp_path / "out"
    result = safewatch(
        "rules", "test", rules, short_clip, "--config", coco_site(tmp_path), "--out", out,
        "--start", "2024-03-04T10:00:00", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "incidents.json").read_text())
    (video,) = report["videos"]
    assert video["camera"] == "yard"
    assert 19 <= video["frames_analysed"] <= 21  # 4 s at 5 fps
    incidents = report["incidents"]
    assert incidents, "workers stand in the yard from the first frame"
    assert {i["rule"] for i in incidents} == {"nobody-in-the-yard"}
    assert all(i["duration_s"] >= 1.0 - 0.21 for i in incidents)
    assert "nobody-in-the-yard" in result.stdout


def test_rules_test_with_invalid_rules_fails_before_decoding(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules:\n  - id: x\n    kind: teleport\n")
    result = safewatch(
        "rules", "test", tmp_path / "bad.yaml", tmp_path / "missing.mp4",
        "--config", coco_site(tmp_path), "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{tmp_path / 'bad.yaml'}:3: rules[0].kind" in result.stderr
    assert not (tmp_path / "out").exists()


def test_explain_says_each_rule_in_plain_words() -> None:
    result = safewatch("rules", "explain", EXAMPLE_RULES, "--config", EXAMPLE_SITE)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        "hardhat-required (high): on camera yard, a person seen without a hardhat for at least "
        "1 s, at any time, opens an incident; it ends after 1 s compliant or out of sight.",
        "  Everyone in the yard wears a hard hat.",
        "no-entry-drop-zone (high): on camera yard, a person or vehicle with its feet in zone "
        "drop_zone for at least 1 s, at any time, opens an incident; it ends after 1 s outside "
        "the zone or out of sight; then the same object raises no new one for 10 s.",
        "  Keep out of the drop zone while loads are moved.",
        "one-person-at-hoist-landing (medium): on camera yard, more than 1 person in zone "
        "hoist_landing (counted by their feet) for at least 1 s, at any time, opens an incident; "
        "it ends after 1 s back within bounds; then the zone raises no new one for 10 s.",
        "  Only the banksman stands at the landing point while loads come down.",
    ]


def test_explain_refuses_invalid_rules(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("rules:\n  - id: x\n    kind: dwell\n    zone: nowhere\n")
    result = safewatch("rules", "explain", tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path / 'r.yaml'}:2: rules[0].max_time" in result.stderr
