"""The Rules page's drafting panel in headless Chromium: a request typed in the chat panel comes
back from the site's model (a local replay server) as a reviewed draft and is saved with one click;
without a model the structured form does the same; a viewer gets no panel.

The app is the dashboard ``safewatch serve`` mounts, served by uvicorn on a free port in this
process (no cameras run: the panel needs none).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from api_support import PASSWORD, add_users, served_app, write_site
from e2e_support import chromium, log_in, need_chromium, new_tab
from llm_replay import Recorded, chat_completion, replay
from safewatch.api.dashboard import Dashboard
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DWELL = """\
Assumed "too long" means 30 seconds.
```yaml
version: 1
rules:
  - id: drop-zone-dwell
    kind: dwell
    description: Nobody lingers in the drop zone.
    zone: drop_zone
    max_time: 30s
```
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need_chromium()
    folder = tmp_path_factory.mktemp("drafts-site")
    with replay({"m": [Recorded(200, chat_completion(DWELL, model="replayed"))]}) as model:
        loaded = load_site(
            write_site(folder, extra={"llm": {"base_url": model.base_url, "model": "m"}})
        )
        storage = open_site_storage(loaded)
        dashboard = Dashboard.create(lambda: loaded, folder / "rules", storage)
        add_users(dashboard)
        try:
            with served_app(dashboard) as base, chromium() as browser:
                yield {"base": base, "browser": browser, "dashboard": dashboard, "folder": folder}
        finally:
            storage.close()


def _rules_page(site: dict[str, Any], user: str) -> Any:
    # 30 s like the other e2e pages: with five CI runs side by side (load 8-14) the admin's
    # log-in, rules page and drafting setup took over 15 s once.
    page = new_tab(site["browser"], 30_000)
    log_in(page, f"{site['base']}/rules", user, PASSWORD, "**/rules")
    return page


def test_a_viewer_gets_no_panel(site: dict[str, Any]) -> None:
    page = _rules_page(site, "viewer")
    page.wait_for_function("() => document.querySelector('#rule-table tbody tr')")
    page.wait_for_timeout(300)
    assert page.locator("#rules-side-panel").is_hidden()


def test_the_panel_comes_when_its_script_arrives_after_the_rules(site: dict[str, Any]) -> None:
    """The drafting script held back 5 s: the panel still appears. With rules.js before it in the
    page (the old order), rules.js ran, asked the server and fired its ready event within those
    5 s, before the drafting script listened, and the panel never came; now rules.js waits for
    the drafting script, so the page's load is only held back."""
    page = new_tab(site["browser"], 30_000)

    def late(route: Any) -> None:
        time.sleep(5)
        route.continue_()

    page.route("**/static/js/rule_drafts.js", late)
    log_in(page, f"{site['base']}/rules", "operator", PASSWORD, "**/rules")
    page.locator("#rules-side-panel textarea[name=request]").wait_for()


def test_chat_panel_drafts_shows_and_saves(site: dict[str, Any]) -> None:
    page = _rules_page(site, "operator")
    panel = page.locator("#rules-side-panel")
    panel.locator("textarea[name=request]").wait_for()
    assert "m" in panel.locator("h3").inner_text()
    panel.locator("textarea[name=request]").fill("nobody lingers in the drop zone")
    panel.locator("button[type=submit]").click()
    draft = panel.locator(".draft.valid")
    draft.wait_for()
    assert "New rule: drop-zone-dwell (medium): on camera yard" in draft.inner_text()
    assert "id: drop-zone-dwell" in draft.locator("details pre").first.inner_text()
    assert not (site["folder"] / "rules" / "drafts.yaml").exists()
    assert page.locator("#file option[value='drafts.yaml']").count() == 0
    draft.locator("button.primary").click()
    page.wait_for_function(
        "() => document.querySelector('.draft.valid button.primary')?.textContent"
        " === 'Saved to drafts.yaml'"
    )
    written = yaml.safe_load((site["folder"] / "rules" / "drafts.yaml").read_text())
    assert [r["id"] for r in written["rules"]] == ["drop-zone-dwell"]
    # "Rules in force" lists it now (it was read again only on the editor's own saves)
    page.wait_for_function(
        "() => document.getElementById('rule-table').textContent.includes('drop-zone-dwell')"
    )
    # and the editor's file dropdown lists the new file (it did only after a page reload), the
    # file shown staying selected
    page.locator("#file option[value='drafts.yaml']").wait_for(state="attached")
    assert page.input_value("#file") == "yard.yaml"
    records, _ = site["dashboard"].auth.audit_records(action="rules.draft_saved")
    assert records[0].actor == "operator"


def test_without_a_model_the_form_builds_and_saves_a_rule(site: dict[str, Any]) -> None:
    dashboard: Dashboard = site["dashboard"]
    plain = load_site(write_site(site["folder"]))  # the llm block removed from the site file
    dashboard.site = lambda: plain
    page = _rules_page(site, "admin")
    panel = page.locator("#rules-side-panel")
    panel.locator("text=No language model is configured").wait_for()
    panel.locator("[data-field=id] input").fill("drop-zone-crowding")
    panel.locator("[data-field=kind] select").select_option("occupancy")
    panel.locator("[data-field=zone] select").select_option("drop_zone")
    panel.locator("[data-field=max_count] input").fill("2")
    panel.locator("[data-field='schedule.days'] input[value=sat]").check()
    panel.locator("button[type=submit]").click()
    draft = panel.locator(".draft.valid")
    draft.wait_for()
    assert "more than 2 people in zone drop_zone" in draft.inner_text()
    draft.locator("button.primary").click()
    page.wait_for_function(
        "() => document.querySelector('.draft.valid button.primary')?.textContent"
        " === 'Saved to drafts.yaml'"
    )
    written = yaml.safe_load((site["folder"] / "rules" / "drafts.yaml").read_text())
    crowding = next(r for r in written["rules"] if r["id"] == "drop-zone-crowding")
    assert crowding["max_count"] == 2 and crowding["schedule"] == {"days": ["sat"]}
