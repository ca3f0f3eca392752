"""Shared pieces of the alert tests: a site with an alerts block, incidents, a clock, a channel
that records what it is asked to send (and fails on demand)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import incident_factories
from safewatch.alerts.message import AlertMessage
from safewatch.config.loader import LoadedSite
from safewatch.config.site import SiteConfig

T0 = 1_700_000_000.0
"""Tuesday 14 November 2023, 22:13:20 UTC (23:13:20 in Europe/Berlin)."""


def make_site(
    alerts: Mapping[str, Any], tmp_path: Path, *, cameras: tuple[str, ...] = ("yard", "dock")
) -> LoadedSite:
    """A validated site with these cameras and this ``alerts`` block (SQLite under tmp_path)."""
    document = {
        "version": 1,
        "site": {"name": "North yard", "timezone": "Europe/Berlin"},
        "models": {"coco": {"path": "x.onnx"}},
        "cameras": {
            key: {"source": f"{key}.mp4", "models": ["coco"], "name": f"{key.title()} camera"}
            for key in cameras
        },
        "storage": {"database": f"sqlite:///{tmp_path / 'site.db'}"},
        "alerts": dict(alerts),
    }
    config = SiteConfig.model_validate(document)
    return LoadedSite(config=config, path=tmp_path / "site.yaml", base_dir=tmp_path)


make_incident = partial(
    incident_factories.make_incident,
    track=4,
    camera="yard",
    rule="hardhat-required",
    started_at=T0,
    peak=0.8,
)
"""The shared incident factory with this module's camera, rule, track, start and peak."""


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingChannel:
    """A channel that records messages; ``fail`` makes the next sends raise (a
    :class:`DeliveryError`, or any other exception as a channel's bug would)."""

    def __init__(self, name: str, *, needs_state: bool = False) -> None:
        self.name = name
        self.kind = "recording"
        self.needs_evidence = False
        self.needs_state = needs_state
        self.sent: list[AlertMessage] = []
        self.attempts = 0
        self.fail: Exception | None = None
        self.lock = threading.Lock()
        self.closed = False

    def send(self, message: AlertMessage) -> str:
        with self.lock:
            self.attempts += 1
            if self.fail is not None:
                raise self.fail
            self.sent.append(message)
        return "recorded"

    def close(self) -> None:
        self.closed = True
