"""Pydantic models of the site file (``safewatch.yaml``).

Strict on purpose (``extra="forbid"``): a misspelt key is an error that names the file and line, not
a silently ignored setting. Every field carries a description; ``docs/`` and ``check-config`` read
them. Loading from YAML (with line numbers and ``${ENV}`` interpolation) lives in
:mod:`safewatch.config.loader`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CalibrationConfig",
    "CameraConfig",
    "ModelConfig",
    "ModelFormat",
    "SiteConfig",
    "SiteInfo",
    "StorageConfig",
    "TrackerConfig",
]

ModelFormat = Literal["auto", "yolov8", "yolov5", "yolox", "detr"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteInfo(_Strict):
    """Who and where: used in reports and to read rule schedules in local time."""

    name: str = Field("safewatch site", description="Site name shown in reports and alerts.")
    timezone: str = Field("UTC", description="IANA time zone of the site, for rule schedules.")


class ModelConfig(_Strict):
    """One ONNX detection model and how its classes map to the site's vocabulary."""

    path: str = Field(
        description="Path to an .onnx file (relative to the site file), or a catalogue name "
        "such as 'yolox_nano' (see `safewatch models list`)."
    )
    format: ModelFormat = Field(
        "auto",
        description="Output layout: yolov8 (also YOLO11), yolov5, yolox, detr; 'auto' reads it "
        "from the model's metadata and output shapes.",
    )
    input_size: int | None = Field(
        None,
        ge=32,
        description="Square network input in pixels; default: the model's fixed size, else 640.",
    )
    class_names: list[str] | None = Field(
        None,
        description="Model class names by index, when the ONNX metadata has none "
        "(YOLOX and DETR exports usually don't; COCO is assumed for 80 classes).",
    )
    labels: dict[str, str] | None = Field(
        None,
        description="Model class name -> site label (person, hardhat, no_hardhat, vest, no_vest, "
        "vehicle, forklift, ...). Classes not listed are dropped. Omitted: keep every class "
        "under its own name, lower-cased.",
    )
    confidence: float = Field(0.25, ge=0.0, le=1.0, description="Minimum confidence.")
    label_confidence: dict[str, float] = Field(
        default_factory=dict,
        description="Per site-label minimum confidence, overriding `confidence`.",
    )
    nms_iou: float = Field(0.45, gt=0.0, le=1.0, description="IoU above which NMS suppresses.")
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers, in order of preference.",
    )
    threads: int = Field(0, ge=0, description="Intra-op threads; 0 lets ONNX Runtime choose.")


class TrackerConfig(_Strict):
    """ByteTrack settings; the defaults suit 5-15 fps CCTV."""

    lost_track_seconds: float = Field(
        2.0, gt=0, description="How long a track survives without a matching detection."
    )
    activation_confidence: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Minimum confidence for a detection to start a track. Tracks start only "
        "from detections above both this and `high_confidence`.",
    )
    high_confidence: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Detections above this are matched first (ByteTrack stage 1); lower ones "
        "only extend existing tracks. 0.6 measured best on PETS09 (bench/tracking).",
    )
    min_iou: float = Field(0.1, ge=0, le=1, description="Minimum IoU to match a track.")
    min_frames: int = Field(2, ge=1, description="Frames a new track needs before it is reported.")
    ppe_window: int = Field(
        5, ge=1, description="Frames of PPE observations voted over per person and item."
    )


class CalibrationConfig(_Strict):
    """Where points of the picture lie on the floor, for distances in metres and speeds.

    Mark four or more points on the floor (tape, pillar feet, bay corners), measure their
    positions in metres from any origin, and find them in the picture. Five or more let the
    reprojection error catch a mistyped point.
    """

    image: tuple[tuple[float, float], ...] = Field(
        min_length=4, description="Points [x, y] in the picture, normalised (0-1, top-left)."
    )
    floor: tuple[tuple[float, float], ...] = Field(
        min_length=4, description="The same points on the floor [X, Y] in metres, same order."
    )
    max_error: float = Field(
        0.25,
        gt=0,
        description="Largest allowed reprojection error in metres (five or more points).",
    )

    @field_validator("image")
    @classmethod
    def _normalised(cls, value: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for x, y in value:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point [{x}, {y}] is not normalised (0 <= x, y <= 1)")
        return value

    @model_validator(mode="after")
    def _solvable(self) -> CalibrationConfig:
        # Imported here: safewatch.rules imports this module.
        from safewatch.rules.calibration import Calibration

        calibration = Calibration.from_points(self.image, self.floor)
        if calibration.max_error > self.max_error:
            worst = int(calibration.errors().argmax())
            raise ValueError(
                f"reprojection error {calibration.max_error:.2f} m at point {worst} exceeds "
                f"max_error {self.max_error} m: check that pair, and that every point is on "
                "the floor"
            )
        return self


class CameraConfig(_Strict):
    """One camera: where its video comes from and how it is analysed."""

    source: str = Field(
        description="File path, rtsp://, rtsps://, http(s):// URL, or a USB device (/dev/video0). "
        "Put credentials in ${ENV_VARS}; they are redacted in every message."
    )
    name: str | None = Field(None, description="Display name; defaults to the camera key.")
    fps: float = Field(5.0, gt=0, le=120, description="Analysis frames per second (sampling).")
    models: list[str] = Field(
        min_length=1, description="Keys of `models` that run on this camera; detections merge."
    )
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    enabled: bool = Field(True, description="Disabled cameras are validated but not run.")
    calibration: CalibrationConfig | None = Field(
        None, description="Picture-to-floor points, for rules in metres (proximity, speed)."
    )

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a model twice")
        return value


class StorageConfig(_Strict):
    """Where incidents and evidence go. Embedded defaults need no server."""

    database: str = Field(
        "sqlite:///safewatch-data/safewatch.db",
        description="SQLAlchemy URL; relative SQLite paths are relative to the site file.",
    )
    evidence_dir: Path = Field(
        Path("safewatch-data/evidence"),
        description="Folder for evidence stills; relative to the site file.",
    )


class SiteConfig(_Strict):
    """The whole site file."""

    version: Literal[1] = Field(1, description="Site file format version.")
    site: SiteInfo = Field(default_factory=SiteInfo)
    models: dict[str, ModelConfig] = Field(description="Detection models by key.")
    cameras: dict[str, CameraConfig] = Field(description="Cameras by key (used as camera_id).")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    @model_validator(mode="after")
    def _cameras_name_known_models(self) -> SiteConfig:
        for key, camera in self.cameras.items():
            for model in camera.models:
                if model not in self.models:
                    known = ", ".join(sorted(self.models)) or "none"
                    raise ValueError(
                        f"camera {key!r} uses model {model!r}, which is not defined "
                        f"(defined: {known})"
                    )
        return self
