"""An unsaved zone edit as the rule file would read (the Zones page's "Test this change")."""

from __future__ import annotations

from pathlib import Path

import yaml

from api_support import add_users, client_for, login, make_dashboard


def test_a_zone_preview_changes_nothing_on_disk_and_keeps_the_rest_of_the_file(
    tmp_path: Path,
) -> None:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    before = (tmp_path / "rules" / "yard.yaml").read_text()
    points = [[0.4, 0.62], [0.74, 0.62], [0.78, 0.95], [0.38, 0.95]]
    try:
        with client_for(dashboard) as client:
            headers = {"X-CSRF-Token": login(client, "operator")}
            answer = client.post(
                "/api/v1/zones/drop_zone/preview",
                json={"camera": "yard", "points": points},
                headers=headers,
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["file"] == "yard.yaml"
            assert "# Zones of the yard camera." in body["text"]  # comments kept
            edited = yaml.safe_load(body["text"])
            assert edited["zones"]["drop_zone"]["polygon"] == points
            assert [r["id"] for r in edited["rules"]] == [
                r["id"] for r in yaml.safe_load(before)["rules"]
            ]
            assert (tmp_path / "rules" / "yard.yaml").read_text() == before
            headers = {"X-CSRF-Token": login(client, "viewer")}
            refused = client.post(
                "/api/v1/zones/drop_zone/preview",
                json={"camera": "yard", "points": points},
                headers=headers,
            )
            assert refused.status_code == 403
    finally:
        storage.close()
