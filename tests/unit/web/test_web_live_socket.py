"""The Live page's sockets (``liveSocket`` in ``static/js/api.js``) run under Node.js against a
scripted server and a virtual clock: how often they retry and how often they ask who they are.

``setTimeout``, ``clearTimeout`` and ``Date.now`` are replaced by a clock that jumps from one
timer to the next (a minute of retries takes milliseconds, and no assertion depends on how fast
the machine is); ``Math.random`` is a seeded generator. Skipped where Node.js is missing
(``.ci/run`` installs it with npm).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from node_js import needs_node, run_api_js

pytestmark = needs_node

HARNESS = """
let now = 0;
let ids = 0;
const timers = [];
globalThis.setTimeout = (run, delay = 0) => {
  timers.push({ at: now + delay, run, id: ++ids });
  return ids;
};
globalThis.clearTimeout = (id) => {
  const i = timers.findIndex((t) => t.id === id);
  if (i >= 0) timers.splice(i, 1);
};
Date.now = () => now;
let seed = 12345;
Math.random = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
globalThis.document = {
  querySelector: () => null, getElementById: () => null, body: { dataset: {} },
};
globalThis.location = {
  protocol: "http:", host: "sw", pathname: "/live", search: "", href: "/live",
};
const opened = []; // [virtual ms, url] of each connection attempt
let server = () => {}; // what the server does with a new socket, 5 ms after it is made
globalThis.WebSocket = class {
  constructor(url) {
    this.url = url;
    opened.push([now, url]);
    setTimeout(() => server(this), 5);
  }
  close() { setTimeout(() => this.onclose?.({ code: 1000 }), 1); }
};
const asked = []; // virtual ms of each /api/v1/auth/me request
let whoAmI = { status: 200, after: 100 };
globalThis.fetch = (url) => {
  if (url !== "/api/v1/auth/me") throw new Error(url);
  asked.push(now);
  const { status, after } = whoAmI;
  return new Promise((resolve) => setTimeout(() => resolve({ status }), after));
};
const until = async (end) => {
  for (;;) {
    timers.sort((a, b) => a.at - b.at || a.id - b.id);
    if (!timers.length || timers[0].at > end) break;
    const timer = timers.shift();
    now = timer.at;
    timer.run();
    await new Promise((resolve) => setImmediate(resolve)); // the promises it settled
  }
  now = end;
};
"""


def run_js(body: str) -> Any:
    """Run ``body`` with ``site`` (the imported ``api.js``) and the harness above in scope."""
    return run_api_js(HARNESS, body)


def test_a_socket_accepted_and_closed_at_once_backs_off() -> None:
    """The server accepts and closes at once (1013 for a camera disabled while watched, the
    cluster relay's 4503 with no owner): the open must not reset the backoff. Before, it did,
    and the socket came back every 0.5 s for good (119 handshakes in a minute)."""
    times = run_js(
        """
        server = (ws) => { ws.onopen(); ws.onclose({ code: 1013 }); };
        site.liveSocket("/api/v1/ws/cameras/yard/video", { onMessage() {} });
        await until(60000);
        return opened.map(([at]) => at);
        """
    )
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) <= 15, f"{len(times)} handshakes in 60 s"
    assert max(gaps) <= 12_100, "at most 10 s apart, +20 % jitter"
    assert gaps[0] <= 700, "the first retry still comes at once"


def test_a_socket_that_delivered_resets_its_backoff() -> None:
    """Once a socket delivered a message (or stayed open 5 s), its next close is retried at
    once again, however long the failures before it."""
    got = run_js(
        """
        server = (ws) => { ws.onopen(); ws.onclose({ code: 1013 }); };
        site.liveSocket("/api/v1/ws/cameras/yard/video", { onMessage() {} });
        await until(30000); // backed off to 10 s
        const failing = opened.length;
        server = (ws) => { ws.onopen(); ws.onmessage({ data: "x" }); ws.onclose({ code: 1013 }); };
        await until(60000);
        const delivering = opened.slice(failing + 1).map(([at]) => at);
        server = (ws) => { ws.onopen(); setTimeout(() => ws.onclose({ code: 1006 }), 6000); };
        await until(90000);
        const open6s = opened.length - failing - 1 - delivering.length;
        return [delivering.length, open6s];
        """
    )
    assert got[0] >= 30, f"{got[0]} reconnects in 30 s after a delivered message"
    assert got[1] >= 3, f"{got[1]} reconnects in 30 s of sockets open 6 s each"


def test_the_sockets_of_a_page_do_not_retry_in_lockstep() -> None:
    """32 sockets failing together (the server went away) spread their retries: ±20 % jitter.
    Without it every socket of a wall retried in the same instant."""
    spread = run_js(
        """
        server = (ws) => ws.onclose({ code: 1006 });
        for (let i = 0; i < 32; i += 1) site.liveSocket(`/c${i}`, { onMessage() {} });
        await until(40000);
        const fifth = [];
        for (let i = 0; i < 32; i += 1) {
            fifth.push(opened.filter(([, url]) => url.endsWith(`/c${i}`))[4][0]);
        }
        return Math.max(...fifth) - Math.min(...fifth);
        """
    )
    assert spread >= 1000, f"the fifth attempts of 32 sockets within {spread} ms"


@pytest.mark.parametrize(("answer_ms", "most"), [(100, 7), (25_000, 3)])
def test_the_sockets_of_a_page_share_one_question_who_am_i(answer_ms: int, most: int) -> None:
    """32 sockets refused at the handshake for a minute (no close code: an outage, or a proxy
    without WebSocket upgrades) ask /api/v1/auth/me once for all: at most one question in
    flight, at most one per 10 s. Before, every refused handshake asked (hundreds a minute)."""
    asked = run_js(
        f"""
        whoAmI = {{ status: 200, after: {answer_ms} }};
        server = (ws) => ws.onclose({{ code: 1006 }});
        for (let i = 0; i < 32; i += 1) site.liveSocket(`/c${{i}}`, {{ onMessage() {{}} }});
        await until(60000);
        return asked;
        """
    )
    assert 1 <= len(asked) <= most, asked
    assert all(b - a >= 10_000 for a, b in itertools.pairwise(asked)), asked


def test_a_401_to_the_shared_question_ends_every_socket_and_goes_to_log_in() -> None:
    """The session is gone: the one answer sends the page to log in, and no socket of the page
    tries again, whichever of them asked."""
    got = run_js(
        """
        whoAmI = { status: 401, after: 100 };
        server = (ws) => ws.onclose({ code: 1006 });
        for (let i = 0; i < 32; i += 1) site.liveSocket(`/c${i}`, { onMessage() {} });
        await until(1000);
        const before = opened.length;
        await until(30000);
        return [asked.length, location.href, opened.length - before];
        """
    )
    assert got == [1, "/login?next=%2Flive", 0]
