"""Where PPE could not be checked, in headless Chromium: the Live tile and the Analytics table.

The app is the dashboard ``safewatch serve`` mounts, served in this process, with operations
services that report the camera ``yard`` checking hard hats for 10 % of 300 person-seconds (a
warning: below ``watchdog.ppe_min_share``) and vests for 90 %.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from api_support import PASSWORD, FakeOps, add_users, served_app, write_site
from e2e_support import chromium, log_in, need_chromium, new_tab
from safewatch.api.dashboard import Dashboard
from safewatch.api.health import ComponentHealth, Readiness
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage
from safewatch.runtime.health import PPECheck, camera_readiness, overall
from safewatch.runtime.metrics import CameraStatus
from safewatch.runtime.ppe_coverage import ItemCoverage

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]


class _Ops(FakeOps):
    def readiness(self) -> Readiness:
        now = time.time()
        status = CameraStatus(
            camera_id="yard", name="Yard", worker_state="running", source_state="streaming",
            message="", pid=None, incarnation=1, restarts=0, fps_target=5.0, decoded=10,
            sampled=10, reconnects=0, bad_packets=0, source_dropped=0, mailbox_dropped=0,
            torn_dropped=0, stale_dropped=0, inferred=10, motion_skipped=0, analysed=10,
            decode_fps=5.0, analysed_fps=5.0, last_decoded_at=now, last_inferred_at=now,
            last_evaluated_at=now, memory_bytes=None,
        )  # fmt: skip
        status = replace(
            status,
            ppe=(
                ItemCoverage("hardhat", 600.0, 30.0, 300.0, 60.0, 900.0),
                ItemCoverage("vest", 600.0, 270.0, 300.0, 810.0, 900.0),
            ),
        )
        cameras = {"yard": camera_readiness(status, now, ppe_check=PPECheck(0.5, 120.0))}
        ok = ComponentHealth(ok=True, message="ok")
        return Readiness(
            status=overall(cameras, (ok,)),
            database=ok,
            inference=ok,
            rules=ok,
            site=ok,
            cameras=cameras,
        )


def test_live_tile_and_analytics_show_where_ppe_could_not_be_checked(tmp_path: Path) -> None:
    need_chromium()
    loaded = load_site(write_site(tmp_path, source="rtsp://127.0.0.1:9/yard"))
    storage = open_site_storage(loaded)
    dashboard = Dashboard.create(lambda: loaded, tmp_path / "rules", storage)
    add_users(dashboard)
    try:
        with served_app(dashboard, _Ops()) as base, chromium() as browser:
            page = new_tab(browser, 30_000)
            log_in(page, f"{base}/analytics", "viewer", PASSWORD, "**/analytics")
            row = page.locator("#ppe-coverage tr[data-camera=yard][data-item=hardhat]")
            row.wait_for()
            cells = row.locator("td").all_inner_texts()
            assert cells[1:] == ["hardhat", "10 %", "300", "7 %", "900", "PPE not verifiable"]
            vest = page.locator("#ppe-coverage tr[data-item=vest] td").all_inner_texts()
            assert vest[2] == "90 %" and vest[-1] == ""
            page.goto(f"{base}/live")
            share = page.locator("article.tile[data-camera=yard] .ppe-share")
            share.wait_for(state="visible")
            assert share.inner_text() == "PPE checked hardhat 10 %, vest 90 %"
            assert share.get_attribute("data-warn") == "1"
            assert "PPE not verifiable: hardhat" in (share.get_attribute("title") or "")
    finally:
        storage.close()
