"""The incident page's recording in headless Chromium: one timeline across the camera's segments
(seeking lands in the right segment at the right time, playback runs on across a segment
boundary), an export link for the range, and nothing loaded or offered to a non-admin.

The app is the dashboard ``safewatch serve`` mounts, served by uvicorn on a free port in this
process; the recording is the construction clip remuxed into three segments by the recorder
(keyframes at 0, 10.13 and 20.25 s), starting a minute ago, with an incident 12 s into it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import av
import pytest

from api_support import PASSWORD, add_users, incident, served_app, write_site
from assets import asset
from e2e_support import chromium, log_in, need_chromium, new_tab
from safewatch.api.dashboard import Dashboard
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage
from safewatch.recording import list_segments, record
from safewatch.recording.service import recordings_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need_chromium()
    folder = tmp_path_factory.mktemp("scrub-site")
    loaded = load_site(write_site(folder, source="rtsp://127.0.0.1:9/yard"))
    storage = open_site_storage(loaded)
    dashboard = Dashboard.create(lambda: loaded, folder / "rules", storage)
    add_users(dashboard)
    t0 = round(time.time()) - 60.0
    record(
        lambda: av.open(str(asset("video/construction_cctv_640x352_24s.mp4"))),
        recordings_root(loaded),
        "yard",
        stop=threading.Event(),
        segment_seconds=5,
        clock=lambda: t0,
        reconnect=False,
    )
    record(  # another camera, started 3 s later: the same moment is 3 s earlier in its footage
        lambda: av.open(str(asset("video/construction_cctv_640x352_24s.mp4"))),
        recordings_root(loaded),
        "dock",
        stop=threading.Event(),
        segment_seconds=5,
        clock=lambda: t0 + 3,
        reconnect=False,
    )
    segments = list_segments(recordings_root(loaded), "yard")
    assert len(segments) == 3
    found = incident(1, started=t0 + 12)
    storage.repository.upsert(found)
    try:
        with served_app(dashboard) as base, chromium() as browser:
            yield {
                "base": base,
                "browser": browser,
                "dashboard": dashboard,
                "incident": found,
                "segments": segments,
                "other": list_segments(recordings_root(loaded), "dock"),
            }
    finally:
        storage.close()


def _incident_page(site: dict[str, Any], user: str) -> Any:
    page = new_tab(site["browser"], 30_000)
    log_in(
        page, f"{site['base']}/incidents/{site['incident'].id}", user, PASSWORD, "**/incidents/*"
    )
    page.wait_for_function("() => +document.getElementById('recording').dataset.segments === 3")
    return page


def _scrub_to(page: Any, t: float) -> None:
    page.evaluate(
        """(t) => { const s = document.getElementById('scrub'); s.value = String(t);
        s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); }""",
        t,
    )


STATE = """() => { const v = document.getElementById('recording-player');
    return [document.getElementById('recording').dataset.segment, v.currentTime, v.readyState,
            decodeURIComponent(v.currentSrc)]; }"""


def test_one_timeline_across_segments_and_an_export_link(site: dict[str, Any]) -> None:
    page = _incident_page(site, "admin")
    segments = site["segments"]
    assert page.locator("#recording-player").is_hidden(), "nothing loads before an admin asks"
    views = site["dashboard"].auth.audit_records(action="recording.view")[1]
    assert views == 0
    # seek into the second segment: its file, at the right offset
    target = segments[1].start + 4.0
    _scrub_to(page, target)
    page.wait_for_function(
        f"() => {{ const s = ({STATE})(); return s[0] === '1' && s[2] >= 1"
        f" && Math.abs(s[1] - {target - segments[1].start}) < 0.5; }}"
    )
    assert segments[1].path.name in page.evaluate(STATE)[3]
    # half a second before the end of the first segment, playing: it runs on into the second
    _scrub_to(page, segments[0].end - 0.5)
    page.wait_for_function(f"() => ({STATE})()[0] === '0'")
    page.evaluate("() => document.getElementById('recording-player').play()")
    page.wait_for_function(
        f"() => {{ const s = ({STATE})(); return s[0] === '1' && s[1] > 0.2; }}", timeout=60_000
    )
    shown = float(page.input_value("#scrub"))
    assert segments[1].start < shown < segments[1].start + 5, "the timeline follows the video"
    href = page.get_attribute("#export-range", "href")
    assert href is not None and "/api/v1/recordings/yard/export?since=" in href
    got = page.request.get(f"{site['base']}{href}")
    assert got.status == 200 and got.headers["content-type"] == "video/mp4"
    assert site["dashboard"].auth.audit_records(action="recording.export")[1] == 1
    page.context.close()


def test_an_operator_sees_which_footage_exists_but_no_player(site: dict[str, Any]) -> None:
    page = _incident_page(site, "operator")
    assert page.locator("#scrub").count() == 0
    assert page.locator("#export-range").count() == 0
    assert page.locator("#recording button").count() == 0
    page.context.close()


def test_the_other_camera_at_the_same_moment(site: dict[str, Any]) -> None:
    page = _incident_page(site, "admin")
    moment = site["segments"][1].start + 6.0
    _scrub_to(page, moment)
    page.wait_for_function(f"() => ({STATE})()[0] === '1' && ({STATE})()[2] >= 1")
    page.select_option("#recording-camera", "dock")
    page.wait_for_function("() => document.getElementById('recording').dataset.camera === 'dock'")
    other = next(s for s in site["other"] if s.start <= moment < s.end)
    index = site["other"].index(other)
    page.wait_for_function(
        f"() => {{ const s = ({STATE})(); return s[0] === '{index}' && s[2] >= 1"
        f" && Math.abs(s[1] - {moment - other.start}) < 0.5; }}"
    )
    assert "/recordings/dock/" in page.evaluate(STATE)[3]
    assert abs(float(page.input_value("#scrub")) - moment) < 0.5, "the same moment"
    page.context.close()
