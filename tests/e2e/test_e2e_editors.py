"""The dashboard's pages keep what they show and what they send in step, in headless Chromium:
the Zones page (ids are site-wide; "Test this change" tests the camera drawn on), the Rules page
(the file chosen is the file edited; a backtest still is asked for by its whole name), the
Analytics page when answers arrive out of order, and the pages of a removed camera (its incident
page, and Analytics and Reports offering it).

The app is the dashboard ``safewatch serve`` mounts, served by uvicorn on a free port in this
process; the site has the cameras ``yard`` and ``dock`` (disabled) and no camera runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from api_support import PASSWORD, RULES, add_users, incident, make_dashboard, served_app
from e2e_support import chromium, log_in, need_chromium, new_tab, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need_chromium()
    folder = tmp_path_factory.mktemp("editors-site")
    dashboard, storage = make_dashboard(folder, query_cache_seconds=0)
    add_users(dashboard)
    try:
        with served_app(dashboard) as base, chromium() as browser:
            yield {"base": base, "browser": browser, "dashboard": dashboard, "folder": folder}
    finally:
        storage.close()


def _page(site: dict[str, Any], path: str, user: str = "admin") -> Any:
    """``path`` of the dashboard in a tab of its own, signed in as ``user``."""
    page = new_tab(site["browser"], 30_000)
    log_in(page, f"{site['base']}/{path}", user, PASSWORD, f"**/{path}")
    return page


def _zones_page_on(site: dict[str, Any], camera: str) -> Any:
    """The Zones page on ``camera``, its canvas sized (no camera runs: a blank frame)."""
    page = _page(site, "zones")
    page.wait_for_function("() => document.getElementById('canvas').dataset.size")
    page.select_option("#camera", camera)
    page.wait_for_function(
        "() => document.getElementById('zone-status').textContent.includes('blank frame')"
    )
    return page


def _draw_triangle(page: Any) -> None:
    box = page.locator("#canvas").bounding_box()
    assert box is not None
    for fx, fy in ((0.1, 0.1), (0.3, 0.1), (0.3, 0.3)):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('canvas').dataset.points === '3'")


def test_an_id_another_camera_has_is_refused_before_it_is_sent(site: dict[str, Any]) -> None:
    """``drop_zone`` is the yard's: drawn on the dock under that id, the page says whose it is
    and sends nothing (saving it moved the yard's zone to the dock, under its rule)."""
    page = _zones_page_on(site, "dock")
    _draw_triangle(page)
    page.fill("#geom-id", "drop_zone")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.method) if "/api/v1/zones/" in r.url else None)
    page.click("#save")
    message = "zone drop_zone belongs to camera yard; choose another id"
    page.locator("#toasts .toast.error", has_text=message).wait_for()
    page.click("#test-change")
    page.fill("#bt-path", "/nowhere.mp4")
    page.click("#bt-run")
    page.locator("#bt-result .error", has_text=message).wait_for()
    assert sent == []
    assert (site["folder"] / "rules" / "yard.yaml").read_text() == RULES


def test_test_this_change_is_on_the_camera_drawn_on(site: dict[str, Any]) -> None:
    """The test's camera list came from /api/v1/cameras with its first camera selected, so a
    zone drawn on the dock was tested as yard footage unless the user noticed."""
    page = _zones_page_on(site, "dock")
    page.click("#test-change")
    page.wait_for_function("() => document.querySelectorAll('#bt-camera option').length === 2")
    assert page.input_value("#bt-camera") == "dock"
    page.select_option("#camera", "yard")
    assert page.input_value("#bt-camera") == "yard"


def test_keeping_an_unsaved_edit_keeps_its_file_chosen(site: dict[str, Any]) -> None:
    """Choosing another file, then "Cancel" at "Discard unsaved changes?": the editor kept the
    edit but the dropdown stayed on the other file, so validate and save sent the edit under
    that file's name (a save replaced it with the first file's text)."""
    (site["folder"] / "rules" / "spare.yaml").write_text("version: 1\n# spare\n")
    page = _page(site, "rules")
    page.wait_for_function("() => document.getElementById('editor').value.includes('# spare')")
    assert page.input_value("#file") == "spare.yaml"
    page.fill("#editor", "version: 1\n# spare, edited\n")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.select_option("#file", "yard.yaml")
    assert page.input_value("#file") == "spare.yaml"
    assert page.input_value("#editor") == "version: 1\n# spare, edited\n"
    with page.expect_request("**/validate") as validated:
        page.click("#validate")
    assert validated.value.url.endswith("/api/v1/rules/files/spare.yaml/validate")


def test_a_backtest_still_is_asked_for_by_its_whole_name(site: dict[str, Any]) -> None:
    """The still's URL was its file name pasted in: a "#" in it cut the name there (the rest was
    the URL's fragment). The backtest's answers are stood in for (no video is analysed): what is
    checked is the URL the page builds from the result document."""
    page = _page(site, "rules")
    page.wait_for_function("() => document.getElementById('editor').value")
    still = "evidence/yard/2026-01-02/step #1 100%?.jpg"
    side = {
        "rule": "no-entry-drop-zone", "start_offset_s": 1.0, "end_offset_s": 2.0,
        "duration_s": 1.0, "track_ids": [1], "still": still,
    }  # fmt: skip
    removed = {"change": "only_baseline", "rule": side["rule"], "baseline": side, "proposal": None}
    result = {
        "summary": {"proposal": []},
        "differences": {"proposal": [removed]},
        "reviewed": {},
    }
    _stand_in_backtest(site, page, result)
    asked: list[str] = []
    page.route(
        "**/api/v1/backtests/job-1/files/**",
        lambda route: asked.append(route.request.url) or route.fulfill(status=404),
    )
    page.click("#test-change")
    page.fill("#bt-path", "/archive/yard.mp4")
    page.click("#bt-run")
    page.locator("#bt-result img.bt-still").wait_for(state="attached")
    page.wait_for_function("() => document.querySelector('#bt-result img.bt-still').complete")
    name = "evidence/yard/2026-01-02/step%20%231%20100%25%3F.jpg"
    assert asked == [f"{site['base']}/api/v1/backtests/job-1/files/{name}"]


def _stand_in_backtest(site: dict[str, Any], page: Any, result: dict[str, Any]) -> None:
    """Answer the page's backtest requests with ``result`` (no video is analysed)."""
    answers = {
        "/api/v1/backtests": {"id": "job-1"},
        "/api/v1/audit-jobs/job-1": {"state": "done", "progress": 1, "frames_done": 1},
        "/api/v1/backtests/job-1/result": result,
    }
    page.route(
        "**/api/v1/{backtests,audit-jobs/job-1,backtests/job-1/result}",
        lambda route: route.fulfill(json=answers[route.request.url.split(site["base"])[1]]),
    )


def test_a_backtest_that_avoids_every_false_alarm_says_so_with_its_warnings(
    site: dict[str, Any],
) -> None:
    """The change raises no reviewed incident and avoids the one reviewed false alarm: precision
    and recall are both undefined, and the page used to show no "With this change" line at all,
    nor the footage's warnings (here: dated 1970)."""
    page = _page(site, "rules")
    page.wait_for_function("() => document.getElementById('editor').value")
    false = {"id": "live1", "rule": "no-entry-drop-zone", "status": "false_positive"}
    empty: list[dict[str, Any]] = []
    scores = {
        "baseline": {
            "precision": 0.0, "recall": None, "reviewed": 1, "real_raised": empty,
            "real_missed": empty, "false_raised": [false], "false_avoided": empty,
        },
        "proposal": {
            "precision": None, "recall": None, "reviewed": 1, "real_raised": empty,
            "real_missed": empty, "false_raised": empty, "false_avoided": [false],
        },
    }  # fmt: skip
    warning = "clip.mp4: no creation_time and no --start: its times count from 1970"
    _stand_in_backtest(
        site,
        page,
        {
            "summary": {"proposal": []},
            "differences": {"proposal": []},
            "reviewed": scores,
            "warnings": [warning],
        },
    )
    page.click("#test-change")
    page.fill("#bt-path", "/archive/yard.mp4")
    page.click("#bt-run")
    page.locator("#bt-result .bt-scores li").nth(1).wait_for()
    lines = page.locator("#bt-result .bt-scores li").all_inner_texts()
    assert lines[1].startswith("With this change: precision \u2013, recall \u2013")
    assert "against 1 reviewed incidents" in lines[1] and "1 false avoided" in lines[1]
    assert "1 false raised, 0 false avoided" in lines[0]
    assert page.locator("#bt-result .bt-warning").all_inner_texts() == [warning]


def test_analytics_draws_the_newest_filter_when_answers_come_out_of_order(
    site: dict[str, Any],
) -> None:
    """The page's first load (any camera) answers after the load for the yard that replaced it:
    its charts and total were drawn last, under the yard filter. The test holds the first
    load's answers until the second is drawn."""
    repository = site["dashboard"].storage.repository
    now = time.time()
    for n, camera in enumerate(("yard", "yard", "dock")):
        repository.upsert(incident(100 + n, camera=camera, started=now - 3600 * (n + 1)))
    page = new_tab(site["browser"], 30_000)
    held: list[Any] = []

    def hold(route: Any) -> None:
        if "camera=yard" in route.request.url:
            route.continue_()
        else:
            held.append(route)

    page.route(lambda url: "/api/v1/stats?" in url, hold)
    log_in(page, f"{site['base']}/analytics", "viewer", PASSWORD, "**/analytics")
    # Playwright runs the route's handler only while the test is inside one of its calls
    wait_until(lambda: page.wait_for_timeout(50) or len(held) == 8, 20, "the first load")
    page.select_option("#f-camera", "yard")
    page.wait_for_function("() => document.getElementById('total').dataset.answered === '1'")
    assert page.inner_text("#total") == "2 incidents in the period"
    for route in held:
        route.continue_()
    page.wait_for_function("() => document.getElementById('total').dataset.answered === '2'")
    assert page.inner_text("#total") == "2 incidents in the period"


def test_an_incident_of_a_removed_camera_shows_its_camera_in_the_picker(
    site: dict[str, Any],
) -> None:
    """The recording's camera picker lists the site's cameras; the incident's camera, removed
    from the site since, was not among them, so the picker showed the yard as selected while
    the page showed the removed camera's footage (none here)."""
    found = incident(200, camera="gone", started=time.time() - 600)
    site["dashboard"].storage.repository.upsert(found)
    page = _page(site, f"incidents/{found.id}")
    page.wait_for_function("() => document.getElementById('recording').dataset.camera === 'gone'")
    assert page.input_value("#recording-camera") == "gone"
    selected = page.locator("#recording-camera option:checked").inner_text()
    assert selected == "gone (incident, not in the site now)"
    page.select_option("#recording-camera", "yard")
    page.wait_for_function("() => document.getElementById('recording').dataset.camera === 'yard'")
    page.select_option("#recording-camera", "gone")
    page.wait_for_function("() => document.getElementById('recording').dataset.camera === 'gone'")
    assert page.input_value("#recording-camera") == "gone"


def test_analytics_and_reports_offer_a_removed_camera_with_incidents(
    site: dict[str, Any],
) -> None:
    """A camera removed from the site keeps its incidents; the Analytics and Reports pages
    listed only the site's cameras, so those incidents could not be analysed or reported. Both
    list it, marked, and Analytics counts its incidents when it is chosen."""
    repository = site["dashboard"].storage.repository
    now = time.time()
    for n in range(2):
        repository.upsert(incident(300 + n, camera="retired", started=now - 900 * (n + 1)))
    reports = _page(site, "reports")
    option = reports.locator("#f-camera option[value=retired]")
    assert option.inner_text() == "retired (not in the site now)"
    reports.select_option("#f-camera", "retired")
    assert reports.input_value("#f-camera") == "retired"
    analytics = _page(site, "analytics", "viewer")
    analytics.wait_for_function("() => document.getElementById('total').dataset.answered === '1'")
    option = analytics.locator("#f-camera option[value=retired]")
    assert option.inner_text() == "retired (not in the site now)"
    analytics.select_option("#f-camera", "retired")
    analytics.wait_for_function("() => document.getElementById('total').dataset.answered === '2'")
    assert analytics.inner_text("#total") == "2 incidents in the period"
