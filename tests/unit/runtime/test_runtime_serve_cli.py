"""``safewatch serve`` refuses bad set-ups with one clear line, before any camera starts."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI

from safewatch.cli import main
from safewatch.errors import ConfigError, ModelError
from safewatch.runtime.http_server import HttpServer


def site(folder: Path) -> Path:
    path = folder / "site.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "models": {"coco": {"path": "missing.onnx"}},
                "cameras": {"yard": {"source": "yard.mp4", "models": ["coco"]}},
            }
        )
    )
    return path


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[object, str]:
    """Run the console entry point in-process; its exit status and what it printed."""
    monkeypatch.setattr(sys, "argv", ["safewatch", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def test_no_rules_folder_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(monkeypatch, capsys, "serve", "--config", str(site(tmp_path)))
    assert code == 2
    assert "no rules given and no rules folder" in err
    assert "Traceback" not in err


def test_a_missing_model_stops_start_up_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "none.yaml").write_text("version: 1\nrules: []\n")
    code, err = run(monkeypatch, capsys, "serve", "--config", str(site(tmp_path)))
    assert code == 2
    assert "missing.onnx" in err
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers given back


def test_an_address_in_use_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            HttpServer(FastAPI(), "127.0.0.1", port)


def test_port_zero_picks_a_free_port_and_stops_cleanly() -> None:
    server = HttpServer(FastAPI(), "127.0.0.1", 0)
    server.start()
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
    finally:
        server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass


def test_a_cameras_missing_face_model_stops_start_up_as_it_refuses_a_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the site-wide face model was loaded at start: a camera's ``privacy.faces``
    override naming a missing model started, then failed every evidence still of the camera.
    The reload already refused it; the start now does too, with the same message."""
    path = site(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["cameras"]["yard"]["privacy"] = {"faces": str(tmp_path / "no-such-faces.onnx")}
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "missing.onnx").write_bytes(b"")  # found, but not loadable: refused later
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "none.yaml").write_text("version: 1\nrules: []\n")
    code, err = run(monkeypatch, capsys, "serve", "--config", str(path))
    assert code == 2
    assert "no-such-faces.onnx" in err
    assert "Traceback" not in err


def test_a_disabled_cameras_face_model_is_not_required(tmp_path: Path) -> None:
    """The start-up check (d3a02ef) looked at every camera: a disabled one, which makes no
    evidence, with a ``privacy.faces`` naming a model not installed refused the whole start."""
    from safewatch.config.loader import load_site
    from safewatch.runtime.service import RuntimeService

    path = site(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["cameras"]["yard"]["privacy"] = {"faces": str(tmp_path / "no-such-faces.onnx")}
    config["cameras"]["yard"]["enabled"] = False
    path.write_text(yaml.safe_dump(config))
    RuntimeService._check_face_models(load_site(path))  # nothing to load: no error
    config["cameras"]["yard"]["enabled"] = True
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ModelError, match=r"no-such-faces\.onnx"):
        RuntimeService._check_face_models(load_site(path))
