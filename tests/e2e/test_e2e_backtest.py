"""The Rules page's "Test this change" in headless Chromium: an operator edits the drop zone
without saving, runs the test on archived footage the site allows, and sees the three intrusions
the change would remove, each with its still; the saved file is untouched.

The app is the dashboard ``safewatch serve`` mounts, served by uvicorn in this process; the
backtest runs the real models on the real clip (see test_cli_backtest.py for the expectations).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backtest_support import CLIP, DROP_ZONE, EXAMPLE_RULES, FRONT_ONLY, write_site

from api_support import PASSWORD, add_users, served_app
from assets import asset
from e2e_support import chromium, log_in, need_chromium, new_tab
from safewatch.api.dashboard import Dashboard
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need_chromium()
    clip = asset(CLIP)
    folder = tmp_path_factory.mktemp("backtest-site")
    shutil.copytree(EXAMPLE_RULES, folder / "rules")
    loaded = load_site(write_site(folder, f"storage: {{archive_folders: [{clip.parent}]}}\n"))
    storage = open_site_storage(loaded)
    dashboard = Dashboard.create(lambda: loaded, folder / "rules", storage)
    add_users(dashboard)
    try:
        with served_app(dashboard) as base, chromium() as browser:
            yield {"base": base, "browser": browser, "folder": folder}
    finally:
        storage.close()


def _operator_page(site: dict[str, Any], path: str) -> Any:
    """A page of the dashboard, signed in as an operator."""
    page = new_tab(site["browser"], 20_000)
    log_in(page, f"{site['base']}/{path}", "operator", PASSWORD, f"**/{path}")
    return page


def _edited_rules_page(site: dict[str, Any]) -> Any:
    """The Rules page with the drop zone moved to the front of the yard in the editor, unsaved."""
    page = _operator_page(site, "rules")
    page.wait_for_function("() => document.querySelector('#editor').value.includes('drop_zone')")
    page.evaluate(
        "([old, new_]) => { const e = document.querySelector('#editor');"
        " e.value = e.value.replace(old, new_); }",
        [DROP_ZONE, FRONT_ONLY],
    )
    return page


def test_an_unsaved_zone_edit_shows_the_incidents_it_would_remove(
    site: dict[str, Any], tmp_path: Path
) -> None:
    page = _edited_rules_page(site)
    page.click("#test-change")
    page.fill("#bt-path", str(asset(CLIP)))
    page.click("#bt-run")
    rows = page.locator("#bt-result tr.bt-only_baseline")
    rows.first.wait_for(timeout=900_000)  # real inference on a busy 2-core machine
    assert rows.count() == 3
    assert page.locator("#bt-result tr[class^=bt-]").count() == 3
    summary = page.locator("#bt-result table").first.inner_text()
    assert "no-entry-drop-zone" in summary
    page.wait_for_function(
        "() => [...document.querySelectorAll('#bt-result img.bt-still')]"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("#bt-result img.bt-still").count() == 3
    page.screenshot(path=str(tmp_path / "rules-test-this-change.png"), full_page=True)
    assert DROP_ZONE in (site["folder"] / "rules" / "yard.yaml").read_text()  # nothing saved


def test_a_zone_dragged_but_not_saved_is_tested_from_the_zones_page(
    site: dict[str, Any],
) -> None:
    page = _operator_page(site, "zones")
    page.locator("#geom-list li[data-id=drop_zone]").click()
    page.wait_for_function("() => document.querySelector('#canvas').dataset.points === '4'")
    box = page.locator("#canvas").bounding_box()
    assert box is not None

    def drag(start: tuple[float, float], end: tuple[float, float]) -> None:
        page.mouse.move(box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"])
        page.mouse.up()

    drag((0.40, 0.42), (0.40, 0.62))  # the back edge moved to the front part of the yard
    drag((0.74, 0.38), (0.74, 0.62))
    page.click("#test-change")
    page.fill("#bt-path", str(asset(CLIP)))
    page.click("#bt-run")
    rows = page.locator("#bt-result tr.bt-only_baseline")
    rows.first.wait_for(timeout=900_000)  # the detections are cached by the test above
    assert rows.count() == 3
    assert DROP_ZONE in (site["folder"] / "rules" / "yard.yaml").read_text()  # nothing saved


def test_an_uploaded_video_is_tested_too(site: dict[str, Any]) -> None:
    """With the first frame's time given in the form (the clip has no creation time)."""
    page = _edited_rules_page(site)
    page.click("#test-change")
    page.set_input_files("#bt-file", str(asset(CLIP)))
    page.fill("#bt-start", "2017-02-22T13:07:16")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/backtests/upload")) as sent:
        page.click("#bt-run")
    job = sent.value.json()
    assert job["video_start"] is not None  # the site's time zone applied by the server
    rows = page.locator("#bt-result tr.bt-only_baseline")
    rows.first.wait_for(timeout=900_000)
    assert rows.count() == 3
