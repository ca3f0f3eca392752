"""Protection never disappears silently (issue 13).

* A hard-hat rule on a camera whose models cannot see hard hats is a ``file:line`` error for
  ``check-config``, ``rules validate`` and ``rules explain`` (before: accepted and explained as
  working).
* A running ``safewatch serve`` whose rule files lose every rule (before: a set of 0 rules applied
  with nothing logged and ``/readyz`` ready) logs a WARNING naming the rule and the camera in its
  console, says so in ``/readyz`` (degraded, the camera not ready), ``/metrics`` and the Rules
  page's API; the blind hard-hat rule is refused by the reload with its ``file:line``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from rtsp_server import free_port
from serve_support import auth, metric, readyz, serving, stop, wait_for, write_site
from test_cli_audit import safewatch

from assets import asset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


BLIND = (
    "version: 1\n"
    "rules:\n"
    "  - id: hardhat-required\n"
    "    kind: ppe\n"
    "    cameras: [yard]\n"
    "    require: [hardhat]\n"
)


def test_a_rule_no_model_of_its_camera_can_see_is_an_error_everywhere(tmp_path: Path) -> None:
    site = write_site(tmp_path, {"yard": str(asset("video/construction_cctv_640x352_24s.mp4"))})
    rules = tmp_path / "rules" / "ppe.yaml"
    rules.write_text(BLIND)
    for command in (
        ("check-config", site, "--rules", rules),
        ("rules", "validate", rules, "--config", site),
        ("rules", "explain", rules, "--config", site),
    ):
        result = safewatch(*command)
        assert result.returncode == 2, (command, result.stdout)
        assert f"{rules}:6: rules[0].require[0]: rule 'hardhat-required' needs 'hardhat' or " \
            "'no_hardhat' but camera 'yard' has no model producing it (models coco produce: " \
            "person)" in result.stderr, (command, result.stderr)  # fmt: skip
        assert "opens an incident" not in result.stdout


def looped_site(folder: Path, port: int) -> Path:
    """The serve tests' site with the construction clip looped, so the camera stays ready for
    as long as a test takes."""
    site = write_site(
        folder, {"yard": str(asset("video/construction_cctv_640x352_24s.mp4"))}, port=port
    )
    config = yaml.safe_load(site.read_text())
    config["cameras"]["yard"]["loop"] = True
    site.write_text(yaml.safe_dump(config, sort_keys=False))
    return site


def test_serve_is_loud_when_the_rule_files_lose_every_rule(tmp_path: Path) -> None:
    port = free_port()
    site = looped_site(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    with serving(site) as server:
        wait_for(lambda: readyz(base)["status"] == "ready", 60, "the server ready")

        blind = tmp_path / "rules" / "ppe.yaml"
        blind.write_text(BLIND)
        message = wait_for(
            lambda: "needs 'hardhat'" in (m := readyz(base)["rules"]["message"]) and m,
            30,
            "the blind rule refused",
        )
        assert f"kept generation 1: {blind}:6: rules[0].require[0]" in message
        blind.unlink()

        (tmp_path / "rules" / "view.yaml").write_text("version: 1\n")  # every rule gone
        body = wait_for(
            lambda: (b := readyz(base))["cameras"]["yard"]["problems"] and b,
            30,
            "the camera flagged",
        )
        assert body["status"] == "degraded"
        assert body["cameras"]["yard"]["ready"] is False
        assert body["cameras"]["yard"]["problems"] == [
            "no enabled rule runs on this camera: nothing is watched there"
        ]
        assert (
            "dropped 1 rule(s) that were in force: anyone-in-view-yard"
            in (body["rules"]["message"])
        )
        assert metric(base, "safewatch_camera_enabled_rules", camera="yard") == 0
        assert metric(base, "safewatch_rules_dropped_total") == 1
        # The API process holds the rule state the server last pushed (each round of its
        # sender): it catches up with /readyz, which asks the server, within a moment.
        status = wait_for(
            lambda: (
                (s := httpx.get(f"{base}/api/v1/rules/status", headers=auth(), timeout=5).json())[
                    "warnings"
                ]
                and s
            ),
            30,
            "the rule warnings in the API process",
        )
        assert status["warnings"] == [
            "generation 2 dropped 1 rule(s) that were in force: anyone-in-view-yard"
            " (until they come back or an admin acknowledges their removal)",
            "no enabled rule runs on camera(s) yard: nothing is watched there",
        ]
        output = stop(server)
    assert (
        "WARNING safewatch.rules.watcher: rules: generation 2 dropped 1 rule(s) that were in "
        "force: anyone-in-view-yard" in output
    )
    assert (
        "WARNING safewatch.rules.watcher: rules: no enabled rule runs on camera(s) yard" in output
    )
    assert "INFO safewatch.rules.watcher: rules: generation 2: 0 rule(s)" in output


SECOND = (
    "version: 1\n"
    "rules:\n"
    "  - id: crowd-in-yard\n"
    "    kind: zone_intrusion\n"
    "    zone: everywhere_yard\n"
    "    objects: [person]\n"
    "    min_duration: 30s\n"
)


def test_serve_degrades_for_lost_rules_until_an_admin_acknowledges(tmp_path: Path) -> None:
    """Losing one of two rules leaves the camera watched, yet protection went: /readyz is
    degraded saying which rule, until an admin acknowledges the removal (audited)."""
    from safewatch.api.auth import AuthStore
    from safewatch.config.loader import load_site
    from safewatch.incidents.site_storage import open_site_storage

    port = free_port()
    site = looped_site(tmp_path, port)
    second = tmp_path / "rules" / "second.yaml"
    second.write_text(SECOND)
    storage = open_site_storage(load_site(site))
    try:
        store = AuthStore(storage.engine)
        store.add_user("boss", "boss-password-123", "admin")
        admin = {"Authorization": f"Bearer {store.create_token('boss', 'test').token}"}
    finally:
        storage.close()
    base = f"http://127.0.0.1:{port}"
    with serving(site) as server:
        wait_for(lambda: readyz(base)["status"] == "ready", 60, "the server ready")
        second.unlink()
        body = wait_for(
            lambda: (b := readyz(base))["status"] == "degraded" and b, 30, "readyz degraded"
        )
        assert body["cameras"]["yard"]["ready"] is True  # the camera keeps a rule
        assert "dropped 1 rule(s) that were in force: crowd-in-yard" in body["rules"]["message"]
        assert metric(base, "safewatch_rules_dropped_unacknowledged") == 1
        url = f"{base}/api/v1/rules/dropped/acknowledge"
        # the API process learns the drop from the server's push: retry until it has it
        done = wait_for(
            lambda: (
                (
                    r := httpx.post(
                        url, json={"rules": ["crowd-in-yard"]}, headers=admin, timeout=30
                    )
                ).status_code
                == 200
                and r
            ),
            30,
            "the acknowledgement taken",
        )
        assert done.json()["dropped"] == []
        wait_for(lambda: readyz(base)["status"] == "ready", 30, "ready again")
        assert metric(base, "safewatch_rules_dropped_unacknowledged") == 0
        log = httpx.get(
            f"{base}/api/v1/audit-log",
            params={"action": "rules.acknowledge_dropped"},
            headers=admin,
            timeout=10,
        ).json()
        assert [(r["actor"], r["subject"]) for r in log["items"]] == [("boss", "crowd-in-yard")]
        output = stop(server)
    assert "rules: removal of crowd-in-yard acknowledged" in output
