"""A site reload logs the blocks it does not apply (they apply after a restart)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from runtime_fakes import service_without_workers

from api_support import write_site


def test_a_changed_cluster_block_is_reported_as_applying_after_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The cluster member fixes its capacity, labels and lease length when it joins: a reload
    that changed the ``cluster:`` block was silently ignored (no warning, unlike storage or
    retention), so an operator believed the new capacity was in force."""
    path = write_site(tmp_path, extra={"cluster": {"capacity": 1, "lease_seconds": 10}})
    service, _ = service_without_workers(path, cluster=True)
    site = yaml.safe_load(path.read_text())
    site["cluster"] = {"capacity": 4, "lease_seconds": 30, "labels": {"gpu": "true"}}
    path.write_text(yaml.safe_dump(site))
    with caplog.at_level(logging.WARNING, logger="safewatch.runtime.service"):
        assert service.reload_site() is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "site reload: the 'cluster' block changed; it applies after a restart" in warnings
    assert service.status.site_health.ok

    caplog.clear()  # an unchanged cluster block is not reported
    with caplog.at_level(logging.WARNING, logger="safewatch.runtime.service"):
        assert service.reload_site() is not None
    assert not [r for r in caplog.records if "'cluster' block" in r.getMessage()]


def test_a_changed_runtime_block_restarts_no_camera(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The workers' specs took the motion gate, watchdog times and ring slots from the
    reloaded file: any edit of ``runtime`` restarted every camera (closing its incidents) while
    the log said the block applies after a restart. The specs keep the block the server
    started with."""
    path = write_site(tmp_path)
    service, supervisor = service_without_workers(path)
    started = service._specs(service.site)
    site = yaml.safe_load(path.read_text())
    site["runtime"] = {
        "motion": {"threshold": 0.05},
        "watchdog": {"stall_seconds": 20, "freeze_seconds": 30, "progress_seconds": 90},
        "ring_slots": 8,
    }
    path.write_text(yaml.safe_dump(site))
    with caplog.at_level(logging.WARNING, logger="safewatch.runtime.service"):
        assert service.reload_site() is not None
    assert service.site.config.runtime.ring_slots == 8  # the file was taken
    assert supervisor.applied == [started]  # and no camera's worker changed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "site reload: the 'runtime' block changed; it applies after a restart" in warnings


def test_fields_the_decode_worker_never_reads_restart_no_camera(tmp_path: Path) -> None:
    """A camera's display name, privacy override, live view URL and cluster labels changed its
    worker's spec, so a rename restarted the camera, closed its open incidents ("camera
    restarted: its settings changed") and reset its tracks. The evidence reads the privacy of
    the site in force per picture, the dashboard the live URL, the cluster member the labels;
    the name reaches the status pages through the spec without making it differ."""
    path = write_site(tmp_path)
    service, supervisor = service_without_workers(path)
    started = service._specs(service.site)
    site = yaml.safe_load(path.read_text())
    site["cameras"]["yard"].update(
        name="Yard 02",
        privacy={"mode": "off"},
        live_url="http://media:8889/yard/",
        labels={"gpu": "true"},
    )
    path.write_text(yaml.safe_dump(site))
    assert service.reload_site() is not None
    assert supervisor.applied == [started]
    assert supervisor.applied[0]["yard"].name == "Yard 02"
    assert service._privacy_for("yard").mode == "off"  # in force from the next picture
    site["cameras"]["yard"]["fps"] = 2  # what the worker reads still restarts it
    path.write_text(yaml.safe_dump(site))
    assert service.reload_site() is not None
    assert supervisor.applied[1] != started


def test_the_privacy_block_applies_at_once_and_a_missing_face_model_refuses_the_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Evidence reads the privacy of the site in force per picture, so a reloaded ``privacy``
    block applied from the next picture while the log said "after a restart" (an operator who
    turned it off was told it was still on). A face model it names that is not there failed
    every evidence still from then on; it now refuses the reload."""
    path = write_site(tmp_path)
    service, _ = service_without_workers(path)
    site = yaml.safe_load(path.read_text())
    site["privacy"] = {"mode": "pixelate"}
    path.write_text(yaml.safe_dump(site))
    with caplog.at_level(logging.WARNING, logger="safewatch.runtime.service"):
        assert service.reload_site() is not None
    assert not [r for r in caplog.records if "'privacy' block" in r.getMessage()]
    assert service._privacy_for("yard").mode == "pixelate"
    site["privacy"] = {"mode": "blur", "faces": str(tmp_path / "no-such-faces.onnx")}
    path.write_text(yaml.safe_dump(site))
    assert service.reload_site() is None
    assert "no-such-faces.onnx" in service.status.site_health.message
    assert service._privacy_for("yard").mode == "pixelate"  # the previous site stays
