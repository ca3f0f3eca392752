"""The site file's ``runtime`` block: how ``safewatch serve`` runs the cameras on this machine.

Kept beside :mod:`safewatch.config.site` (which only embeds these models) because it is about the
process, not the site: how frames are decoded, batched, gated and watched, and where the health and
metrics endpoints listen. Every default suits a small CPU-only host with a handful of cameras.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DecodeMode",
    "HttpConfig",
    "InferenceRuntimeConfig",
    "MotionConfig",
    "RuntimeConfig",
    "TilingConfig",
    "WatchdogConfig",
]

DecodeMode = Literal["process", "thread"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InferenceRuntimeConfig(_Strict):
    """The one inference worker that batches frames across cameras."""

    max_batch: int = Field(
        8, ge=1, le=64, description="Most frames (from different cameras) in one detector call."
    )
    max_wait_ms: float = Field(
        10.0,
        ge=0,
        le=1000,
        description="Longest a ready frame waits for other cameras' frames to fill a batch. "
        "A batch also goes as soon as every streaming camera has a frame in it.",
    )
    overlap: bool = Field(
        True,
        description="Infer a frame that arrives while another camera's frame is being inferred "
        "at once, on a second session of each CPU model (half the cores' threads), instead of "
        "after it; a lone frame still runs on the first session. Costs one more session per "
        "model in memory (yolox_nano about 33 MiB, yolov8n about 61 MiB), only on sites with "
        "two or more enabled cameras. On a busy 2-core host with two cameras: frame-to-incident "
        "p95 0.86x at load 4-6, 0.94x over 13 runs up to load 11, for 14 % more CPU per frame "
        "(docs/performance.md). The split is for the whole site: if one model in use has "
        "explicit threads or a GPU provider, no model gets a second session and the lane takes "
        "no frame. A second session that cannot be built leaves the lane idle (logged). "
        "Restart-only, like the rest of runtime.",
    )


class MotionConfig(_Strict):
    """Skip inference on static scenes, re-using the last detections, with a periodic refresh."""

    enabled: bool = Field(True, description="Gate inference on motion.")
    threshold: float = Field(
        0.002,
        ge=0,
        le=1,
        description="Share of (downscaled, blurred) pixels that must change since the last "
        "analysed frame for a frame to count as moving.",
    )
    pixel_threshold: int = Field(
        20, ge=1, le=255, description="Grey-level change that counts a pixel as changed."
    )
    refresh_seconds: float = Field(
        5.0,
        gt=0,
        description="Run inference at least this often on a static scene, so a worker standing "
        "still is seen again (and its track kept alive).",
    )


class TilingConfig(_Strict):
    """Tiled inference for small, distant people: overlapping crops, each at the model's size."""

    columns: int = Field(2, ge=1, le=8, description="Tiles across.")
    rows: int = Field(2, ge=1, le=8, description="Tiles down.")
    overlap: float = Field(
        0.2, ge=0, lt=0.5, description="Share of a tile's size shared with its neighbour."
    )
    full_frame: bool = Field(
        True, description="Also run the whole frame, so people larger than a tile are found."
    )

    @model_validator(mode="after")
    def _more_than_one(self) -> TilingConfig:
        if self.columns * self.rows < 2:
            raise ValueError("tiling needs at least two tiles (columns x rows >= 2)")
        return self


class WatchdogConfig(_Strict):
    """When a camera worker counts as stalled or stuck, and how restarts back off."""

    stall_seconds: float = Field(
        10.0, gt=0, description="No frame for this long: the worker reconnects to the camera."
    )
    freeze_seconds: float = Field(
        60.0,
        ge=0,
        description="A live camera whose picture stays the same, bit for bit, for this long is "
        "'frozen': its frames are withheld from the analysis (the camera counts as down, open "
        "incidents close as for an outage) until the picture changes. A real sensor's noise "
        "changes pixels at least every keyframe, so an unchanged picture is a hung camera or "
        "media server (or a blank one). 0 never looks.",
    )
    progress_seconds: float = Field(
        60.0,
        gt=0,
        description="No progress at all (no frame, no reconnect attempt) for this long: the "
        "worker process is killed and restarted. Must exceed the reconnect backoff.",
    )
    restart_backoff_seconds: float = Field(
        1.0, gt=0, description="First delay before restarting a crashed worker; doubles."
    )
    restart_backoff_max_seconds: float = Field(
        30.0, gt=0, description="Longest delay between restarts of a crashing worker."
    )
    slow_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="A streaming camera analysing fewer than this share of its fps (frames "
        "dropped because analysis cannot keep up) ...",
    )
    slow_seconds: float = Field(
        30.0,
        gt=0,
        description="... for this long makes it not ready, and /readyz degraded, with the "
        "rates in the reason.",
    )
    ppe_min_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A camera whose PPE could be checked for less than this share of the "
        "person-seconds of the last 10 minutes (per item) gets a warning in /readyz and on its "
        "Live tile, and /readyz is degraded: its PPE rules are silent for the rest (docs/ppe.md). "
        "0 turns the warning off.",
    )
    ppe_min_person_seconds: float = Field(
        120.0,
        gt=0,
        description="Person-seconds of an item in the window before its share is judged (a "
        "person walking past is no evidence of a camera that cannot check PPE).",
    )

    @model_validator(mode="after")
    def _progress_after_stall(self) -> WatchdogConfig:
        if self.progress_seconds <= self.stall_seconds:
            raise ValueError(
                f"progress_seconds ({self.progress_seconds}) must exceed stall_seconds "
                f"({self.stall_seconds}): a stalled camera is reconnected before its worker "
                "counts as stuck"
            )
        return self


class HttpConfig(_Strict):
    """Where the dashboard, its API, ``/healthz``, ``/readyz`` and ``/metrics`` listen, and what
    the HTTP edge accepts from whom."""

    host: str = Field("127.0.0.1", description="Address to bind; 0.0.0.0 for every interface.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto headers are believed. Empty (the default): none, not even loopback, "
        "so a client cannot forge its address into the audit log or around login throttling.",
    )
    max_body_bytes: ByteSize = Field(
        ByteSize(1 << 20),
        gt=0,
        description="Largest request body, e.g. 1MiB; larger ones get 413 before they are read. "
        "Video uploads of audit jobs have their own, larger limit.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/24)"
                ) from None
        return value


class RuntimeConfig(_Strict):
    """How ``safewatch serve`` runs on this machine."""

    decode: DecodeMode = Field(
        "process",
        description="process: one decode process per camera (isolated, no shared GIL; frames "
        "reach inference through shared memory); thread: decode threads in the server process "
        "(less memory, for one or two cameras).",
    )
    inference: InferenceRuntimeConfig = Field(default_factory=InferenceRuntimeConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    ring_slots: int = Field(
        4,
        ge=2,
        le=32,
        description="Shared-memory frame slots per camera (process decode). The newest frame is "
        "always in one; more slots only matter when inference falls far behind.",
    )
