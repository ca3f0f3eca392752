""" "Test this change" through the API: edited, unsaved rule files backtested on footage the server
may read, with the same expectations as ``safewatch backtest`` (see test_cli_backtest.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from backtest_support import CLIP, DROP_ZONE, EXAMPLE_RULES, FRONT_ONLY, write_site

from api_support import add_users, client_for, login, wait_until
from assets import asset
from safewatch.api.dashboard import Dashboard, DashboardSettings
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage


@pytest.mark.slow
def test_an_unsaved_zone_edit_is_backtested_against_the_rules_in_force(tmp_path: Path) -> None:
    clip = asset(CLIP)
    site_path = write_site(tmp_path)
    shutil.copytree(EXAMPLE_RULES, tmp_path / "rules")
    site = load_site(site_path)
    storage = open_site_storage(site)
    dashboard = Dashboard.create(
        lambda: site,
        tmp_path / "rules",
        storage,
        settings=DashboardSettings(allow_server_paths=(clip.parent,)),
    )
    add_users(dashboard)
    edited = (tmp_path / "rules" / "yard.yaml").read_text().replace(DROP_ZONE, FRONT_ONLY)
    try:
        with client_for(dashboard) as client:
            headers = {"X-CSRF-Token": login(client, "operator")}
            broken = client.post(
                "/api/v1/backtests",
                json={"path": str(clip), "files": {"yard.yaml": "rules: [oops"}},
                headers=headers,
            )
            assert (broken.status_code, broken.json()["error"]) == (422, "invalid_config")
            assert client.get("/api/v1/audit-jobs").json() == []  # nothing was queued
            job = client.post(
                "/api/v1/backtests",
                json={"path": str(clip), "files": {"yard.yaml": edited}},
                headers=headers,
            )
            assert job.status_code == 202, job.text
            assert job.json()["kind"] == "backtest"
            job_id = job.json()["id"]

            def finished() -> dict[str, object] | None:
                state = client.get(f"/api/v1/audit-jobs/{job_id}").json()
                return state if state["state"] in ("done", "failed") else None

            state = wait_until(finished, timeout=900, step=1.0)
            assert state["state"] == "done", state["message"]
            assert state["incidents"] == 3 and state["progress"] == 1.0
            result = client.get(f"/api/v1/backtests/{job_id}/result").json()
            rows = {row["rule"]: row for row in result["summary"]["proposal"]}
            assert rows["no-entry-drop-zone"]["only_baseline"] == 3
            assert rows["one-person-at-hoist-landing"]["unchanged"] == 1
            still = result["differences"]["proposal"][0]["baseline"]["still"]
            image = client.get(f"/api/v1/backtests/{job_id}/files/{still}")
            assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
            escape = client.get(f"/api/v1/backtests/{job_id}/files/../proposed/yard.yaml")
            assert escape.status_code == 404
            # The saved rules are untouched: the edit was only tested.
            assert DROP_ZONE in (tmp_path / "rules" / "yard.yaml").read_text()

            # The same footage uploaded, another edit: the job cache replays the detections.
            # The clip has no creation time: without a start its times were made up (1970).
            nograce = json.dumps({"yard.yaml": edited.replace("grace: 1s", "grace: 0s")})
            no_time = client.post(
                "/api/v1/backtests/upload",
                files={"video": ("yard.mp4", b"\x00" * 10, "video/mp4")},
                data={"files": nograce, "start": "yesterday"},
                headers=headers,
            )
            assert no_time.status_code == 422 and "not an ISO 8601 time" in no_time.text
            uploaded = client.post(
                "/api/v1/backtests/upload",
                files={"video": ("yard.mp4", clip.read_bytes(), "video/mp4")},
                data={"files": nograce, "start": "2017-02-22T13:07:16+00:00"},
                headers=headers,
            )
            assert uploaded.status_code == 202, uploaded.text
            assert uploaded.json()["video_start"] == 1487768836.0
            upload_id = uploaded.json()["id"]

            def upload_finished() -> dict[str, object] | None:
                state = client.get(f"/api/v1/audit-jobs/{upload_id}").json()
                return state if state["state"] in ("done", "failed") else None

            assert wait_until(upload_finished, timeout=900, step=1.0)["state"] == "done"
            again = client.get(f"/api/v1/backtests/{upload_id}/result").json()
            assert again["footage"][0]["detections"] == "cache"
            assert again["footage"][0]["clock"] == "argument"
            assert {r["rule"]: r for r in again["summary"]["proposal"]}["no-entry-drop-zone"][
                "only_baseline"
            ] == 3
            not_json = client.post(
                "/api/v1/backtests/upload",
                files={"video": ("yard.mp4", b"\x00" * 10, "video/mp4")},
                data={"files": "{oops"},
                headers=headers,
            )
            assert not_json.status_code == 422 and "not JSON" in not_json.json()["message"]

            headers = {"X-CSRF-Token": login(client, "viewer")}
            refused = client.post(
                "/api/v1/backtests",
                json={"path": str(clip), "files": {"yard.yaml": edited}},
                headers=headers,
            )
            assert refused.status_code == 403
    finally:
        storage.close()
