"""``safewatch serve`` against a real RTSP camera that refuses a password full of URL-special
characters: the reconnect warnings and ``/readyz`` never show it (issue 13)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from rtsp_server import MOUNT, RtspCamera, free_port
from serve_support import auth, readyz, serving, stop, wait_for, write_site

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(120)]

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
    base = f"http://127.0.0.1:{port}"
    with serving(site) as server:
        wait_for(lambda: readyz(base)["cameras"]["yard"]["reconnects"] >= 2, 60, "reconnects")
        ready_text = httpx.get(f"{base}/readyz", headers=auth(), timeout=5).text
        camera_text = httpx.get(f"{base}/api/v1/cameras", headers=auth(), timeout=5).text
        output = stop(server)
    assert "yard" in output  # the reconnect warnings are there ...
    for text in (output, ready_text, camera_text):
        for form in (WRONG, quote(WRONG, safe=""), "wr/ng", "pa?ss"):
            assert form not in text  # ... without the password in any form
