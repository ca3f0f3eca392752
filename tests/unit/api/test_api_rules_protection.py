"""The dashboard's rule saves: a rule no model of its camera can see is refused with its
``file:line``; a save that leaves a camera unwatched is accepted but flagged (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api_support import RULES, add_users, client_for, login, make_dashboard

Admin = tuple[TestClient, dict[str, str], Path]


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    with client_for(dashboard) as client:
        yield client, {"X-CSRF-Token": login(client, "admin")}, tmp_path / "rules"
    storage.close()


def test_a_save_with_a_rule_its_camera_cannot_see_is_refused(admin: Admin) -> None:
    client, headers, rules = admin
    blind = RULES + "  - {id: vests, kind: ppe, cameras: [yard], require: [vest]}\n"
    refused = client.put("/api/v1/rules/files/yard.yaml", json={"text": blind}, headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_config")
    (detail,) = refused.json()["details"]
    assert detail["file"].endswith("rules/yard.yaml") and detail["line"] == 20
    assert detail["field"] == "rules[2].require[0]"
    assert detail["message"].startswith("rule 'vests' needs 'vest' or 'no_vest' but camera 'yard'")
    assert (rules / "yard.yaml").read_text() == RULES


def test_a_save_that_leaves_a_camera_unwatched_is_flagged(admin: Admin) -> None:
    client, headers, _ = admin
    emptied = RULES.replace("severity: high", "severity: high\n    enabled: false").replace(
        "severity: medium", "severity: medium\n    enabled: false"
    )
    saved = client.put("/api/v1/rules/files/yard.yaml", json={"text": emptied}, headers=headers)
    assert saved.status_code == 200, saved.json()
    assert saved.json()["status"]["warnings"] == [
        "generation 2 dropped 2 rule(s) that were in force: hardhat-required, no-entry-drop-zone"
        " (until they come back or an admin acknowledges their removal)",
        "no enabled rule runs on camera(s) yard: nothing is watched there",
    ]
    assert (
        client.get("/api/v1/rules/status").json()["warnings"] == saved.json()["status"]["warnings"]
    )


def test_an_admin_acknowledges_a_deliberate_removal_and_it_is_audited(admin: Admin) -> None:
    client, headers, _ = admin
    off = RULES.replace("severity: medium", "severity: medium\n    enabled: false")
    saved = client.put("/api/v1/rules/files/yard.yaml", json={"text": off}, headers=headers)
    assert saved.json()["status"]["dropped"] == ["no-entry-drop-zone"]  # the yard keeps one

    url = "/api/v1/rules/dropped/acknowledge"
    wrong = client.post(url, json={"rules": ["hardhat-required"]}, headers=headers)
    assert (wrong.status_code, wrong.json()["error"]) == (409, "conflict")
    assert "not dropped: hardhat-required" in wrong.json()["message"]
    assert client.post(url, json={"rules": []}, headers=headers).status_code == 422

    done = client.post(url, json={"rules": ["no-entry-drop-zone"]}, headers=headers)
    assert done.status_code == 200, done.json()
    assert done.json()["dropped"] == [] and done.json()["warnings"] == []
    assert client.get("/api/v1/rules/status").json()["dropped"] == []
    audits = client.get("/api/v1/audit-log", params={"action": "rules.acknowledge_dropped"})
    (record,) = audits.json()["items"]
    assert record["actor"] == "admin" and record["subject"] == "no-entry-drop-zone"
    assert record["detail"] == {"rules": ["no-entry-drop-zone"], "generation": 2}


def test_a_viewer_cannot_acknowledge(tmp_path: Path) -> None:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    with client_for(dashboard) as client:
        csrf = login(client, "viewer")
        refused = client.post(
            "/api/v1/rules/dropped/acknowledge",
            json={"rules": ["x"]},
            headers={"X-CSRF-Token": csrf},
        )
        assert refused.status_code == 403
    storage.close()
