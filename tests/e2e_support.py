"""What the dashboard's browser tests share: a real ``safewatch serve`` in a subprocess, headless
Chromium through Playwright, polling waits, screenshots and the axe-core accessibility check.

axe-core comes from npm (``npm pack axe-core``, unpacked outside ``src``; ``.ci/run`` installs it);
:func:`axe_source` finds it through ``SAFEWATCH_AXE`` or the default folder and the test injects it
into the page, so the product never ships or serves it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

import patience

__all__ = [
    "ARGS",
    "AXE_DEFAULT",
    "CHROMIUM",
    "PASSWORD",
    "Served",
    "axe_source",
    "axe_violations",
    "chromium",
    "free_port",
    "log_in",
    "need_chromium",
    "new_tab",
    "serve",
    "wait_until",
]

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "e2e-password-123"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
]
AXE_DEFAULT = Path(__file__).resolve().parents[1] / ".cache" / "npm" / "axe-core" / "axe.min.js"
"""Where ``.ci/run`` unpacks axe-core (outside ``src``, ignored by git)."""

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], T], timeout: float, what: str, poll: float = 0.25) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after
    ``timeout`` seconds (generous: the CI machine is busy)."""
    return patience.poll(condition, timeout, what, poll)


def need_chromium() -> None:
    """Skip the test, saying what to install, where Debian's chromium or Playwright is missing;
    called first thing, before any costly set-up."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    pytest.importorskip("playwright")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium (Debian's, driven by Playwright, with :data:`ARGS`), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_tab(browser: Any, timeout_ms: float) -> Any:
    """A tab of ``browser`` in a context of its own (no cookies shared with other tabs, so each
    is its own session), desktop-sized, each of its waits bounded by ``timeout_ms``."""
    page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    page.set_default_timeout(timeout_ms)
    return page


def log_in(page: Any, url: str, user: str, password: str, lands_on: str) -> None:
    """Open ``url`` on ``page``; the dashboard sends a browser without a session to its login
    form first: sign in there as ``user`` and wait until it is back on ``lands_on`` (a glob)."""
    page.goto(url)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lands_on)


def _safewatch(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "safewatch", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Served:
    """A running ``safewatch serve`` with an admin user, its token and its log."""

    base: str
    folder: Path
    headers: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, path: str, **params: Any) -> Any:
        """GET an API path with the admin's token; the JSON body."""
        response = httpx.get(f"{self.base}{path}", params=params, headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def incidents(self, **params: Any) -> list[dict[str, Any]]:
        """Incidents matching ``params`` (newest first)."""
        items: list[dict[str, Any]] = self.get("/api/v1/incidents", **params)["items"]
        return items

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as systemd or Ctrl+C would; the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serve(folder: Path, cameras: dict[str, Any], rules: str) -> Iterator[Served]:
    """Write a site with ``cameras`` and the rule file ``rules``, add an admin, start the
    server and wait for ``/healthz``; SIGTERM it afterwards."""
    port = free_port()
    site = {
        "version": 1,
        "site": {"name": "E2E yard", "timezone": "Europe/Berlin"},
        "models": {
            "coco": {
                "path": str(cameras.pop("_model")),
                "format": "yolox",
                "labels": {"person": "person"},
            }
        },
        "cameras": cameras,
        "storage": {"database": "sqlite:///data/safewatch.db", "evidence_dir": "data/evidence"},
        "evidence": {"pre_seconds": 1, "post_seconds": 1, "buffer_seconds": 3},
        "runtime": {"http": {"host": "127.0.0.1", "port": port}, "decode": "thread"},
    }
    (folder / "site.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "site.yaml").write_text(rules)
    config = str(folder / "site.yaml")
    _safewatch(
        "users", "add", "admin", "--role", "admin", "--password-stdin", "-c", config,
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    token = _safewatch("users", "token", "admin", "--name", "e2e", "-c", config).strip()
    log_path = folder / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "safewatch", "serve", "-c", config, "-r", str(folder / "rules")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    served = Served(
        f"http://127.0.0.1:{port}", folder, {"Authorization": f"Bearer {token}"}, process, log_path
    )
    try:

        def healthy() -> bool:
            assert process.poll() is None, served.log()
            try:
                return httpx.get(f"{served.base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 90, "the server to answer /healthz")
        yield served
    finally:
        served.stop()


def axe_source() -> str | None:
    """The axe-core script, or ``None`` when it is not installed here."""
    path = Path(os.environ.get("SAFEWATCH_AXE", AXE_DEFAULT))
    return path.read_text() if path.is_file() else None


def axe_violations(page: Any, source: str) -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2 A/AA rules) on the page; its serious and critical violations, each
    with the selectors of the nodes concerned."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol, which the page's CSP (no inline script) does
        # not govern; a <script> tag would be refused, as it should be.
        page.evaluate(f"{source}\n;true")
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {
              runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                              'best-practice']},
            });
            return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' '))}));
        }"""
    )
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    return json.loads(json.dumps(serious))
