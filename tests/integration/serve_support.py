"""Helpers for the ``safewatch serve`` integration tests: a site on real RTSP cameras."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from assets import asset
from patience import poll, stretch

SAFEWATCH = Path(sys.executable).with_name("safewatch")
"""The ``safewatch`` console script of this virtual environment."""


def write_site(
    folder: Path,
    cameras: Mapping[str, str],
    *,
    port: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``site.yaml`` and ``rules/`` in ``folder``: YOLOX-Nano on every camera, one rule per
    camera that opens an incident for anyone in view (min_duration 0), short watchdog times."""
    model = asset("models/yolox_nano_coco.onnx")
    site: dict[str, Any] = {
        "version": 1,
        "site": {"name": "test yard"},
        "models": {"coco": {"path": str(model), "format": "yolox", "labels": {"person": "person"}}},
        "cameras": {
            key: {"source": url, "fps": 5, "models": ["coco"]} for key, url in cameras.items()
        },
        "storage": {"database": "sqlite:///data/safewatch.db", "evidence_dir": "data/evidence"},
        "evidence": {"pre_seconds": 1, "post_seconds": 1, "buffer_seconds": 3},
        "runtime": {
            "watchdog": {
                "stall_seconds": 2,
                "progress_seconds": 8,
                "restart_backoff_seconds": 0.2,
            },
            "http": {"host": "127.0.0.1", "port": port},
        },
    }
    for key, value in (extra or {}).items():
        site[key] = value
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    rules = folder / "rules"
    rules.mkdir(exist_ok=True)
    zones = "\n".join(
        f"  everywhere_{key}: {{camera: {key}, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}"
        for key in cameras
    )
    rule_lines = ["version: 1", "zones:", zones, "rules:"]
    for key in cameras:
        rule_lines += [
            f"  - id: anyone-in-view-{key}",
            "    kind: zone_intrusion",
            f"    zone: everywhere_{key}",
            "    objects: [person]",
            "    min_duration: 0s",
            "    grace: 1s",
            "    severity: low",
        ]
    (rules / "view.yaml").write_text("\n".join(rule_lines) + "\n")
    _provision_token(path)
    return path


_token = {"value": ""}
"""API token of the site written last: every endpoint but /healthz needs one (issue 7)."""


def _provision_token(site_path: Path) -> None:
    """A viewer and an API token in the site's database, for readyz() and metric()."""
    from safewatch.api.auth import AuthStore, UserExists
    from safewatch.config.loader import load_site
    from safewatch.incidents.site_storage import open_site_storage

    storage = open_site_storage(load_site(site_path))
    try:
        store = AuthStore(storage.engine)
        with contextlib.suppress(UserExists):
            store.add_user("probe", "probe-password-123", "viewer")
        _token["value"] = store.create_token("probe", "serve tests").token
    finally:
        storage.close()


def auth() -> dict[str, str]:
    """The header that authenticates the tests' requests."""
    return {"Authorization": f"Bearer {_token['value']}"}


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail saying ``what``.

    ``timeout`` is a liveness bound, stretched on a busy machine (:func:`patience.stretch`);
    a test whose claim is a time bound measures it itself.
    """
    # not up yet, or not there yet
    return poll(condition, stretch(timeout), what, 0.1, (httpx.HTTPError, KeyError))


def readyz(base: str) -> dict[str, Any]:
    """The ``/readyz`` body."""
    body: dict[str, Any] = httpx.get(f"{base}/readyz", headers=auth(), timeout=5).json()
    return body


def metric(base: str, name: str, **labels: str) -> float:
    """One sample's value from ``/metrics`` (0 when absent)."""
    text = httpx.get(f"{base}/metrics", headers=auth(), timeout=5).text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


@contextlib.contextmanager
def serving(site: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``safewatch serve --config site *args`` as a process, its console (stdout and stderr)
    kept for :func:`stop`. Killed on the way out if the test did not stop it, so that a failed
    test leaves no server behind."""
    server = subprocess.Popen(
        [str(SAFEWATCH), "serve", "--config", str(site), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SAFEWATCH_DEBUG": "0"},
    )
    try:
        yield server
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def stop(server: subprocess.Popen[str]) -> str:
    """SIGTERM, as systemd or Ctrl+C would, then wait (60 s at most) for the exit; all the
    server wrote to its console."""
    server.send_signal(signal.SIGTERM)
    output, _ = server.communicate(timeout=60)
    return output
