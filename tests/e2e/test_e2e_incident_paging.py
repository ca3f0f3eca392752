"""Paging through a filtered incident list while deciding, in headless Chromium against a real
``safewatch serve`` whose database was filled beforehand with 200 open incidents (no rule runs on
its camera, so the list only changes when the test decides).

With the *open* filter, a decision takes incidents out of the filtered set and the ones after
them move up; the page must show them, so that ``n`` pages the set as it is now and no open
incident is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from assets import asset
from e2e_support import PASSWORD, Served, chromium, log_in, need_chromium, new_tab, serve
from safewatch.domain import Incident, Severity, incident_id
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.storage.migrate import upgrade

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COUNT = 200
ROWS = "() => [...document.querySelectorAll('#incidents tbody tr[data-id]')].map(r => r.dataset.id)"
SELECTED = "() => document.getElementById('incidents').dataset.selected"


def _seed(folder: Path) -> list[str]:
    """Store COUNT open incidents 20 minutes apart (never grouped); their ids, newest first."""
    engine = create_engine_for("sqlite:///data/safewatch.db", folder)
    try:
        upgrade(engine)
        repository = IncidentRepository(engine)
        now = time.time()
        ids = []
        for n in range(COUNT):
            started = now - 3600 - n * 1200
            incident = Incident(
                id=incident_id("yard", "seeded", n, started),
                camera_id="yard",
                rule_id="seeded",
                rule_kind="zone_intrusion",
                severity=Severity.MEDIUM,
                track_ids=(n,),
                started_at=started,
                ended_at=started + 5,
                peak_confidence=0.8,
                message=f"seeded incident {n}",
            )
            repository.upsert(incident)
            ids.append(incident.id)
        return ids
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, list[str]]]:
    need_chromium()
    folder = tmp_path_factory.mktemp("e2e-paging")
    ids = _seed(folder)
    cameras = {
        "_model": asset("models/yolox_nano_coco.onnx"),
        "yard": {
            "source": str(asset("video/construction_cctv_640x352_24s.mp4")),
            "fps": 1,
            "models": ["coco"],
            "loop": True,
            "name": "Yard",
        },
    }
    with serve(folder, cameras, "version: 1\nrules: []\n") as served:
        yield served, ids


@pytest.fixture(scope="module")
def page(seeded: tuple[Served, list[str]]) -> Iterator[Any]:
    with chromium() as browser:
        tab = new_tab(browser, 20_000)
        log_in(tab, f"{seeded[0].base}/login", "admin", PASSWORD, "**/live")
        yield tab


def test_deciding_a_filtered_page_then_paging_on_skips_nothing(
    seeded: tuple[Served, list[str]], page: Any
) -> None:
    served, ids = seeded
    page.goto(f"{served.base}/incidents?status=open&group=0&offset=50")
    page.wait_for_function("() => document.getElementById('incidents').dataset.loaded")
    assert page.evaluate(ROWS) == ids[50:100]
    page.check("#check-all")
    page.click("#bulk button[data-status=acknowledged]")
    page.wait_for_function("() => document.getElementById('incidents').dataset.decided")
    assert len(served.incidents(status="open", limit=200)) == COUNT - 50
    # The page shown is page 2 of the open set as it is now: the incidents that moved up.
    assert page.evaluate(ROWS) == ids[100:150]
    assert page.inner_text("#page-info") == "51\u2013100 of 150"
    page.locator("#incidents").focus()
    page.keyboard.press("n")
    page.wait_for_function(
        "() => document.getElementById('page-info').textContent.startsWith('101')"
    )
    assert page.evaluate(ROWS) == ids[150:200]
    assert page.inner_text("#page-info") == "101\u2013150 of 150"
    # Deciding the whole last page leaves the last page there is, not an empty one.
    page.evaluate("() => delete document.getElementById('incidents').dataset.decided")
    page.check("#check-all")
    page.click("#bulk button[data-status=acknowledged]")
    page.wait_for_function("() => document.getElementById('incidents').dataset.decided")
    assert page.inner_text("#page-info") == "51\u2013100 of 100"
    assert page.evaluate(ROWS) == ids[100:150]


def test_a_decided_row_leaves_the_selection_on_the_next_one(
    seeded: tuple[Served, list[str]], page: Any
) -> None:
    """Working down the open list with `j` and `a`: the acknowledged row leaves the page and the
    selection moves to the row now in its place, not to nothing (then `j` went to the top)."""
    served, _ = seeded
    page.goto(f"{served.base}/incidents?status=open&group=0")
    page.wait_for_function("() => document.getElementById('incidents').dataset.loaded")
    rows = page.evaluate(ROWS)
    page.locator("#incidents").focus()
    for _ in range(3):
        page.keyboard.press("j")
    selected = "() => document.getElementById('incidents').dataset.selected"
    page.wait_for_function(f"() => ({selected})() && ({selected})() !== {rows[0]!r}")
    index = rows.index(page.evaluate(selected))
    page.evaluate("() => delete document.getElementById('incidents').dataset.decided")
    page.keyboard.press("a")
    page.wait_for_function("() => document.getElementById('incidents').dataset.decided")
    assert page.evaluate(ROWS)[index] == rows[index + 1]
    assert page.evaluate(selected) == rows[index + 1]


def test_a_rule_the_site_no_longer_has_still_filters(
    seeded: tuple[Served, list[str]], page: Any
) -> None:
    """The seeded incidents' rule is in no rule file of the site (a removed rule): a link that
    filters on it lists its incidents, says so, and keeps the filter in the URL."""
    served, ids = seeded
    page.goto(f"{served.base}/incidents?rule=seeded&group=0")
    page.wait_for_function("() => document.getElementById('incidents').dataset.loaded")
    assert page.input_value("#f-rule") == "seeded"
    assert page.inner_text("#f-rule option[value=seeded]") == "seeded (not in the site now)"
    assert "rule=seeded" in page.url
    assert page.evaluate(ROWS) == ids[:50]
    assert page.inner_text("#page-info") == f"1\u201350 of {COUNT}"


def test_decisions_on_an_earlier_page_reload_the_page_shown(
    seeded: tuple[Served, list[str]], page: Any
) -> None:
    """Another operator acknowledges ten open incidents of the first page while this one works
    past it: the page shown is reloaded (it was left as it was, so `n` then skipped the ten
    incidents that had moved up onto it). Its selected first row moved up past its top, so the
    page moves back with it and shows the rows it showed; `n` goes on from them."""
    served, _ = seeded
    before = [i["id"] for i in served.incidents(status="open", limit=500)]
    assert len(before) >= 85
    page.goto(f"{served.base}/incidents?status=open&group=0&offset=25")
    page.wait_for_function("() => document.getElementById('incidents').dataset.loaded")
    assert page.evaluate(ROWS) == before[25:75]
    _acknowledge(served, before[:10])
    page.wait_for_function(
        "() => document.getElementById('page-info').textContent.startsWith('16\u2013')"
    )
    assert page.evaluate(ROWS) == before[25:75]
    assert page.evaluate(SELECTED) == before[25]
    page.locator("#incidents").focus()
    page.keyboard.press("n")
    page.wait_for_function(f"() => ({ROWS})()[0] === {before[75]!r}")
    assert page.evaluate(ROWS) == before[75:125]


def test_the_selected_row_stays_on_the_page_when_rows_move_past_its_top(
    seeded: tuple[Served, list[str]], page: Any
) -> None:
    """The selected row is the third of a later page when another operator acknowledges ten of
    the first page: the reloaded page follows it (it had left the page, `a` then did nothing and
    `j` went to the new first row, skipping eight). A selected incident off the page (after `n`)
    is still decided by `f`, and `j` goes to the row after it."""
    served, _ = seeded
    before = [i["id"] for i in served.incidents(status="open", limit=500)]
    assert len(before) >= 80
    page.goto(f"{served.base}/incidents?status=open&group=0&offset=25")
    page.wait_for_function("() => document.getElementById('incidents').dataset.loaded")
    page.locator("#incidents").focus()
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert page.evaluate(SELECTED) == before[27]
    _acknowledge(served, before[:10])
    page.wait_for_function(
        "() => document.getElementById('page-info').textContent.startsWith('16\u2013')"
    )
    assert page.evaluate(ROWS) == before[25:75]
    assert page.evaluate(SELECTED) == before[27]
    assert page.get_attribute("#incidents tbody tr.selected", "data-id") == before[27]
    page.keyboard.press("a")
    page.wait_for_function("() => document.getElementById('incidents').dataset.decided")
    assert before[27] not in {i["id"] for i in served.incidents(status="open", limit=500)}
    assert page.evaluate(SELECTED) == before[28]
    page.keyboard.press("n")
    page.wait_for_function(f"() => ({ROWS})()[0] === {before[76]!r}")
    assert "no longer on the page" in page.inner_text("#preview")
    page.evaluate("() => delete document.getElementById('incidents').dataset.decided")
    page.keyboard.press("f")
    page.wait_for_function("() => document.getElementById('incidents').dataset.decided")
    assert served.get(f"/api/v1/incidents/{before[28]}")["incident"]["status"] == "false_positive"
    page.keyboard.press("j")
    assert page.evaluate(SELECTED) == page.evaluate(ROWS)[0]


def _acknowledge(served: Served, ids: list[str]) -> None:
    """Another operator's decision, through the API (the page hears of it over the live feed)."""
    decided = httpx.post(
        f"{served.base}/api/v1/incidents/transitions",
        json={"ids": ids, "status": "acknowledged"},
        headers=served.headers,
        timeout=10,
    )
    assert decided.status_code == 200 and len(decided.json()["changed"]) == len(ids)
