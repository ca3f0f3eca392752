"""``safewatch evidence reveal`` on a site's real storage, and ``verify`` over what the evidence
thread wrote (clip, clean still, sealed originals are all in the tamper-evidence chain)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest
import yaml

from cli_support import invoke
from evidence_frames import HEAD, coded_frame, episode_events
from safewatch.config.loader import load_site
from safewatch.errors import NotFound
from safewatch.incidents import EvidenceKey, EvidenceKeyError, EvidenceRecorder, IncidentManager
from safewatch.incidents.sealed import REVEAL_LOG, generate_key, reveal_records
from safewatch.incidents.site_storage import open_site_storage

FPS = 10.0
ENV = "SITE_EVIDENCE_KEY"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    config = {
        "version": 1,
        "models": {"coco": {"path": "yolox_nano"}},
        "cameras": {"line-2": {"source": "/dev/null", "models": ["coco"]}},
        "storage": {"database": "sqlite:///data/site.db", "evidence_dir": "evidence"},
        "evidence": {"keep_originals": True, "key_env": ENV, "pre_seconds": 1.0},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def record_incident(site: Path, key: str) -> str:
    loaded = load_site(site)
    storage = open_site_storage(loaded)
    try:
        recorder = EvidenceRecorder(
            storage.evidence,
            storage.repository,
            loaded.config.evidence,
            key=EvidenceKey.from_env(ENV, {ENV: key}),
            on_full="wait",
        )
        manager = IncidentManager(storage.repository, storage.evidence, recorder=recorder)
        opened = []
        for i in range(60):
            frame, tracked = coded_frame(i, FPS)
            events = episode_events(i, FPS, started=10, fired=20, ended=40)
            opened += [c.incident.id for c in manager.handle(events, tracked, frame)]
        recorder.close(timeout=60)
        assert recorder.stats.originals_sealed == 2
        return opened[0]
    finally:
        storage.close()


def test_reveal_writes_the_originals_and_logs_the_request(site: Path, tmp_path: Path) -> None:
    key = generate_key()
    incident = record_incident(site, key)
    code, output = invoke("verify", "--config", str(site))
    assert code == 0, output  # every evidence file the recorder wrote is in the chain, intact
    out = tmp_path / "revealed"
    code, output = invoke(
        "evidence",
        "reveal",
        incident,
        "--config",
        str(site),
        "--reason",
        "HSE case 77",
        "--actor",
        "auditor",
        "--out",
        str(out),
        env={ENV: key},
    )
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == [
        f"{incident}.orig.jpg",
        f"{incident}.orig.mp4",
    ]
    still = cv2.imread(str(out / f"{incident}.orig.jpg"))
    assert still is not None
    x1, y1, x2, y2 = HEAD
    assert still[y1 + 6 : y2 - 6, x1 + 6 : x2 - 6].std() > 60, "the original must be unblurred"
    records = reveal_records(tmp_path / "evidence" / REVEAL_LOG)
    assert [(r["actor"], r["reason"], r["outcome"]) for r in records] == [
        ("auditor", "HSE case 77", "revealed"),
        ("auditor", "HSE case 77", "revealed"),
    ]


def test_reveal_errors_are_clear(site: Path) -> None:
    key = generate_key()
    incident = record_incident(site, key)
    with pytest.raises(EvidenceKeyError, match=rf"\${ENV} is not set"):
        invoke("evidence", "reveal", incident, "-c", str(site), "--reason", "r", env={ENV: ""})
    with pytest.raises(EvidenceKeyError, match="was sealed with key"):
        invoke(
            "evidence",
            "reveal",
            incident,
            "-c",
            str(site),
            "--reason",
            "r",
            env={ENV: generate_key()},
        )
    with pytest.raises(NotFound, match="incident 'nope' not found"):
        invoke("evidence", "reveal", "nope", "-c", str(site), "--reason", "r", env={ENV: key})


@pytest.mark.parametrize(
    ("flags", "named"), [(["--reason", ""], "--reason"), (["--reason", "  "], "--reason"),
                         (["--reason", "case 9", "--actor", " "], "--actor")],
)  # fmt: skip
def test_an_empty_reason_or_actor_is_a_usage_error(
    site: Path, tmp_path: Path, flags: list[str], named: str
) -> None:
    """Refused by reveal() with a ValueError, which was a traceback; nothing is logged."""
    key = generate_key()
    incident = record_incident(site, key)
    code, output = invoke("evidence", "reveal", incident, "-c", str(site), *flags, env={ENV: key})
    assert code == 2 and named in output and "Traceback" not in output
    assert not (tmp_path / "evidence" / REVEAL_LOG).exists()


def test_without_actor_a_uid_without_a_name_is_logged_as_its_number(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getpass.getuser() raises for a uid without a passwd entry and no USER (a container's
    arbitrary uid): reveal without --actor was a KeyError traceback."""
    import pwd

    key = generate_key()
    incident = record_incident(site, key)

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    out = tmp_path / "revealed"
    code, output = invoke(
        "evidence", "reveal", incident, "-c", str(site), "--reason", "case 9", "--out", str(out),
        env={ENV: key},
    )  # fmt: skip
    assert code == 0, output
    records = reveal_records(tmp_path / "evidence" / REVEAL_LOG)
    assert {r["actor"] for r in records} == {f"uid:{os.getuid()}"}


def test_new_key_is_a_usable_key() -> None:
    code, output = invoke("evidence", "new-key")
    assert code == 0
    assert len(EvidenceKey.from_env(ENV, {ENV: output.strip()}).secret) == 32


def test_refusals_before_any_file_are_logged_and_out_is_private(site: Path, tmp_path: Path) -> None:
    """An unknown incident, or one without originals, is refused before reveal() reads a file:
    the request is logged all the same (docs/evidence.md). A missing --out folder is created
    private, like the default temporary one."""
    key = generate_key()
    incident = record_incident(site, key)
    log = tmp_path / "evidence" / REVEAL_LOG
    with pytest.raises(NotFound, match="incident 'nope' not found"):
        invoke("evidence", "reveal", "nope", "-c", str(site), "--reason", "r1", env={ENV: key})
    for sealed in (tmp_path / "evidence").rglob("*.sealed"):
        sealed.rename(sealed.with_name(sealed.name + ".moved"))
    with pytest.raises(NotFound, match="sealed original"):
        invoke("evidence", "reveal", incident, "-c", str(site), "--reason", "r2", env={ENV: key})
    records = reveal_records(log)
    assert [(r["file"], r["reason"]) for r in records] == [("nope", "r1"), (incident, "r2")]
    assert all(r["outcome"].startswith("refused: ") for r in records)
    assert "not found" in records[0]["outcome"] and "sealed original" in records[1]["outcome"]
    for sealed in (tmp_path / "evidence").rglob("*.sealed.moved"):
        sealed.rename(sealed.with_name(sealed.name.removesuffix(".moved")))
    out = tmp_path / "cases" / "77"
    umask = os.umask(0o022)  # the usual one, which left a created folder readable by all
    try:
        code, output = invoke(
            "evidence", "reveal", incident, "-c", str(site), "--reason", "r3", "-o", str(out),
            env={ENV: key},
        )  # fmt: skip
    finally:
        os.umask(umask)
    assert code == 0, output
    assert out.stat().st_mode & 0o777 == 0o700
