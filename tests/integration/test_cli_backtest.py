"""``safewatch backtest`` as a user runs it: a real process, real models, the real CCTV clip.

The expectations were checked by hand on the evidence stills of the example clip: the three
people the baseline flags in the drop zone all stand at its back edge, by the hoist landing
(feet at 52-58 % of the frame height), so a drop zone that starts at 62 % removes exactly those
three incidents and leaves the hoist-landing occupancy incident alone; and without the 1 s grace
the episode of person #3, whose feet leave the zone for a moment at about 7.6 s, ends there
instead of at 8.4 s (one incident *changed*, the others unchanged).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from backtest_support import (
    CLIP,
    DROP_ZONE,
    EXAMPLE_RULES,
    FRONT_ONLY,
    GRACE,
    NO_GRACE,
    proposal,
    safewatch,
    truncated_copy,
    write_site,
)

from assets import asset

ROOT = Path(__file__).resolve().parents[2]

START = "2017-02-22T13:07:16"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    clip = asset(CLIP)
    folder = tmp_path_factory.mktemp("backtest")
    return {
        "clip": clip,
        "folder": folder,
        "site": write_site(folder),
        "cache": folder / "cache",
        "front": proposal(folder, "front", {DROP_ZONE: FRONT_ONLY}),
        "nograce": proposal(folder, "nograce", {GRACE: NO_GRACE}),
    }


@pytest.fixture(scope="module")
def first_run(rig: dict[str, Path]) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Both proposals against the example rules in one pass, detections cached."""
    out = rig["folder"] / "first"
    result = safewatch(
        "backtest", rig["clip"], "-c", rig["site"], "--baseline", EXAMPLE_RULES,
        "-r", rig["front"], "-r", rig["nograce"], "-o", out, "--cache-dir", rig["cache"],
        "--start", START,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads((out / "backtest.json").read_text()), result


def summary(document: dict[str, Any], name: str) -> dict[str, dict[str, int]]:
    return {
        row["rule"]: {k: v for k, v in row.items() if k != "rule"}
        for row in document["summary"][name]
    }


def test_a_zone_moved_off_the_back_wall_removes_exactly_the_three_intrusions(
    first_run: tuple[dict[str, Any], subprocess.CompletedProcess[str]],
) -> None:
    document, result = first_run
    rows = summary(document, "proposal-1")
    assert rows["no-entry-drop-zone"] == {
        "unchanged": 0, "changed": 0, "only_baseline": 3, "only_proposal": 0,
    }  # fmt: skip
    assert rows["one-person-at-hoist-landing"]["unchanged"] == 1
    assert sum(rows["one-person-at-hoist-landing"].values()) == 1
    removed = document["differences"]["proposal-1"]
    assert {d["change"] for d in removed} == {"only_baseline"}
    assert all(d["baseline"]["still"] for d in removed)
    out = Path(result.stdout.split("written: ")[1].split(",")[0]).parent
    for difference in removed:
        assert (out / difference["baseline"]["still"]).is_file()
    assert "only baseline" in result.stdout and "no-entry-drop-zone" in result.stdout


def test_dropping_the_grace_period_shortens_one_episode(
    first_run: tuple[dict[str, Any], subprocess.CompletedProcess[str]],
) -> None:
    document, _ = first_run
    rows = summary(document, "proposal-2")
    assert rows["no-entry-drop-zone"] == {
        "unchanged": 2, "changed": 1, "only_baseline": 0, "only_proposal": 0,
    }  # fmt: skip
    (changed,) = document["differences"]["proposal-2"]
    before, after = changed["baseline"], changed["proposal-2"]
    assert before["track_ids"] == after["track_ids"]
    assert before["start_offset_s"] == after["start_offset_s"]
    assert after["end_offset_s"] < before["end_offset_s"] - 0.5


def test_the_html_page_lists_the_differences_with_their_stills(
    first_run: tuple[dict[str, Any], subprocess.CompletedProcess[str]], rig: dict[str, Path]
) -> None:
    page = (rig["folder"] / "first" / "backtest.html").read_text()
    assert page.count('class="only_baseline"') == 3
    assert page.count('class="changed"') == 1
    assert page.count("<img src=") == 3 + 2


def test_a_second_backtest_replays_the_cached_detections(
    first_run: tuple[dict[str, Any], subprocess.CompletedProcess[str]], rig: dict[str, Path]
) -> None:
    document, _ = first_run
    assert document["footage"][0]["detections"] == "detector"
    out = rig["folder"] / "second"
    result = safewatch(
        "backtest", rig["clip"], "-c", rig["site"], "--baseline", EXAMPLE_RULES,
        "-r", rig["front"], "-o", out, "--cache-dir", rig["cache"], "--start", START,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    again = json.loads((out / "backtest.json").read_text())
    assert again["footage"][0]["detections"] == "cache"
    assert summary(again, "proposal") == summary(document, "proposal-1")
    assert "from cached detections" in result.stderr


def test_the_example_clip_is_named_as_audit_names_it(
    first_run: tuple[dict[str, Any], subprocess.CompletedProcess[str]], rig: dict[str, Path]
) -> None:
    """docs/backtest.md's example names the catalogue clip, as `audit` accepts: backtest said
    "footage construction_cctv does not exist"."""
    document, _ = first_run
    out = rig["folder"] / "by-name"
    result = safewatch(
        "backtest", "construction_cctv", "-c", rig["site"], "--baseline", EXAMPLE_RULES,
        "-r", rig["front"], "-o", out, "--cache-dir", rig["cache"], "--start", START,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    again = json.loads((out / "backtest.json").read_text())
    assert summary(again, "proposal") == summary(document, "proposal-1")
    missing = safewatch("backtest", "construction_cctw", "-c", rig["site"], "-r", rig["front"])
    assert missing.returncode == 2
    assert "video construction_cctw does not exist or is not a file" in missing.stderr


def test_scores_each_rule_set_against_reviewed_incidents(
    first_run: tuple[dict[str, Any], subprocess.CompletedProcess[str]], rig: dict[str, Path]
) -> None:
    """Reviewed live incidents: one intrusion confirmed real, one marked false positive."""
    from safewatch.config.loader import load_site
    from safewatch.domain import Incident
    from safewatch.domain.incidents import IncidentStatus
    from safewatch.storage import IncidentRepository, create_engine_for

    document, _ = first_run
    site = load_site(rig["site"])
    baseline = document["footage"][0]["incidents"]["baseline"]
    intrusions = [i for i in baseline if i["rule"] == "no-entry-drop-zone"]
    from datetime import datetime

    engine = create_engine_for(site.config.storage.database, site.base_dir)
    repo = IncidentRepository(engine)
    try:
        for number, (record, status) in enumerate(
            [
                (intrusions[0], IncidentStatus.RESOLVED),
                (intrusions[1], IncidentStatus.FALSE_POSITIVE),
            ]
        ):
            start = datetime.fromisoformat(record["started_at"]).timestamp() + 0.4
            end = datetime.fromisoformat(record["ended_at"]).timestamp() - 0.4
            live = Incident(
                id=f"live{number}", camera_id="yard", rule_id="no-entry-drop-zone",
                rule_kind="zone_intrusion", severity=record["severity"], track_ids=(90 + number,),
                started_at=start, ended_at=end, peak_confidence=0.8, message="live",
            )  # fmt: skip
            repo.upsert(live)
            repo.set_status(live.id, status, actor="reviewer")
    finally:
        engine.dispose()
    out = rig["folder"] / "reviewed"
    result = safewatch(
        "backtest", rig["clip"], "-c", rig["site"], "--baseline", EXAMPLE_RULES,
        "-r", rig["front"], "-o", out, "--cache-dir", rig["cache"], "--start", START,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads((out / "backtest.json").read_text())["reviewed"]
    assert scores["baseline"]["recall"] == 1.0 and scores["baseline"]["precision"] == 0.5
    assert [i["id"] for i in scores["baseline"]["false_raised"]] == ["live1"]
    assert scores["proposal"]["recall"] == 0.0 and scores["proposal"]["precision"] is None
    assert [i["id"] for i in scores["proposal"]["real_missed"]] == ["live0"]
    assert [i["id"] for i in scores["proposal"]["false_avoided"]] == ["live1"]
    assert "Against reviewed incidents" in result.stdout


def test_a_rule_set_that_does_not_validate_is_one_line_and_nothing_is_written(
    rig: dict[str, Path],
) -> None:
    broken = proposal(rig["folder"], "broken", {"kind: zone_intrusion": "kind: zone_intrusoin"})
    out = rig["folder"] / "broken-out"
    result = safewatch(
        "backtest", rig["clip"], "-c", rig["site"], "--baseline", EXAMPLE_RULES, "-r", broken,
        "-o", out, "--cache-dir", rig["cache"],
    )  # fmt: skip
    assert result.returncode == 2
    assert "yard.yaml:" in result.stderr and "zone_intrusoin" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert not list(rig["folder"].glob(".broken-out.partial-*"))


def test_footage_that_cannot_be_read_is_one_line_and_nothing_is_written(
    rig: dict[str, Path],
) -> None:
    fake = rig["folder"] / "not-a-video.mp4"
    fake.write_bytes(b"this is not a video\n" * 100)
    out = rig["folder"] / "fake-out"
    result = safewatch(
        "backtest", fake, "-c", rig["site"], "--baseline", EXAMPLE_RULES, "-r", rig["front"],
        "-o", out, "--cache-dir", rig["cache"],
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "not-a-video.mp4" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
    assert not list(rig["folder"].glob(".fake-out.partial-*"))


def test_an_output_folder_that_is_not_a_backtest_is_never_replaced(rig: dict[str, Path]) -> None:
    keep = rig["folder"] / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    result = safewatch(
        "backtest", rig["clip"], "-c", rig["site"], "-r", rig["front"], "-o", keep,
        "--cache-dir", rig["cache"], "--start", START, "--no-reviewed",
    )  # fmt: skip
    assert result.returncode == 2
    assert "holds no backtest.json" in result.stderr
    assert (keep / "notes.txt").read_text() == "mine"
    assert not list(rig["folder"].glob(".precious.partial-*"))


def test_the_output_folder_has_the_mode_any_new_folder_gets(
    first_run: tuple[dict[str, Any], subprocess.CompletedProcess[str]], rig: dict[str, Path]
) -> None:
    """Not the staging folder's 0700 (``mkdtemp``): colleagues and web servers read it."""
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((rig["folder"] / "first").stat().st_mode) == 0o777 & ~umask


def test_a_symbolic_link_as_output_is_one_line_and_nothing_is_written(
    first_run: tuple[dict[str, Any], subprocess.CompletedProcess[str]], rig: dict[str, Path]
) -> None:
    link = rig["folder"] / "btlink"
    link.symlink_to(rig["folder"] / "first")
    before = (rig["folder"] / "first" / "backtest.json").read_bytes()
    result = safewatch(
        "backtest", rig["clip"], "-c", rig["site"], "-r", rig["front"], "-o", link,
        "--cache-dir", rig["cache"], "--start", START, "--no-reviewed",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "is a symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert link.is_symlink() and (rig["folder"] / "first" / "backtest.json").read_bytes() == before
    assert not list(rig["folder"].rglob(".btlink.partial-*"))


def test_partly_decoded_footage_without_its_own_time_is_said(rig: dict[str, Path]) -> None:
    """Half of a clip without creation time: the backtest used to print its table as if the
    footage were whole, with times in 1970 that no reviewed incident can match, and say neither."""
    video = truncated_copy(rig["folder"])
    out = rig["folder"] / "truncated-out"
    result = safewatch(
        "backtest", video, "-c", rig["site"], "--baseline", EXAMPLE_RULES, "-r", rig["front"],
        "-o", out, "--no-cache", "--no-reviewed",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (footage,) = json.loads((out / "backtest.json").read_text())["footage"]
    assert footage["clock"] == "epoch" and 0.4 < footage["coverage"] < 0.6
    assert footage["from"].startswith("1970-01-01")
    said = " ".join(result.stdout.split())
    assert "warning: only 50.0% of" in said and "truncated.mp4" in said
    assert "no creation time" in said and "--start" in said
