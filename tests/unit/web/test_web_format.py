"""The dashboard's duration wording (``fmtDuration`` in ``static/js/api.js``) under Node.js.

It split a duration into minutes before rounding the seconds, so 119.6 s read "1 min 60 s" and
59.97 s read "60.0 s". Skipped where Node.js is missing (``.ci/run`` installs it with npm).
"""

from __future__ import annotations

import json

from node_js import needs_node, run_api_js

pytestmark = needs_node


def test_durations_are_rounded_before_they_are_split_into_minutes() -> None:
    seconds = [None, 0, 12.34, 59.94, 59.97, 60, 119.4, 119.6, 3599.7, 125]
    got = run_api_js(
        "globalThis.document = {querySelector: () => null, body: {dataset: {}}};",
        f"return {json.dumps(seconds)}.map((s) => site.fmtDuration(s));",
    )
    assert got == [
        "running",
        "0.0 s",
        "12.3 s",
        "59.9 s",
        "1 min 0 s",
        "1 min 0 s",
        "1 min 59 s",
        "2 min 0 s",
        "60 min 0 s",
        "2 min 5 s",
    ]


def test_the_login_page_is_gone_to_once_however_many_sockets_are_refused() -> None:
    """Each live socket of a page closes with 4401 when the session ends, and each sent the
    browser to log in: the second navigation aborted the first (a Live page test failed in CI
    with net::ERR_ABORTED)."""
    prelude = (
        "globalThis.document = {querySelector: () => null, body: {dataset: {}}};\n"
        "const went = [];\n"
        "globalThis.location = {pathname: '/live', search: '',"
        " set href(url) { went.push(url); }};"
    )
    got = run_api_js(prelude, "site.toLogin(); site.toLogin(); site.toLogin(); return went;")
    assert got == ["/login?next=%2Flive"]
