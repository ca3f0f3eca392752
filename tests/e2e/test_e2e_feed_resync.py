"""The pages read again what they show after a gap in the live incident feed, in headless
Chromium: the socket down and back (incidents written meanwhile never come over it), and the
server's ``{"type": "resync"}`` (it dropped changes for a tab that fell behind).

The app is the dashboard ``safewatch serve`` mounts, served in this process; the browser's
incident socket is Playwright's (``route_web_socket``), never connected to the server, so the
page hears of no change except by reading the API again, and the test decides when the socket
drops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api_support import PASSWORD, add_users, incident, make_dashboard, served_app
from e2e_support import chromium, log_in, need_chromium, new_tab, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

BADGE = "(text) => document.getElementById('open-count').textContent === text"
LISTED = "(id) => !!document.querySelector(`#feed-list li[data-id='${id}']`)"
ROW = "(id) => !!document.querySelector(`#incidents tbody tr[data-id='${id}']`)"


def test_the_pages_read_again_what_they_show_after_a_gap_in_the_feed(tmp_path: Path) -> None:
    need_chromium()
    # Written straight into the database below, so no answer cached before is reused.
    dashboard, storage = make_dashboard(tmp_path, query_cache_seconds=0)
    add_users(dashboard)
    repository = storage.repository
    sockets: list[Any] = []
    try:
        with served_app(dashboard) as base, chromium() as browser:
            page = new_tab(browser, 20_000)

            # A function of its own: Playwright cannot take a builtin (list.append) as handler.
            def opened(route: Any) -> None:
                sockets.append(route)

            page.route_web_socket("**/api/v1/ws/incidents", opened)

            def sockets_opened(count: int, what: str) -> None:
                # Playwright runs the route's handler only while the test is inside one of its calls
                wait_until(lambda: page.wait_for_timeout(50) or len(sockets) >= count, 20, what)

            log_in(page, f"{base}/live", "viewer", PASSWORD, "**/live")
            page.wait_for_function("() => document.getElementById('feed-list').dataset.loaded")
            page.wait_for_function(BADGE, arg="0 open")
            sockets_opened(1, "the incident socket")

            repository.upsert(incident(1))  # while the socket is up: never sent on it
            sockets[0].close()  # down; the page connects again by itself
            sockets_opened(2, "the reconnect")
            page.wait_for_function(BADGE, arg="1 open")
            page.wait_for_function(LISTED, arg=incident(1).id)

            repository.upsert(incident(2))
            sockets[1].send('{"type": "resync", "dropped": 1}')
            page.wait_for_function(BADGE, arg="2 open")
            page.wait_for_function(LISTED, arg=incident(2).id)

            page.goto(f"{base}/incidents")
            page.wait_for_function(ROW, arg=incident(2).id)
            repository.upsert(incident(3))
            sockets_opened(3, "the incident socket of the list")
            sockets[2].send('{"type": "resync", "dropped": 1}')
            page.wait_for_function(ROW, arg=incident(3).id)
            page.wait_for_function(BADGE, arg="3 open")
    finally:
        storage.close()
