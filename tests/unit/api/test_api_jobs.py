"""Audit jobs through the API: what is refused before anything runs, and the detector a job
builds (the full audit of a clip is exercised by ``safewatch audit``'s own tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from api_support import ELSEWHERE, FROM_START, add_users, client_for, login, make_dashboard
from assets import asset
from safewatch.api.jobs import AuditJob, AuditJobs, JobEnvironment, run_job
from safewatch.api.routes.audit_jobs import jobs_of
from safewatch.config.loader import load_site
from safewatch.detect.multi import CameraDetector
from safewatch.errors import SafewatchError
from safewatch.footage import audit
from safewatch.rules import load_rules


def test_audit_jobs_refuse_paths_outside_allowed_folders_and_non_videos(tmp_path: Path) -> None:
    allowed = tmp_path / "footage"
    allowed.mkdir()
    (allowed / "notes.txt").write_text("not a video")
    (tmp_path / "site").mkdir()
    dashboard, storage = make_dashboard(tmp_path / "site", allow_server_paths=(allowed,))
    add_users(dashboard)
    try:
        with client_for(dashboard) as client:
            headers = {"X-CSRF-Token": login(client, "operator")}
            outside = client.post(
                "/api/v1/audit-jobs",
                json={"path": "/etc/passwd", "camera": "yard"},
                headers=headers,
            )
            assert (outside.status_code, outside.json()["error"]) == (422, "invalid_config")
            assert "outside the folders" in outside.json()["message"]
            text = client.post(
                "/api/v1/audit-jobs",
                json={"path": str(allowed / "notes.txt"), "camera": "yard"},
                headers=headers,
            )
            assert text.status_code == 400 and "not a video" in text.json()["message"]
            upload = client.post(
                "/api/v1/audit-jobs/upload",
                files={"video": ("evil.sh", b"#!/bin/sh\n", "text/plain")},
                data={"camera": "yard"},
                headers=headers,
            )
            assert upload.status_code == 400 and "not a video file" in upload.json()["message"]
            unknown = client.post(
                "/api/v1/audit-jobs/upload",
                files={"video": ("clip.mp4", b"\x00" * 10, "video/mp4")},
                data={"camera": "roof"},
                headers=headers,
            )
            assert unknown.status_code == 404
            # a request parameter (docs/api.md): it was invalid_config, as for the site file
            undated = client.post(
                "/api/v1/audit-jobs/upload",
                files={"video": ("clip.mp4", b"\x00" * 10, "video/mp4")},
                data={"camera": "yard", "start": "yesterday"},
                headers=headers,
            )
            assert (undated.status_code, undated.json()["error"]) == (422, "invalid_request")
            assert undated.json()["message"].startswith(
                "invalid request: start: 'yesterday' is not an ISO 8601 time"
            )
            assert [d["field"] for d in undated.json()["details"]] == ["start"]
            assert client.get("/api/v1/audit-jobs").json() == []
    finally:
        storage.close()


def test_every_request_that_reads_a_job_incidents_evidence_from_its_start_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audited by what is served, not by the Range header's text (``items=0-`` and ``bytes=00-``
    read the whole clip unaudited). The finished job is stood in for by its evidence look-up."""
    (tmp_path / "site").mkdir()
    dashboard, storage = make_dashboard(tmp_path / "site")
    add_users(dashboard)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(bytes(range(256)) * 4)
    url = "/api/v1/audit-jobs/abcdefabcdef/incidents/inc1/clip"
    try:
        with client_for(dashboard) as client:
            login(client, "viewer")
            monkeypatch.setattr(dashboard.jobs, "evidence", lambda *_: clip)
            for header in FROM_START + ELSEWHERE:
                before = dashboard.auth.audit_records(action="evidence.view")[1]
                answer = client.get(url, headers={"Range": header} if header else {})
                added = dashboard.auth.audit_records(action="evidence.view")[1] - before
                if header in FROM_START:
                    assert answer.content[:5] == clip.read_bytes()[:5], header
                assert added == (header in FROM_START), header
            part = client.get(url, headers={"Range": "bytes=10-19"})
            assert part.status_code == 206 and part.content == clip.read_bytes()[10:20]
            assert part.headers["content-type"] == "video/mp4"
    finally:
        storage.close()


def test_a_dashboard_audit_of_a_tiled_camera_detects_with_its_tiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's detector comes from the builder ``audit``, ``backtest`` and ``serve`` share: one
    built from the models alone dropped the camera's tiling, so the dashboard found fewer small
    people than the CLI audit of the same footage."""
    site_file = tmp_path / "site.yaml"
    model = {"path": str(asset("models/yolox_nano_coco.onnx")), "format": "yolox"}
    tiling = {"columns": 2, "rows": 1, "overlap": 0.2}
    camera = {"source": "x.mp4", "fps": 2, "models": ["coco"], "tiling": tiling}
    site_file.write_text(
        yaml.safe_dump(
            {"version": 1, "models": {"coco": model}, "cameras": {"yard": camera}},
        )
    )
    (tmp_path / "rules.yaml").write_text("version: 1\nrules: []\n")
    site = load_site(site_file)
    used: list[object] = []

    def fake_run_audit(*_: object, detector: object, **__: object) -> audit.AuditReport:
        used.append(detector)
        return audit.AuditReport(tmp_path / "out")

    monkeypatch.setattr(audit, "run_audit", fake_run_audit)
    env = JobEnvironment(
        lambda: site,
        lambda: load_rules(tmp_path / "rules.yaml", site.config),
        tmp_path / "rules.yaml",
        None,  # type: ignore[arg-type]  # an audit reads no site incidents
    )
    job = AuditJob("abcdefabcdef", "clip.mp4", "yard", "operator", 0.0)
    run_job(
        env,
        job,
        tmp_path / "clip.mp4",
        tmp_path,
        tmp_path / "cache",
        started=lambda _: None,
        progress=lambda _: None,
    )
    (counting,) = used
    inner = counting._inner  # type: ignore[attr-defined]
    assert isinstance(inner, CameraDetector) and inner.tiling == site.config.cameras["yard"].tiling


def test_a_failed_upload_job_names_the_uploaded_file_not_the_servers_copy(
    tmp_path: Path,
) -> None:
    """The job's message was "cannot open video file /srv/.../<job>/input.mp4: ...": the
    server's own folders, shown to a user who uploaded clip.mp4."""
    site_file = tmp_path / "site.yaml"
    model = {"path": str(asset("models/yolox_nano_coco.onnx")), "format": "yolox"}
    camera = {"source": "x.mp4", "fps": 2, "models": ["coco"]}
    site_file.write_text(
        yaml.safe_dump({"version": 1, "models": {"coco": model}, "cameras": {"yard": camera}})
    )
    (tmp_path / "rules.yaml").write_text("version: 1\nrules: []\n")
    site = load_site(site_file)
    env = JobEnvironment(
        lambda: site,
        lambda: load_rules(tmp_path / "rules.yaml", site.config),
        tmp_path / "rules.yaml",
        None,  # type: ignore[arg-type]  # an audit reads no site incidents
    )
    folder = tmp_path / "jobs" / "abcdefabcdef"
    folder.mkdir(parents=True)
    (folder / "input.mp4").write_bytes(b"\x00" * 10)  # the upload, as received
    job = AuditJob("abcdefabcdef", "clip.mp4", "yard", "operator", 0.0)
    with pytest.raises(SafewatchError) as failed:
        run_job(
            env,
            job,
            folder / "input.mp4",
            folder,
            tmp_path / "cache",
            started=lambda _: None,
            progress=lambda _: None,
        )
    message = str(failed.value)
    assert "cannot open video file clip.mp4: " in message
    assert str(tmp_path) not in message and "input.mp4" not in message


def test_an_upload_the_disk_has_no_room_for_fails_its_job_and_answers_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while an upload was copied escaped as a raw OSError: a 500, a ghost "queued" job
    nobody would run and the partial file left on the full disk."""
    (tmp_path / "site").mkdir()
    dashboard, storage = make_dashboard(tmp_path / "site")
    add_users(dashboard)
    new = AuditJobs._new

    def on_a_full_disk(self: AuditJobs, *args: Any, **kwargs: Any) -> AuditJob:
        job = new(self, *args, **kwargs)
        (self.folder / job.id / "input.mp4").symlink_to("/dev/full")  # every write: ENOSPC
        return job

    monkeypatch.setattr(AuditJobs, "_new", on_a_full_disk)
    try:
        with client_for(dashboard) as client:
            headers = {"X-CSRF-Token": login(client, "operator")}
            upload = client.post(
                "/api/v1/audit-jobs/upload",
                files={"video": ("clip.mp4", b"\x00" * (3 << 20), "video/mp4")},
                data={"camera": "yard"},
                headers=headers,
            )
            assert (upload.status_code, upload.json()["error"]) == (503, "storage_unavailable")
            assert "disk full" in upload.json()["message"]
            jobs = client.get("/api/v1/audit-jobs").json()
            assert [(j["state"], j["message"]) for j in jobs] == [
                ("failed", "upload not stored: disk full")
            ]
            folder = jobs_of(dashboard).folder / jobs[0]["id"]
            assert sorted(p.name for p in folder.iterdir()) == ["job.json"]
    finally:
        storage.close()
