"""Chain witness alerts in a cluster: one node sends them (an API-serving one), not every
analyzer (N copies per interval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api_support import write_site
from safewatch.config.loader import load_site
from safewatch.runtime.cluster_owner import ClusterOwner, Role
from safewatch.runtime.service import ServeOptions


class Alerts:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def witness(self, witness: Any) -> None:
        self.sent.append(witness)


@pytest.mark.parametrize(("role", "sends"), [("analyzer", False), ("api", True), ("all", True)])
def test_only_api_serving_nodes_send_witness_alerts(
    tmp_path: Path, role: Role, sends: bool
) -> None:
    site = load_site(write_site(tmp_path))
    owner = ClusterOwner(site, ServeOptions(rules=tmp_path / "rules"), role, "node-1")
    alerts = Alerts()
    owner.service._alerts = alerts  # type: ignore[assignment]
    owner.service._witness_alert(object())  # type: ignore[arg-type]
    assert bool(alerts.sent) is sends
