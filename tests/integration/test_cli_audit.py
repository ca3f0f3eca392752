"""``safewatch audit`` and ``check-config`` as a user runs them: a real process, real models, the
real CCTV clip, and the example site and rules from ``examples/``."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import av
import cv2
import pytest
from backtest_support import safewatch, truncated_copy

from assets import asset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SITE = ROOT / "examples" / "site.yaml"
EXAMPLE_RULES = ROOT / "examples" / "rules"
CLIP = "video/construction_cctv_640x352_24s.mp4"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """One annotated audit of the example clip, shared by the assertions below."""
    clip = asset(CLIP)
    asset("models/yolox_nano_coco.onnx")
    out = tmp_path_factory.mktemp("audit")
    result = safewatch(
        "audit",
        clip,
        "--config",
        EXAMPLE_SITE,
        "--rules",
        EXAMPLE_RULES,
        "--out",
        out,
        "--annotate",
        "--start",
        "2017-02-22T13:07:16",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "incidents.json").read_text()), result.stdout


@pytest.mark.slow
def test_audit_tracks_people_and_reports_incidents(
    audited: tuple[Path, dict[str, Any], str],
) -> None:
    out, report, stdout = audited
    (video,) = report["videos"]
    assert video["camera"] == "yard"
    assert video["clock"] == "argument"
    assert video["started_at"].startswith("2017-02-22T12:07:16")  # Europe/Berlin is UTC+1
    # 24.2 s of video sampled at 5 fps
    assert 118 <= video["frames_analysed"] <= 122
    assert video["tracks"].get("person", 0) >= 3
    incidents = report["incidents"]
    assert incidents, "the example zone lies where workers walk: expected incidents"
    assert {i["rule"] for i in incidents} <= {
        "hardhat-required",
        "no-entry-drop-zone",
        "one-person-at-hoist-landing",
    }
    for incident in incidents:
        assert incident["camera"] == "yard"
        assert 0.0 <= incident["start_offset_s"] <= incident["end_offset_s"] <= 24.3
        # min_duration 1s: nothing shorter than a second was reported
        assert incident["duration_s"] >= 1.0 - 0.21
        assert 0.0 < incident["peak_confidence"] <= 1.0
        still = cv2.imread(str(out / incident["still"]))
        assert still is not None and still.shape == (352, 640, 3)
    assert "no-entry-drop-zone" in stdout or "hardhat-required" in stdout


@pytest.mark.slow
def test_audit_writes_a_clip_per_incident_over_its_window(
    audited: tuple[Path, dict[str, Any], str],
) -> None:
    from datetime import datetime
    from itertools import pairwise

    from safewatch.incidents.clips import read_clip_info

    out, report, _ = audited
    (video,) = report["videos"]
    origin = datetime.fromisoformat(video["started_at"]).timestamp()
    interval = 1 / 5 + 0.05  # 5 fps analysis of a 24.69 fps source: sampled gaps vary a little
    for incident in report["incidents"]:
        path = out / incident["clip"]
        info = read_clip_info(path)
        assert info is not None and info.incident_id == incident["id"]
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            times = [info.start - origin + float(f.time) for f in container.decode(video=0)]
        # examples/site.yaml keeps the defaults: 5 s before and after, clamped to the video.
        want_first = max(incident["start_offset_s"] - 5.0, 0.0)
        want_last = min(incident["end_offset_s"] + 5.0, video["media_seconds"])
        assert want_first - 0.01 <= times[0] < want_first + interval
        assert want_last - interval < times[-1] <= want_last + 0.01
        assert all(b - a < 2 * interval for a, b in pairwise(times))


@pytest.mark.slow
def test_audit_annotated_video_plays_the_sampled_frames(
    audited: tuple[Path, dict[str, Any], str],
) -> None:
    out, report, _ = audited
    name = report["videos"][0]["annotated_video"]
    with av.open(str(out / name)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = list(container.decode(stream))
    assert len(frames) == report["videos"][0]["frames_analysed"]
    last = float(frames[-1].pts * frames[-1].time_base)
    assert 23.5 < last < 24.3, "annotated video keeps the source's timing"
    assert (frames[0].width, frames[0].height) == (640, 352)


def test_audit_missing_video_is_a_clear_error(tmp_path: Path) -> None:
    result = safewatch(
        "audit", tmp_path / "nope.mp4", "-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "-o", tmp_path
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "nope.mp4" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_output_folder_that_cannot_be_one_is_a_clear_error(tmp_path: Path) -> None:
    """It was a FileExistsError / FileNotFoundError traceback; the file given is left alone."""
    clip = asset(CLIP)
    asset("models/yolox_nano_coco.onnx")
    taken = tmp_path / "report.txt"
    taken.write_text("keep me")
    result = safewatch("audit", clip, "-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "-o", taken)
    assert result.returncode == 2 and "report.txt is a file, not a folder" in result.stderr
    assert taken.read_text() == "keep me"
    inside = taken / "out"  # below a file: cannot be created
    result = safewatch("audit", clip, "-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "-o", inside)
    assert result.returncode == 2, result.stderr
    assert f"cannot create the output folder {inside}" in result.stderr
    assert "Traceback" not in result.stderr


def test_audit_corrupt_video_is_a_clear_error(tmp_path: Path) -> None:
    asset("models/yolox_nano_coco.onnx")
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(os.urandom(50_000))
    result = safewatch("audit", bad, "-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "-o", tmp_path)
    assert result.returncode == 2
    assert "error:" in result.stderr and "garbage.mp4" in result.stderr
    assert "Traceback" not in result.stderr


def test_audit_bad_site_file_names_file_and_line(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "version: 1\n"
        "models:\n"
        "  coco: {path: model.onnx}\n"
        "cameras:\n"
        "  yard:\n"
        "    source: clip.mp4\n"
        "    models: [coco]\n"
        "    fsp: 5\n"
    )
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    result = safewatch("audit", clip, "-c", site, "-r", EXAMPLE_RULES, "-o", tmp_path)
    assert result.returncode == 2
    assert f"{site}:8" in result.stderr and "fsp" in result.stderr
    assert "Traceback" not in result.stderr


def test_audit_bad_start_time(tmp_path: Path) -> None:
    asset(CLIP)
    result = safewatch(
        "audit", asset(CLIP), "-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "-o", tmp_path,
        "--start", "yesterday",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--start" in result.stderr and "yesterday" in result.stderr
    result = safewatch(  # parses, but before year 1 once moved to UTC: was a traceback
        "audit", asset(CLIP), "-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "-o", tmp_path,
        "--start", "0001-01-01T00:00:00+05:00",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--start: '0001-01-01T00:00:00+05:00' is out of range" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_examples() -> None:
    asset("models/yolox_nano_coco.onnx")
    result = safewatch("check-config", EXAMPLE_SITE, "--rules", EXAMPLE_RULES)
    assert result.returncode == 0, result.stderr
    assert "camera yard" in result.stdout and "ok" in result.stdout


def test_rules_validate_reports_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "bad.yaml"
    rules.write_text("version: 1\nrules:\n  - id: x\n    kind: ppe\n    require: [hardhat]\n"
                     "    min_duration: soon\n")  # fmt: skip
    result = safewatch("rules", "validate", rules)
    assert result.returncode == 2
    assert f"{rules}:6" in result.stderr and "min_duration" in result.stderr


def test_camera_password_never_printed(tmp_path: Path) -> None:
    """A secret interpolated into a camera URL stays out of errors and log lines."""
    site = tmp_path / "site.yaml"
    site.write_text(
        "version: 1\n"
        "models:\n"
        "  coco: {path: model.onnx}\n"
        "cameras:\n"
        "  gate:\n"
        "    source: rtsp://viewer:${GATE_PASSWORD}@127.0.0.1:1/stream\n"
        "    models: [coco]\n"
        "    fps: 500\n"
    )
    env_secret = "s3cr3t-Pa55"
    os.environ["GATE_PASSWORD"] = env_secret
    try:
        result = safewatch("--verbose", "check-config", site)
    finally:
        del os.environ["GATE_PASSWORD"]
    assert result.returncode == 2
    assert "fps" in result.stderr
    assert env_secret not in result.stderr + result.stdout


@pytest.mark.slow
def test_audit_output_verifies(audited: tuple[Path, dict[str, Any], str]) -> None:
    """The audit's stills and clips are in its tamper-evident chain, and editing one is caught."""
    out, report, _ = audited
    site = out / "verify-site.yaml"
    site.write_text(
        "version: 1\nmodels: {m: {path: x.onnx}}\ncameras: {yard: {source: x.mp4, models: [m]}}\n"
        f"storage: {{database: 'sqlite:///{out / 'audit.db'}', "
        f"evidence_dir: '{out / 'evidence'}'}}\n"
    )
    clean = safewatch("verify", "--config", site)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    still = out / report["incidents"][0]["still"]
    original = still.read_bytes()
    still.write_bytes(original[:-100] + bytes(100))
    try:
        tampered = safewatch("verify", "--config", site)
    finally:
        still.write_bytes(original)
    assert tampered.returncode == 1
    assert still.name in tampered.stdout + tampered.stderr


def test_audit_reports_coverage_and_strict_fails_on_a_truncated_video(tmp_path: Path) -> None:
    video = truncated_copy(tmp_path)
    args = ("audit", video, "-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "--no-clips", "--no-progress")
    lenient = safewatch(*args, "-o", tmp_path / "lenient")
    assert lenient.returncode == 0, lenient.stderr
    (report,) = json.loads((tmp_path / "lenient" / "incidents.json").read_text())["videos"]
    assert 0.4 < report["coverage"] < 0.6
    assert "warning: only 50.0% of" in " ".join(lenient.stdout.split())

    strict = safewatch(*args, "-o", tmp_path / "strict", "--strict")
    assert strict.returncode == 1
    assert "--strict: part of" in strict.stderr and "truncated.mp4" in strict.stderr
    assert (tmp_path / "strict" / "incidents.json").exists()  # the results are still written


def test_a_failed_audit_leaves_nothing_behind(tmp_path: Path) -> None:
    asset("models/yolox_nano_coco.onnx")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    fresh = tmp_path / "fresh"
    result = safewatch("audit", text, "-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "-o", fresh)
    assert result.returncode == 2 and "notes.mp4" in result.stderr
    assert not fresh.exists()

    used = tmp_path / "used"  # holds an earlier audit: it must survive a failed one untouched
    (used / "evidence" / "cam").mkdir(parents=True)
    earlier = {
        "keep.txt": b"mine",
        "incidents.json": b'{"safewatch": "0.1.0", "videos": [], "incidents": ["earlier"]}',
        "audit.db": b"earlier database",
        "evidence/cam/still.jpg": b"earlier still",
    }
    for name, data in earlier.items():
        (used / name).write_bytes(data)
    result = safewatch("audit", text, "-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "-o", used)
    assert result.returncode == 2
    left = sorted(p.name for p in used.iterdir())
    assert left == ["audit.db", "evidence", "incidents.json", "keep.txt"]
    assert {name: (used / name).read_bytes() for name in earlier} == earlier


def test_videos_without_their_own_time_follow_each_other_and_keep_their_incidents(
    tmp_path: Path,
) -> None:
    """Two exports of one camera named alike and without creation time (one per day folder).

    Both used to start at 1970-01-01T00:00:00: the same person in the same zone made the same
    incident id in both, so audit.db held 3 rows for 6 episodes and one video's still replaced
    the other's; and both annotated videos were written to one file.
    """
    from safewatch.ingest.video_trim import trim_video

    first, second = tmp_path / "d1" / "cam.mp4", tmp_path / "d2" / "cam.mp4"
    first.parent.mkdir()
    second.parent.mkdir()
    trim_video(asset(CLIP), first, frames=124)
    second.write_bytes(first.read_bytes())
    out = tmp_path / "out"
    args = ("-c", EXAMPLE_SITE, "-r", EXAMPLE_RULES, "-o", out, "--annotate", "--no-progress")
    result = safewatch("audit", first, second, *args)
    assert result.returncode == 0, result.stderr
    document = json.loads((out / "incidents.json").read_text())
    one, two = document["videos"]
    assert one["incidents"] == two["incidents"] > 0  # the same footage: the same episodes
    ends = one["media_seconds"]
    assert one["started_at"].startswith("1970-01-01T00:00:00.000")
    assert two["started_at"] > f"1970-01-01T00:00:0{int(ends)}"  # after the first one's end
    ids = [incident["id"] for incident in document["incidents"]]
    stills = {incident["still"] for incident in document["incidents"]}
    assert len(set(ids)) == len(ids) == len(stills) == 2 * one["incidents"]
    with sqlite3.connect(out / "audit.db") as db:
        assert db.execute("SELECT count(*) FROM incidents").fetchone() == (len(ids),)
    names = [one["annotated_video"], two["annotated_video"]]
    assert names == ["01-cam.annotated.mp4", "02-cam.annotated.mp4"]
    assert all((out / name).stat().st_size > 0 for name in names)
