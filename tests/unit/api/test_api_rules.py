"""Rules and zones edited through the API: the rule files stay the source of truth, every save is
validated as a whole set first, comments survive structured edits, and the rules reload."""

from __future__ import annotations

import errno
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api_support import RULES, add_users, client_for, login, make_dashboard, next_message
from safewatch.api.dashboard import Dashboard
from safewatch.config.secrets import redact_secrets
from safewatch.domain import Detections, TrackedFrame
from safewatch.domain.tracks import PPEState, Track
from safewatch.errors import StorageError


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Dashboard, Path]]:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    with client_for(dashboard) as client:
        yield client, {"X-CSRF-Token": login(client, "admin")}, dashboard, tmp_path / "rules"
    storage.close()


def test_an_invalid_save_reports_file_line_and_writes_nothing(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    client, headers, _, rules = admin
    broken = RULES.replace("zone: drop_zone", "zone: nowhere")
    checked = client.post(
        "/api/v1/rules/files/yard.yaml/validate", json={"text": broken}, headers=headers
    ).json()
    assert checked["ok"] is False
    error = checked["errors"][0]
    assert error["file"].endswith("rules/yard.yaml") and "safewatch-rules-" not in error["file"]
    assert error["line"] == 17 and error["field"] == "rules[1].zone"
    assert "unknown zone 'nowhere'" in error["message"]
    refused = client.put("/api/v1/rules/files/yard.yaml", json={"text": broken}, headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_config")
    assert (rules / "yard.yaml").read_text() == RULES
    assert client.get("/api/v1/rules/status").json()["generation"] == 1


def test_a_file_nested_too_deep_is_refused_as_invalid_not_a_server_error(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    """``rules: &r [*r]`` (an alias inside the block it names) raised RecursionError out of the
    YAML reader, which the editor does not catch: a 500 for any operator's save."""
    client, headers, _, rules = admin
    looped = "version: 1\nrules: &r\n  - *r\n"
    checked = client.post(
        "/api/v1/rules/files/yard.yaml/validate", json={"text": looped}, headers=headers
    ).json()
    assert checked["ok"] is False
    error = checked["errors"][0]
    assert error["file"].endswith("rules/yard.yaml") and error["line"] == 2
    assert "nested more than 64 levels deep" in error["message"]
    refused = client.put("/api/v1/rules/files/yard.yaml", json={"text": looped}, headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_config")
    assert (rules / "yard.yaml").read_text() == RULES


def test_a_valid_save_is_written_and_reloaded(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    client, headers, dashboard, rules = admin
    changed = RULES.replace("severity: medium", "severity: critical")
    saved = client.put("/api/v1/rules/files/yard.yaml", json={"text": changed}, headers=headers)
    assert saved.status_code == 200
    assert saved.json()["status"]["generation"] == 2
    assert (rules / "yard.yaml").read_text() == changed
    listed = client.get("/api/v1/rules").json()
    assert {r["id"]: r["severity"] for r in listed["rules"]}["no-entry-drop-zone"] == "critical"
    records, _ = dashboard.auth.audit_records(action="rules.save")
    assert (records[0].actor, records[0].subject) == ("admin", "yard.yaml")


def test_disable_a_rule_and_draw_zones_keeping_the_comments(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    client, headers, dashboard, rules = admin
    off = client.put(
        "/api/v1/rules/hardhat-required/enabled", json={"enabled": False}, headers=headers
    )
    assert off.status_code == 200
    assert {r["id"]: r["enabled"] for r in client.get("/api/v1/rules").json()["rules"]} == {
        "hardhat-required": False,
        "no-entry-drop-zone": True,
    }
    square = [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3], [0.1, 0.3]]
    drawn = client.put(
        "/api/v1/zones/gate_area", json={"camera": "yard", "points": square}, headers=headers
    )
    assert drawn.status_code == 200
    moved = client.put(
        "/api/v1/zones/drop_zone",
        json={"camera": "yard", "points": [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9]]},
        headers=headers,
    )
    assert moved.status_code == 200
    text = (rules / "yard.yaml").read_text()
    assert "# Zones of the yard camera." in text
    assert "description: Material drop zone" in text
    assert "polygon: [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9]]" in text
    zones = {z["id"]: z for z in client.get("/api/v1/zones", params={"camera": "yard"}).json()}
    assert zones["gate_area"]["points"] == square
    assert zones["drop_zone"]["rules"] == ["no-entry-drop-zone"]
    flat = client.put(
        "/api/v1/zones/flat",
        json={"camera": "yard", "points": [[0, 0], [0.5, 0.5], [1, 1]]},
        headers=headers,
    )
    assert flat.status_code == 422 and "no area" in flat.json()["message"]
    # it was 422 "unknown zone 'drop_zone'" at a line of the unsaved text: the rule is named
    in_use = client.delete("/api/v1/zones/drop_zone", headers=headers)
    assert (in_use.status_code, in_use.json()["error"]) == (409, "conflict")
    line = next(
        number
        for number, text in enumerate((rules / "yard.yaml").read_text().splitlines(), 1)
        if "id: no-entry-drop-zone" in text
    )
    assert in_use.json()["message"] == (
        f"zone drop_zone is used by rule no-entry-drop-zone (yard.yaml:{line}); change or "
        "remove that rule first"
    )
    assert "drop_zone:" in (rules / "yard.yaml").read_text()
    unknown_camera = client.put(
        "/api/v1/zones/x", json={"camera": "roof", "points": square}, headers=headers
    )
    assert (
        unknown_camera.status_code == 422
        and "unknown camera 'roof'" in unknown_camera.json()["message"]
    )
    assert dashboard.rules.rule_generation().rules.zone("gate_area").polygon[0] == (0.1, 0.1)


def test_drawing_an_id_another_camera_uses_is_refused_not_moving_its_zone(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    """Zone ids are site-wide: drawing ``drop_zone`` on the dock camera rewrote the yard's
    ``drop_zone`` onto the dock (200), and ``no-entry-drop-zone`` silently stopped watching the
    yard. Both the save and the preview ("Test this change") refuse it, naming the owner."""
    client, headers, dashboard, rules = admin
    body = {"camera": "dock", "points": [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]}
    for method, path in (
        ("PUT", "/api/v1/zones/drop_zone"),
        ("POST", "/api/v1/zones/drop_zone/preview"),
    ):
        refused = client.request(method, path, json=body, headers=headers)
        assert (refused.status_code, refused.json()["error"]) == (409, "conflict"), refused.text
        assert refused.json()["message"] == (
            "zone drop_zone belongs to camera yard; choose another id"
        )
    assert (rules / "yard.yaml").read_text() == RULES
    assert dashboard.rules.rule_generation().rules.zone("drop_zone").camera_id == "yard"
    assert not dashboard.auth.audit_records(action="zones.save")[0]
    line = {"camera": "yard", "points": [[0.1, 0.9], [0.9, 0.9]]}
    assert client.put("/api/v1/lines/gate", json=line, headers=headers).status_code == 200
    moved = client.put("/api/v1/lines/gate", json={**line, "camera": "dock"}, headers=headers)
    assert moved.status_code == 409
    assert moved.json()["message"] == "line gate belongs to camera yard; choose another id"


def test_a_line_may_have_a_zone_s_id_and_lists_only_its_own_rules(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    """Zone ids and line ids are separate namespaces: a line on another camera may be called
    ``drop_zone``. GET /zones keyed the rules using each by id alone, so that line was listed as
    used by the zone's rule ``no-entry-drop-zone`` (and could not be deleted, the page implied)."""
    client, headers, _, _ = admin
    line = {"camera": "dock", "points": [[0.1, 0.9], [0.9, 0.9]]}
    assert client.put("/api/v1/lines/drop_zone", json=line, headers=headers).status_code == 200
    listed = {(g["kind"], g["id"]): g for g in client.get("/api/v1/zones").json()}
    assert listed[("zone", "drop_zone")]["rules"] == ["no-entry-drop-zone"]
    assert listed[("line", "drop_zone")]["camera"] == "dock"
    assert listed[("line", "drop_zone")]["rules"] == []


def test_a_zone_on_a_camera_the_site_no_longer_has_is_moved_when_redrawn(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    """A zone whose camera was removed from the site makes the rule set invalid, and a rule
    still uses it (so it cannot be deleted): redrawing it on a camera the site has is how it is
    fixed. It was refused with 409 "belongs to camera gone" like a zone of a real camera."""
    client, headers, dashboard, rules = admin
    (rules / "old.yaml").write_text(
        "version: 1\nzones:\n  old_zone:\n    camera: gone\n"
        "    polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]\n"
        "rules:\n  - id: gone-intrusion\n    kind: zone_intrusion\n    zone: old_zone\n"
        "    objects: [person]\n    severity: medium\n"
    )
    square = [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]
    body = {"camera": "yard", "points": square}
    preview = client.post("/api/v1/zones/old_zone/preview", json=body, headers=headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["file"] == "old.yaml" and "camera: yard" in preview.json()["text"]
    moved = client.put("/api/v1/zones/old_zone", json=body, headers=headers)
    assert moved.status_code == 200, moved.text
    assert "camera: yard" in (rules / "old.yaml").read_text()
    in_force = dashboard.rules.rule_generation().rules
    assert in_force.zone("old_zone").camera_id == "yard"
    assert in_force.rule("gone-intrusion").id == "gone-intrusion"


def test_a_zone_whose_camera_is_a_variable_is_redrawn_on_it_and_the_camera_id_shown(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``camera: ${YARD_CAM}`` is the yard camera as the set loads it: redrawing the zone there
    was refused (409 "belongs to camera ${YARD_CAM}", the text as written compared to the
    camera), and the expanded ``yard`` was registered as a secret, so every answer naming the
    camera (its zones, the camera list) said ``***``. The reference stays as written; a real
    secret of the same file is still masked."""
    client, headers, dashboard, rules = admin
    monkeypatch.setenv("YARD_CAM", "yard")
    monkeypatch.setenv("DROP_NOTE", "n0t-for-viewers")
    text = RULES.replace("camera: yard", "camera: ${YARD_CAM}").replace(
        "description: Material drop zone", "description: ${DROP_NOTE}"
    )
    (rules / "yard.yaml").write_text(text)
    assert client.post("/api/v1/rules/reload", headers=headers).status_code == 200
    zones = client.get("/api/v1/zones").json()
    assert [(z["id"], z["camera"]) for z in zones] == [("drop_zone", "yard")]
    assert "yard" in [c["id"] for c in client.get("/api/v1/cameras").json()]
    assert redact_secrets("note: n0t-for-viewers") == "note: ***"
    body = {"camera": "yard", "points": [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9]]}
    redrawn = client.put("/api/v1/zones/drop_zone", json=body, headers=headers)
    assert redrawn.status_code == 200, redrawn.text
    assert "camera: ${YARD_CAM}" in (rules / "yard.yaml").read_text()
    drop = dashboard.rules.rule_generation().rules.zone("drop_zone")
    assert (drop.camera_id, drop.polygon[0]) == ("yard", (0.5, 0.5))
    moved = client.put("/api/v1/zones/drop_zone", json={**body, "camera": "dock"}, headers=headers)
    assert moved.status_code == 409
    assert moved.json()["message"] == "zone drop_zone belongs to camera yard; choose another id"


def test_deleting_a_commented_zone_or_line_leaves_valid_yaml(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    """The comment above a section's first entry went on being written after the entry was
    gone, followed by ``{}`` at column 0: a YAML syntax error, so such a zone could never be
    deleted (found trying the API as an admin)."""
    client, headers, _, rules = admin
    spare = (
        "version: 1\nzones:\n  # spare area by the gate\n"
        "  spare: {camera: yard, polygon: [[0, 0], [0.2, 0], [0.2, 0.2]]}\n"
        "  # second spare\n  other: {camera: yard, polygon: [[0.5, 0.5], [0.7, 0.5], [0.7, 0.7]]}\n"
        "lines:\n  # the gate\n  gate: {camera: yard, points: [[0.1, 0.9], [0.9, 0.9]]}\n"
    )
    put = client.put("/api/v1/rules/files/extra.yaml", json={"text": spare}, headers=headers)
    assert put.status_code == 200, put.json()
    for path in ("/api/v1/zones/spare", "/api/v1/zones/other", "/api/v1/lines/gate"):
        gone = client.delete(path, headers=headers)
        assert gone.status_code == 200, (path, gone.json())
    text = (rules / "extra.yaml").read_text()
    assert "spare" not in text and "gate" not in text and "{}" not in text
    assert client.get("/api/v1/zones", params={"camera": "yard"}).status_code == 200


def test_live_socket_sends_geometry_state_metadata_and_frames(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    client, _, dashboard, _ = admin
    image = np.zeros((100, 200, 3), np.uint8)
    person = Track(3, "person", (20.0, 10.0, 60.0, 90.0), 0.9, {"hardhat": PPEState.ABSENT})
    # The detector also saw the tracked person (drawn once, as the track) and someone at the
    # right edge the tracker has not confirmed yet (drawn as an unconfirmed box).
    seen = Detections(
        np.array([[21, 10, 60, 89], [150, 20, 190, 95]], np.float32),
        np.array([0.9, 0.6], np.float32),
        np.array(["person", "person"], np.str_),
    )
    tracked = TrackedFrame("yard", 7, 1.4, 1_750_000_000.0, 200, 100, (person,), seen)
    with client.websocket_connect("/api/v1/ws/cameras/yard?video=jpeg") as ws:
        geometry = ws.receive_json()
        assert geometry["type"] == "geometry"
        assert [z["id"] for z in geometry["zones"]] == ["drop_zone"]
        state = ws.receive_json()
        # The test app's runtime knows no camera: the tile must not claim it streams.
        assert (state["type"], state["state"]) == ("state", "unknown")
        dashboard.live.publish_frame(tracked, image)
        meta = next_message(ws, "frame", skipped=("state",))
        assert meta["frame_seq"] == 7
        assert meta["tracks"] == [
            {
                "id": 3,
                "label": "person",
                "box": [0.1, 0.1, 0.3, 0.9],
                "confidence": 0.9,
                "ppe": {"hardhat": "absent"},
                "violating": False,
                "ppe_only": False,
            }
        ]
        assert meta["detections"] == [
            {
                "label": "person",
                "box": [0.75, 0.2, 0.95, 0.95],
                "confidence": 0.6,
                "unconfirmed": True,
            }
        ]
        jpeg = ws.receive_bytes()
        assert jpeg[:2] == b"\xff\xd8"
    frame = client.get("/api/v1/cameras/yard/frame.jpg")
    assert frame.status_code == 200 and frame.headers["x-frame-seq"] == "1"
    cameras = {c["id"]: c for c in client.get("/api/v1/cameras").json()}
    assert cameras["yard"]["live"] is True and cameras["dock"]["live"] is False


def test_a_read_only_rules_folder_is_a_clear_refusal_not_a_server_error(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ConfigMap mount or a systemd unit without ReadWritePaths= refuses writes with EROFS.

    (Tests may run as root, which no permission bit stops: the OS refusal is simulated where
    the write begins, the temporary file beside the rule file.)"""
    client, headers, _, rules = admin
    real_mkstemp = tempfile.mkstemp

    def read_only(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if Path(kwargs.get("dir") or ".").resolve() == rules.resolve():
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    changed = RULES.replace("severity: medium", "severity: critical")
    for refused in (
        client.put("/api/v1/rules/files/yard.yaml", json={"text": changed}, headers=headers),
        client.put(
            "/api/v1/rules/hardhat-required/enabled", json={"enabled": False}, headers=headers
        ),
    ):
        assert refused.status_code == 503, refused.text
        message = refused.json()["message"]
        assert "yard.yaml" in message and "is read-only" in message
    assert (rules / "yard.yaml").read_text() == RULES
    assert client.get("/api/v1/rules/status").json()["generation"] == 1


def test_a_save_the_audit_log_refuses_is_not_put_in_force(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record comes first: a change the audit log cannot record never becomes live."""
    client, headers, dashboard, rules = admin

    def audit_down(*args: Any, **kwargs: Any) -> None:
        raise StorageError("cannot write the audit log: database is locked")

    monkeypatch.setattr(dashboard.auth, "audit", audit_down)
    changed = RULES.replace("severity: medium", "severity: critical")
    for refused in (
        client.put("/api/v1/rules/files/yard.yaml", json={"text": changed}, headers=headers),
        client.put(
            "/api/v1/rules/hardhat-required/enabled", json={"enabled": False}, headers=headers
        ),
        client.put(
            "/api/v1/zones/gate_area",
            json={"camera": "yard", "points": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]},
            headers=headers,
        ),
    ):
        assert refused.status_code == 503, refused.text
        assert (rules / "yard.yaml").read_text() == RULES
    assert [p.name for p in rules.iterdir()] == ["yard.yaml"], "no temporary file is left"
    assert dashboard.rules.reload_rules().generation == 1, "nothing changed on disk"
    monkeypatch.undo()
    saved = client.put("/api/v1/rules/files/yard.yaml", json={"text": changed}, headers=headers)
    assert saved.json()["status"]["generation"] == 2
    (record,), _ = dashboard.auth.audit_records(action="rules.save")
    assert record.detail == {"file_sha256": hashlib.sha256(changed.encode()).hexdigest()}


def test_a_save_recorded_but_not_made_is_recorded_as_failed(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record comes first; when the rename after it fails, a second record says so, or the
    audit log would hold a change that never happened (confirmed drafts already did this)."""
    client, headers, dashboard, rules = admin

    def refused(temp: Path, target: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("safewatch.config.rules_lock.commit", refused)
    changed = RULES.replace("severity: medium", "severity: critical")
    answer = client.put("/api/v1/rules/files/yard.yaml", json={"text": changed}, headers=headers)
    assert answer.status_code == 503, answer.text
    assert (rules / "yard.yaml").read_text() == RULES
    (made,), _ = dashboard.auth.audit_records(action="rules.save")
    (failed,), _ = dashboard.auth.audit_records(action="rules.save.failed")
    assert made.detail == {"file_sha256": hashlib.sha256(changed.encode()).hexdigest()}
    assert "Read-only file system" in failed.detail["error"]


def test_a_save_from_a_stale_editor_is_refused_not_silently_undoing_a_change(
    admin: tuple[TestClient, dict[str, str], Dashboard, Path],
) -> None:
    """Admin A opens the file, B disables a rule, A saves the text A opened: with If-Match the
    save is refused (409) and B's change stays; with the current version it goes through."""
    client, headers, _, rules = admin
    opened = client.get("/api/v1/rules/files/yard.yaml", headers=headers)
    version = opened.headers["ETag"]
    assert opened.json()["etag"] == version
    off = client.put(
        "/api/v1/rules/hardhat-required/enabled", json={"enabled": False}, headers=headers
    )
    assert off.status_code == 200
    disabled = (rules / "yard.yaml").read_text()
    assert "enabled: false" in disabled
    stale = client.put(
        "/api/v1/rules/files/yard.yaml",
        json={"text": opened.json()["text"]},
        headers={**headers, "If-Match": version},
    )
    assert (stale.status_code, stale.json()["error"]) == (409, "conflict")
    assert "yard.yaml was changed by someone else" in stale.json()["message"]
    assert (rules / "yard.yaml").read_text() == disabled
    gone = client.delete("/api/v1/rules/files/yard.yaml", headers={**headers, "If-Match": version})
    assert gone.status_code == 409 and (rules / "yard.yaml").is_file()
    current = client.get("/api/v1/rules/files/yard.yaml", headers=headers).headers["ETag"]
    edited = disabled.replace("severity: medium", "severity: critical")
    saved = client.put(
        "/api/v1/rules/files/yard.yaml",
        json={"text": edited},
        headers={**headers, "If-Match": current},
    )
    assert saved.status_code == 200, saved.text
    assert (rules / "yard.yaml").read_text() == edited
    assert saved.headers["ETag"] == saved.json()["etag"] != current
    again = client.get("/api/v1/rules/files/yard.yaml", headers=headers)
    assert again.headers["ETag"] == saved.headers["ETag"]
    # Windows line endings: the version a save returns is the one the next save is checked
    # against (read_text turned \r\n into \n, so that save was refused)
    crlf = client.put(
        "/api/v1/rules/files/yard.yaml",
        json={"text": edited.replace("\n", "\r\n")},
        headers={**headers, "If-Match": saved.headers["ETag"]},
    )
    assert crlf.status_code == 200, crlf.text
    next_save = client.put(
        "/api/v1/rules/files/yard.yaml",
        json={"text": edited},
        headers={**headers, "If-Match": crlf.headers["ETag"]},
    )
    assert next_save.status_code == 200, next_save.text
