"""The README's first steps in a clean clone with nothing beside it; a local mirror for internet.

What a user who clones the public repository gets: ``make run`` downloads the example site's
models and demo clip by catalogue name (from a real HTTP server on 127.0.0.1 serving the team's
asset folder in the mirror layout of ``docs/models.md``), serves the site, prints the dashboard
address and the first-admin hint, and stores a first incident; the README's ``users add
--password-stdin`` and ``users token`` then open ``/readyz``; ``make audit`` audits the clip.

The clone has no ``.venv`` of its own: installing one needs PyPI, which a test may not reach. The
make targets run with ``VENV`` set to this checkout's environment (``-o`` keeps make from
reinstalling it) and ``PYTHONPATH`` set to the clone's ``src``, so the clone's code is what runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from assets import ASSETS, asset
from mirror_server import MirrorServer, serve_folder

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def mirror() -> Iterator[MirrorServer]:
    asset(".")
    with serve_folder(ASSETS) as server:
        yield server


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists() or not (VENV / "bin" / "safewatch").exists():
        pytest.skip("needs a git checkout with its .venv (make install)")
    target = tmp_path_factory.mktemp("user") / "safewatch"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    assert not (target.parent / "shared").exists()  # nothing beside the clone
    return target


def user_env(clone: Path, mirror: MirrorServer, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEWATCH_")}
    return {
        **env,
        "PYTHONPATH": str(clone / "src"),
        "SAFEWATCH_MIRROR": mirror.url,
        "SAFEWATCH_MODELS": str(cache),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }


def make(target: str, clone: Path, *extra: str) -> list[str]:
    return ["make", "-C", str(clone), target, f"VENV={VENV}", "-o", f"{VENV}/bin/safewatch", *extra]


class Console:
    """Collects a process's stderr lines on a thread, so the test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)


def first_incident(database: Path) -> tuple[str, str] | None:
    if not database.exists():
        return None
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            row = db.execute("SELECT camera_id, rule_id FROM incidents LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        return None  # the schema is being created
    return None if row is None else (str(row[0]), str(row[1]))


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the group make leads (make and the serve it started), as Ctrl-C would."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=90)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # serve finishes its clips after make has gone
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)


def test_make_run_in_a_clean_clone_reaches_a_first_incident(
    clone: Path, mirror: MirrorServer, tmp_path: Path
) -> None:
    env = user_env(clone, mirror, tmp_path / "cache")
    code = subprocess.run(
        [sys.executable, "-c", "import safewatch; print(safewatch.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert code.startswith(str(clone)), code  # the clone's code runs, not this checkout's
    started = time.monotonic()
    process = subprocess.Popen(
        make("run", clone, "ARGS=--port 0"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    console = Console(process)
    database = clone / "examples" / "safewatch-data" / "safewatch.db"
    try:
        found = None
        while found is None and time.monotonic() - started < 420 and process.poll() is None:
            time.sleep(1.0)
            found = first_incident(database)
        first_incident_s = time.monotonic() - started
        assert found is not None, f"no incident stored; console:\n{console.text()}"
        assert found[0] == "yard"
        text = console.text()
        for name in ("yolox_nano", "ppe14_yolov8n_int8", "construction_cctv"):
            assert f"downloading {name}" in text and f"{name}: " in text
        assert "preparing ppe14_yolov8n_int8: strip_output_qdq" in text
        assert {  # the pinned files, through the HTTP mirror (upstream names asked for first)
            "/yolox_nano.onnx",
            "/models/yolox_nano_coco.onnx",
            "/best_int8.onnx",
            "/upstream/ppe14_best_int8.onnx",
            "/test.mp4",
            "/video/construction_cctv_640x352_24s.mp4",
        } <= set(mirror.hits)
        match = re.search(r"dashboard  (http://127\.0\.0\.1:\d+)/", text)
        assert match, text
        assert "no user yet" in text and "--password-stdin" in text

        # The README's next block, without a terminal.
        site = clone / "examples" / "site.yaml"
        cli = [sys.executable, "-m", "safewatch"]
        added = subprocess.run(
            [*cli, "users", "add", "admin", "--role", "admin", "--password-stdin", "-c", site],
            input="a long enough password\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert added.returncode == 0, added.stderr
        token = subprocess.run(
            [*cli, "users", "token", "admin", "--name", "curl", "-c", site],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        ).stdout.strip()
        request = urllib.request.Request(
            match.group(1) + "/readyz", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            readiness = json.loads(response.read())
        assert "yard" in json.dumps(readiness)
        deadline = time.monotonic() + 120
        while "incident opened: camera yard" not in console.text():
            assert time.monotonic() < deadline, console.text()
            time.sleep(0.5)
    finally:
        stop(process)
    print(f"\nmake run in a clean clone -> first incident stored: {first_incident_s:.1f} s")
    assert "safewatch: stopped in" in console.text()


def test_make_audit_in_a_clean_clone(clone: Path, mirror: MirrorServer, tmp_path: Path) -> None:
    env = user_env(clone, mirror, tmp_path / "cache")
    started = time.monotonic()
    result = subprocess.run(
        make("audit", clone),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((clone / "audit-out" / "incidents.json").read_text())
    (video,) = report["videos"]
    assert video["started_at"].startswith("2017-02-22T12:07:16")  # the camera's clock, in UTC
    assert video["coverage"] == 1.0
    assert report["incidents"], result.stdout
    print(f"\nmake audit, clean clone + local mirror: {time.monotonic() - started:.1f} s")


def test_make_says_how_to_get_python3_venv(tmp_path: Path) -> None:
    """A stock Debian/Ubuntu python3 without python3-venv: one clear line, no half-made .venv."""
    for name in ("Makefile", "pyproject.toml"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    debian_python = tmp_path / "python3"
    debian_python.write_text(  # what Debian's python3 does without python3-venv
        "#!/bin/sh\n"
        'if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; '
        "echo 'ensurepip is not available' >&2; exit 1; fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    debian_python.chmod(0o755)
    result = subprocess.run(
        ["make", "-C", str(tmp_path), "install", f"PY={debian_python}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "sudo apt install python3-venv" in result.stderr
    assert not (tmp_path / ".venv").exists()
