"""/readyz under ``serve --cluster``: the member's health degrades readiness with its reason; so
does a refused site file, anywhere, and refused rule files."""

from __future__ import annotations

import threading

import pytest

from safewatch.api.health import ComponentHealth
from safewatch.config.ruleset import RuleSet
from safewatch.config.runtime import WatchdogConfig
from safewatch.rules.reload import RuleSetHolder
from safewatch.runtime.mailbox import FrameMailbox
from safewatch.runtime.metrics import RuntimeMetrics
from safewatch.runtime.status import RuntimeStatus

OK = ComponentHealth(ok=True, message="ok")


def test_a_failing_cluster_member_degrades_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    status = RuntimeStatus(
        FrameMailbox(), RuntimeMetrics(), "thread", WatchdogConfig(), threading.Event()
    )
    monkeypatch.setattr(status, "_database_health", lambda: OK)
    monkeypatch.setattr(status, "_thread_health", lambda _worker, _now: OK)
    assert status.readiness().status == "ready"
    assert status.readiness().cluster is None  # single host: no cluster entry
    health = ComponentHealth(ok=True, message="2 camera(s) owned")
    status.cluster_health = lambda: health
    assert status.readiness().status == "ready"
    health = ComponentHealth(ok=False, message="camera(s) cam-x analysed by no analyzer")
    ready = status.readiness()
    assert ready.status == "degraded"
    assert ready.cluster is not None and "cam-x" in ready.cluster.message


def test_a_refused_site_file_degrades_readiness_and_raises_its_gauge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = RuntimeMetrics()
    status = RuntimeStatus(FrameMailbox(), metrics, "thread", WatchdogConfig(), threading.Event())
    monkeypatch.setattr(status, "_database_health", lambda: OK)
    monkeypatch.setattr(status, "_thread_health", lambda _worker, _now: OK)

    def failing() -> float | None:
        return metrics.registry.get_sample_value("safewatch_site_reload_failing")

    assert (status.readiness().status, failing()) == ("ready", 0)
    status.site_health = ComponentHealth(ok=False, message="site file refused, previous one runs")
    ready = status.readiness()
    assert (ready.status, failing()) == ("degraded", 1)  # was "ready", and no metric said so
    assert not ready.site.ok
    status.site_health = ComponentHealth(ok=True, message="reloaded")
    assert (status.readiness().status, failing()) == ("ready", 0)


def test_refused_rule_files_degrade_readiness_like_a_refused_site_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status = RuntimeStatus(
        FrameMailbox(), RuntimeMetrics(), "thread", WatchdogConfig(), threading.Event()
    )
    monkeypatch.setattr(status, "_database_health", lambda: OK)
    monkeypatch.setattr(status, "_thread_health", lambda _worker, _now: OK)
    holder = status.parts.holder = RuleSetHolder(RuleSet())
    assert status.readiness().status == "ready"
    holder.reject(["rules/a.yaml:3: objects: unknown label"])
    ready = status.readiness()
    # was "ready" with rules ok, while /api/v1/rules/status said ok: false
    assert (ready.status, ready.rules.ok) == ("degraded", False)
    assert "kept generation 1" in ready.rules.message
    holder.offer(RuleSet())
    ready = status.readiness()
    assert (ready.status, ready.rules.ok) == ("ready", True)
