"""``safewatch serve`` against a real RTSP camera that refuses a password full of URL-special
characters: the reconnect warnings and ``/readyz`` never show it (issue 13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from rtsp_server import MOUNT, RtspCamera, free_port
from serve_support import auth, readyz, wait_for, write_site

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(120)]

SAFEWATCH = Path(sys.executable).with_name("safewatch")
WRONG = "wr/ng#pa?ss@x"
"""A wrong password as an operator might paste it into the environment: unencoded."""


def test_a_refused_password_with_special_characters_appears_in_no_log_and_no_readyz(
    rtsp_camera_factory: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert callable(rtsp_camera_factory)
    camera: RtspCamera = rtsp_camera_factory(credentials=("viewer", "right-password"))
    monkeypatch.setenv("CAM_PW", WRONG)
    port = free_port()
    source = f"rtsp://viewer:${{CAM_PW}}@127.0.0.1:{camera.port}{MOUNT}"
    site = write_site(tmp_path, {"yard": source}, port=port)
    server = subprocess.Popen(
        [str(SAFEWATCH), "serve", "--config", str(site)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SAFEWATCH_DEBUG": "0"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: readyz(base)["cameras"]["yard"]["reconnects"] >= 2, 60, "reconnects")
        ready_text = httpx.get(f"{base}/readyz", headers=auth(), timeout=5).text
        camera_text = httpx.get(f"{base}/api/v1/cameras", headers=auth(), timeout=5).text
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert "yard" in output  # the reconnect warnings are there ...
    for text in (output, ready_text, camera_text):
        for form in (WRONG, quote(WRONG, safe=""), "wr/ng", "pa?ss"):
            assert form not in text  # ... without the password in any form
