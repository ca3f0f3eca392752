"""What a site file asks the server to run: each enabled camera's decode worker and the models
its cameras use. Pure functions of the loaded site, so a reload compares them old against new.
"""

from __future__ import annotations

import logging
from pathlib import Path

from safewatch.config.loader import LoadedSite
from safewatch.config.runtime import RuntimeConfig
from safewatch.config.site import CalibrationConfig, ModelConfig, SiteConfig
from safewatch.pipeline.stages import resolved_models, side_by_side_models
from safewatch.runtime.camera_worker import WorkerSpec

__all__ = [
    "IO_TIMEOUT",
    "camera_calibrations",
    "camera_switches",
    "models_to_load",
    "overlap_models",
    "worker_specs",
]

IO_TIMEOUT = 5.0
"""Seconds a decode worker's open or read may block."""


_NOT_THE_WORKERS: dict[str, object] = {
    "recording": None,  # the recorder's (RecordingService.apply)
    "calibration": None,  # the rule engine's (ReloadingEngine.offer_calibrations)
    "name": None,  # display only; the spec's own name, not compared (WorkerSpec.name)
    "privacy": None,  # read per picture from the site in force (RuntimeService._privacy_for)
    "live_url": None,  # the dashboard's (HttpFront.site_changed)
    "labels": {},  # the cluster member's (ClusterOwner._site_changed)
}
"""Camera fields the decode worker never reads, left out of its spec: a reload that edits only
these must not restart the camera, which closed its open incidents ("camera restarted: its
settings changed") and reset its tracks. What the worker or its inference plan read (source,
fps, models, tiling, rtsp_transport, loop, realtime) still restarts it."""


def worker_specs(
    site: LoadedSite,
    decode_log_level: int = logging.WARNING,
    runtime: RuntimeConfig | None = None,
) -> dict[str, WorkerSpec]:
    """The decode worker of every enabled camera of the site.

    Args:
        site: The loaded site file.
        decode_log_level: Logging level of the decode processes.
        runtime: The ``runtime`` block the server runs with (the site's by default). The
            server passes the one it started with: the block applies after a restart, and one
            taken from a reloaded file changed every camera's spec, so editing a watchdog time
            restarted every camera (closing its incidents) while the log said it did not apply.
    """
    runtime = site.config.runtime if runtime is None else runtime
    watchdog = runtime.watchdog
    # Reconnect attempts must come often enough to count as progress for the watchdog.
    slack = watchdog.progress_seconds - watchdog.stall_seconds - IO_TIMEOUT
    reconnect_cap = max(0.5, min(30.0, slack / 2))
    return {
        key: WorkerSpec(
            camera_id=key,
            camera=camera.model_copy(update=_NOT_THE_WORKERS),
            base_dir=site.base_dir,
            motion=runtime.motion,
            stall_seconds=watchdog.stall_seconds,
            reconnect_cap=reconnect_cap,
            freeze_seconds=watchdog.freeze_seconds,
            ring_slots=runtime.ring_slots,
            io_timeout=IO_TIMEOUT,
            log_level=decode_log_level,
            name=camera.name,
        )
        for key, camera in site.config.cameras.items()
        if camera.enabled
    }


def _models_in_use(config: SiteConfig) -> set[str]:
    return {
        model for camera in config.cameras.values() if camera.enabled for model in camera.models
    }


def camera_switches(config: SiteConfig) -> dict[str, bool]:
    """Each camera of the site and whether it is enabled (what rule checks depend on)."""
    return {camera_id: camera.enabled for camera_id, camera in config.cameras.items()}


def camera_calibrations(config: SiteConfig) -> dict[str, CalibrationConfig]:
    """The ``calibration`` block of each calibrated camera (what rules in metres measure with,
    and what rule checks of metres depend on)."""
    return {
        camera_id: camera.calibration
        for camera_id, camera in config.cameras.items()
        if camera.calibration is not None
    }


def models_to_load(site: LoadedSite) -> dict[str, tuple[ModelConfig, Path]]:
    """The models the site's enabled cameras use, with their resolved files."""
    return resolved_models(site, sorted(_models_in_use(site.config)))


def overlap_models(site: LoadedSite) -> dict[str, tuple[ModelConfig, Path]]:
    """The second sessions of the inference worker's overlap lane (``runtime.inference.overlap``).

    The models in use, each with half the cores' threads (audit's split,
    :func:`~safewatch.pipeline.stages.side_by_side_models`); none when overlap is off, when
    fewer than two cameras are enabled (no frame can arrive beside another camera's, so the
    memory of a second session would buy nothing), or when the models cannot be split.
    """
    config = site.config
    enabled = sum(camera.enabled for camera in config.cameras.values())
    if not config.runtime.inference.overlap or enabled < 2:
        return {}
    return side_by_side_models(models_to_load(site)) or {}
