"""Pydantic models of the site file (``safewatch.yaml``).

Strict on purpose (``extra="forbid"``): a misspelt key is an error that names the file and line, not
a silently ignored setting. Every field carries a description; ``docs/`` and ``check-config`` read
them. Loading from YAML (with line numbers and ``${ENV}`` interpolation) lives in
:mod:`safewatch.config.loader`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from safewatch.config.alerts import AlertsConfig
from safewatch.config.cluster import ClusterConfig, check_labels
from safewatch.config.llm import LLMConfig
from safewatch.config.runtime import RuntimeConfig, TilingConfig
from safewatch.config.sources import source_kind
from safewatch.config.tracing import TracingConfig
from safewatch.config.yaml_lines import FieldValueError

__all__ = [
    "MAX_BUFFER_SECONDS",
    "CalibrationConfig",
    "CameraConfig",
    "ClusterConfig",
    "EvidenceConfig",
    "ModelConfig",
    "ModelFormat",
    "PrivacyConfig",
    "PrivacyMode",
    "RecordingConfig",
    "RetentionConfig",
    "S3Config",
    "SiteConfig",
    "SiteInfo",
    "StorageConfig",
    "TrackerConfig",
]

ModelFormat = Literal["auto", "yolov8", "yolov5", "yolox", "detr"]
PrivacyMode = Literal["blur", "pixelate", "off"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteInfo(_Strict):
    """Who and where: used in reports and to read rule schedules in local time."""

    name: str = Field("safewatch site", description="Site name shown in reports and alerts.")
    timezone: str = Field("UTC", description="IANA time zone of the site, for rule schedules.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # Checked on load, not when a schedule or `audit --start` first needs it.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "unknown time zone: use an IANA name such as Europe/Berlin or UTC"
            ) from None
        return value


class GpuConfig(_Strict):
    """GPU execution-provider settings; used only when `providers` names CUDA or TensorRT."""

    device_id: int = Field(0, ge=0, description="CUDA device ordinal.")
    fp16: bool = Field(
        True, description="TensorRT: allow FP16 kernels (about twice FP32's throughput)."
    )
    engine_cache: str | None = Field(
        "trt-cache",
        description="TensorRT engine and timing cache folder (relative to the model file); "
        "building an engine takes minutes, a cached one loads in seconds. null: no cache.",
    )
    max_batch: int = Field(
        32, ge=1, le=32, description="Largest batch the TensorRT optimisation profile covers."
    )


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
        description="Square network input in pixels; default: the model's fixed size, else 640. "
        "For a YOLO model with a dynamic input, a multiple of its largest stride (32); DETR "
        "models take any size.",
    )
    rectangular: bool = Field(
        True,
        description="For models with a dynamic height and width: feed each camera's picture as "
        "the smallest stride-aligned rectangle inside the `input_size` square (640x352 for a "
        "640x352 camera, 55 % of the pixels, the same boxes within rounding). Fixed-shape "
        "models always get their square.",
    )
    class_names: list[str] | None = Field(
        None,
        description="Model class names by index, when the ONNX metadata has none "
        "(YOLOX and DETR exports usually don't; COCO is assumed for 80 classes).",
    )
    labels: dict[str, str] | None = Field(
        None,
        description="Model class name -> site label (person, hardhat, no_hardhat, vest, no_vest, "
        "vehicle, forklift, ...). Classes not listed are dropped; classes mapped to one label "
        "(car, truck, bus -> vehicle) are one class for NMS. Omitted: keep every class "
        "under its own name, lower-cased.",
    )
    confidence: float = Field(0.25, ge=0.0, le=1.0, description="Minimum confidence.")
    label_confidence: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict,
        description="Per site-label minimum confidence, overriding `confidence`.",
    )
    nms_iou: float = Field(0.45, gt=0.0, le=1.0, description="IoU above which NMS suppresses.")
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers, in order of preference.",
    )
    threads: int = Field(0, ge=0, description="Intra-op threads; 0 lets ONNX Runtime choose.")
    gpu: GpuConfig = Field(
        default_factory=GpuConfig,
        description="CUDA / TensorRT options (FP16, engine cache, batch profile).",
    )

    @field_validator("labels")
    @classmethod
    def _labels_keep_something(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # `labels: {}` keeps no class: the model would run on every frame and report nothing,
        # so every rule fed by it would stay silent; most likely a map left half-written.
        if value is not None and not value:
            raise ValueError(
                "is empty, so the model would report nothing; list the classes to keep "
                "(class: label), or leave labels out to keep every class"
            )
        return value


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
    low_score_tracks: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Also track persons detected only below the track-start threshold, from "
        "this score up (e.g. 0.3), in a second tracker that never takes a box the main one "
        "took and needs one more frame to confirm; gives weakly detected workers a PPE "
        "verdict (docs/ppe.md). They are PPE-only subjects: PPE rules see them, zone, "
        "counting, distance, dwell, speed and line rules do not, and the person tracks stay "
        "as without the option. Omitted: such persons stay untracked.",
    )
    head_tracks: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Head-first PPE subjects (docs/ppe.md): a hard-hat or bare-head box that no "
        "person box takes (the person detector missed its wearer) starts a track of its own "
        "from this score up (e.g. 0.3), whose box is the head, so small or crowded workers "
        "still get a verdict. Like low_score_tracks, a PPE-only subject: other rules do not "
        "see it, and a PPE rule's zones place it by the head box's bottom edge. Omitted: only "
        "detected persons carry PPE.",
    )
    head_classifier: str | None = Field(
        None,
        description="Head verification (docs/ppe.md): a head-crop classifier, as a catalogue "
        "name ('head_classifier', shipped with safewatch) or an .onnx path, that looks at each "
        "tracked person's head and calls it hard hat / bare / not visible. Catches bare heads "
        "the PPE detector finds no box for. Omitted: PPE boxes alone.",
    )
    face_subjects: str | None = Field(
        None,
        description="Face-first PPE subjects (docs/ppe.md): a face detector ('yunet') runs on "
        "every analysed frame, and a face no person or head box covers becomes a tracked PPE-only "
        "subject (as low_score_tracks) whose head the head classifier checks (needs "
        "head_classifier). Finds bare heads the "
        "person and PPE models miss; costs one face detector run per frame (~18 ms on a CPU "
        "core at 640x352). Omitted: off.",
    )
    head_thresholds: dict[Literal["hardhat", "bare"], Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        description="Per-class overrides of the head classifier's calibrated probability "
        "thresholds (the model's own are set for 95 % precision on held-out training photos); "
        "calibrate on a site's own labelled photos, never on the photos you judge it by.",
    )
    face_min_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="With face_subjects: faces the face detector scores below this are not used "
        "for PPE (omitted: every face it keeps, from 0.3).",
    )
    face_thresholds: dict[Literal["hardhat", "bare"], Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        description="With face_subjects: head classifier thresholds for face-only subjects (no "
        "person box), over head_thresholds; a stricter bare threshold keeps false calls on faces "
        "of unlabelled or misread people down.",
    )
    face_cover: Literal["person", "head"] = Field(
        "person",
        description="With face_subjects: which faces belong to a tracked person and so become "
        "no subject of their own: 'person', any face inside a tracked person's box; 'head', only "
        "a face in the tracked person's head region (the head classifier's crop), so faces of a "
        "crowd behind a near worker's box still get a verdict.",
    )

    @field_validator("low_score_tracks", "head_tracks", mode="before")
    @classmethod
    def _a_score_not_a_switch(cls, value: object) -> object:
        # `head_tracks: true` would load as the score 1.0, which no detection reaches: the
        # feature silently off. Strings stay allowed (${VAR} values are strings until parsed).
        if isinstance(value, bool):
            raise ValueError("a score from 0 to 1 (e.g. 0.3), not true/false")
        return value

    @model_validator(mode="after")
    def _options_have_their_feature(self) -> TrackerConfig:
        # An option of a feature that is off would be ignored without a word: say so instead.
        if self.face_subjects and not self.head_classifier:
            raise ValueError(
                "face_subjects needs head_classifier (a face subject's verdict comes from the "
                "head classifier): add head_classifier: head_classifier, or remove face_subjects"
            )
        orphans = [
            f"{name} (needs {needs})"
            for name, needs, on in (
                ("head_thresholds", "head_classifier", self.head_classifier),
                ("face_min_score", "face_subjects", self.face_subjects),
                ("face_thresholds", "face_subjects", self.face_subjects),
                ("face_cover", "face_subjects", self.face_subjects),
            )
            if name in self.model_fields_set and not on
        ]
        if orphans:
            raise ValueError(f"set without the feature they tune: {', '.join(orphans)}")
        start = max(self.activation_confidence, self.high_confidence)
        if self.low_score_tracks is not None and self.low_score_tracks >= start:
            raise ValueError(
                f"low_score_tracks ({self.low_score_tracks}) must be below the track start "
                f"({start}, activation_confidence / high_confidence): it tracks the persons "
                "scored between the two"
            )
        return self


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
                raise ValueError(
                    f"point [{x}, {y}] is not normalised (0 <= x, y <= 1): divide x by the "
                    "frame width and y by its height (pixels of a 1920 x 1080 picture: "
                    "x / 1920, y / 1080)"
                )
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


class PrivacyConfig(_Strict):
    """How the heads of people filmed are hidden in evidence stills, clips and annotated video.

    On by default: evidence is shown to people who need not see who was filmed. A camera's own
    ``privacy`` block overrides only the keys it sets. The unblurred original can still be kept,
    encrypted, with ``evidence.keep_originals``.
    """

    mode: PrivacyMode = Field(
        "blur", description="blur (a heavy blur), pixelate (coarse blocks) or off."
    )
    head_fraction: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Top share of a person box taken as the head when no head or hat box "
        "was detected on that person.",
    )
    margin: float = Field(
        0.15, ge=0, le=1, description="Grow each head region by this share of its size per side."
    )
    head_labels: list[str] = Field(
        default_factory=lambda: ["no_hardhat", "head"],
        description="Detection labels whose box covers a whole head (used as is).",
    )
    hat_labels: list[str] = Field(
        default_factory=lambda: ["hardhat", "helmet"],
        description="Detection labels whose box covers a hat: the face below it is hidden too.",
    )
    faces: str | None = Field(
        None,
        description="Face detector run on evidence stills and clips (catalogue name 'yunet', an "
        "imported name or an .onnx path), so faces of people no detector found are hidden too; "
        "the hard hat above a face stays visible. null: head regions from the pipeline's boxes "
        "only.",
    )

    @property
    def face_model(self) -> str | None:
        """The face detector this block runs: ``faces``, unless ``mode`` is off. With privacy off
        nothing is hidden, so no face detector runs; one place says so, for the evidence writer
        and everything that fetches or checks files ahead of it (``serve``, ``audit``,
        ``check-config``), so an offline machine is not asked for a model it never loads."""
        return self.faces if self.mode != "off" else None


class RecordingConfig(_Strict):
    """Continuous recording of the camera's own stream (remuxed, never re-encoded); see
    docs/recording.md. Live sources only (RTSP, HTTP, USB): a file is its own recording."""

    enabled: bool = Field(True, description="Record this camera (the block alone turns it on).")
    segment_seconds: float = Field(
        60.0, ge=1, le=3600, description="Shortest segment; cut at the next keyframe after it."
    )
    max_hours: float | None = Field(
        72.0, gt=0, description="Delete segments older than this (null: no age limit)."
    )
    max_gb: float | None = Field(
        None, gt=0, description="Keep this camera's recording under this many GB (null: no limit)."
    )


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
    privacy: PrivacyConfig | None = Field(
        None, description="Overrides of the site's `privacy` block for this camera."
    )
    loop: bool = Field(
        False,
        description="Video files only: under `safewatch serve`, replay the file forever at its "
        "native rate, as a simulated live camera (without it the camera ends with the file).",
    )
    realtime: bool = Field(
        True,
        description="Video files only: under `safewatch serve` a file plays at its native rate, "
        "stamped with the wall clock, and frames the analysis cannot keep up with are dropped, "
        "as with a camera. false: every sampled frame is analysed, none dropped, on the file's "
        "own clock (its creation time), exactly as `safewatch audit` reads it: an archive "
        "replayed through the live server.",
    )
    tiling: TilingConfig | None = Field(
        None, description="Tiled inference for small, distant people (costs one run per tile)."
    )
    recording: RecordingConfig | None = Field(
        None,
        description="Record the camera's stream continuously into `storage.recordings_dir`; "
        "segments an unreviewed incident needs are never deleted.",
    )
    live_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Dashboard live view: a media server's player for this camera (e.g. "
        "MediaMTX's WebRTC page http://host:8889/yard/ or an HLS .m3u8 URL), shown under the "
        "overlays instead of the analysed JPEG frames.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Under `serve --cluster`: only analyzers with all these labels and values "
        "(their `cluster.labels`) may analyse this camera, e.g. {gpu: 'true'}.",
    )

    @model_validator(mode="after")
    def _file_only_flags(self) -> CameraConfig:
        kind = source_kind(self.source.strip())
        if kind != "file":
            flags = [f for f, on in (("loop", self.loop), ("realtime", not self.realtime)) if on]
            if flags:
                raise ValueError(
                    f"{' and '.join(flags)} applies to video files only, not to this {kind} camera"
                )
        return self

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a model twice")
        return value

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value)


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
    recordings_dir: Path = Field(
        Path("safewatch-data/recordings"),
        description="Folder of the cameras' continuous recordings; relative to the site file.",
    )
    recordings_min_free_gb: float | None = Field(
        2.0,
        ge=0,
        description="Free space retention keeps on the file system of `recordings_dir` (the "
        "database and evidence share it by default): below it, the oldest segments not needed "
        "by an unreviewed incident go, whatever the cameras' own limits (null: no guard).",
    )
    recordings_protect_days: float | None = Field(
        30.0,
        gt=0,
        description="How long after it ended an unreviewed (open or acknowledged) incident keeps "
        "its recorded footage from retention (null: until it is closed).",
    )
    evidence_s3: S3Config | None = Field(
        None,
        description="Keep evidence in this S3-compatible bucket (AWS S3, MinIO) instead of "
        "`evidence_dir`. Needs `pip install 'safewatch[s3]'`.",
    )
    archive_folders: list[Path] = Field(
        default_factory=list,
        description="Folders of archived footage the dashboard may read for audits and "
        "backtests ('Test this change'); relative to the site file. Empty: uploads only.",
    )
    evidence_shared: bool = Field(
        False,
        description="`evidence_dir` is a folder every analyzer of a cluster reaches (NFS, a "
        "common volume): lets `serve --cluster` keep evidence there instead of in S3.",
    )
    recordings_shared: bool = Field(
        False,
        description="`recordings_dir` is a folder every node of a cluster reaches (NFS, a common "
        "volume): lets `serve --cluster` record cameras (each camera's owner writes its "
        "segments there, any API node serves them).",
    )
    witness_seconds: float = Field(
        600.0,
        gt=0,
        description="How often `serve` writes the tamper-evidence chain's head to the evidence "
        "store (when it moved; also at a clean stop), so `safewatch verify` catches the newest "
        "entries cut out of the database.",
    )


class S3Config(_Strict):
    """An S3-compatible bucket for evidence; see docs/deployment-storage.md for MinIO."""

    bucket: str = Field(min_length=3, max_length=63, description="Bucket name (must exist).")
    prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._/-]*$",
        description="Key prefix inside the bucket, e.g. 'north-yard/', so sites can share one.",
    )
    endpoint_url: str | None = Field(
        None, description="S3-compatible server, e.g. http://minio:9000; omit for AWS S3."
    )
    region: str | None = Field(None, description="Region; MinIO accepts any, e.g. us-east-1.")
    access_key_id: str | None = Field(
        None,
        description="Access key; omit to use boto3's chain (AWS_ACCESS_KEY_ID, instance role). "
        "Put it in ${ENV}.",
    )
    secret_access_key: SecretStr | None = Field(
        None, description="Secret key; omit to use boto3's chain. Put it in ${ENV}."
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="'path' for MinIO and most self-hosted servers; 'auto' for AWS."
    )

    @model_validator(mode="after")
    def _keys_together(self) -> S3Config:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        return self


class RetentionConfig(_Strict):
    """How long evidence is kept. Evidence of open or acknowledged incidents is never removed.

    Removals are recorded in the tamper-evidence chain (``safewatch verify`` tells them from
    deletions) and run oldest incident first.
    """

    days: float | None = Field(
        None,
        gt=0,
        description="Remove evidence of resolved and false-positive incidents that ended more "
        "than this many days ago; omit to keep it forever.",
    )
    max_bytes: ByteSize | None = Field(
        None,
        gt=0,
        description="Most evidence to keep, e.g. 500GB or 200GiB; beyond it the oldest evidence "
        "of closed incidents goes first. Omit for no limit.",
    )


MAX_BUFFER_SECONDS = 120.0
"""Most ``evidence.buffer_seconds`` (a buffer is held per camera, in memory)."""


class EvidenceConfig(_Strict):
    """Clips and stills kept as evidence of each incident.

    A clip covers ``[start - pre_seconds, end + post_seconds]`` of the incident, from a bounded
    per-camera buffer of recent frames (as far back as it reaches when the rule fires, which
    only the rules know: :mod:`~safewatch.config.ruleset` warns when it falls short); it is
    encoded on a background thread (H.264 MP4 that browsers play), so writing evidence never
    holds up analysis.
    """

    clips: bool = Field(True, description="Write an MP4 clip per incident.")
    pre_seconds: float = Field(
        5.0, ge=0, le=60, description="Seconds of video kept before the incident starts."
    )
    post_seconds: float = Field(
        5.0, ge=0, le=60, description="Seconds of video kept after the incident ends."
    )
    buffer_seconds: float = Field(
        10.0,
        gt=0,
        le=MAX_BUFFER_SECONDS,
        description="Seconds of recent frames buffered per camera. A rule fires `min_duration` "
        "after the episode started, so this must cover pre_seconds plus that delay; clips are "
        "clamped to what the buffer holds (rules it cannot cover are warned about).",
    )
    buffer_format: Literal["jpeg", "raw"] = Field(
        "jpeg",
        description="How buffered frames are held: jpeg (about 20x less memory, encoded on the "
        "evidence thread) or raw BGR (no encoding, several MB per frame).",
    )
    buffer_max_mb: float = Field(
        128.0, gt=0, description="Memory cap of one camera's buffer in MiB; oldest frames go first."
    )
    clip_fps: float | None = Field(
        None,
        gt=0,
        le=60,
        description="Frame rate of clips; default: every analysed frame (the camera's fps). "
        "Lower values thin the clip; higher ones cannot add frames.",
    )
    max_clip_seconds: float = Field(
        300.0,
        gt=0,
        description="Longest clip, counted from its first frame; a longer incident's clip stops "
        "there.",
    )
    annotate_clips: bool = Field(
        True, description="Draw boxes, PPE states and zones on clips (heads are hidden first)."
    )
    keep_originals: bool = Field(
        False,
        description="Also keep the unblurred still and clip, encrypted (AES-256-GCM) with the "
        "key in the environment variable named by `key_env`; revealed only by an explicit, "
        "logged action (`safewatch evidence reveal`).",
    )
    key_env: str = Field(
        "SAFEWATCH_EVIDENCE_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the originals' key: 32 bytes, base64.",
    )

    @model_validator(mode="after")
    def _buffer_covers_pre(self) -> EvidenceConfig:
        if self.clips and self.buffer_seconds < self.pre_seconds:
            raise ValueError(
                f"buffer_seconds ({self.buffer_seconds}) is shorter than pre_seconds "
                f"({self.pre_seconds}): clips could never start that early"
            )
        return self


CAMERA_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""What a camera id looks like (it names folders: recordings, evidence)."""
CameraKey = Annotated[str, Field(pattern=CAMERA_KEY_PATTERN, max_length=128)]
"""A camera's key: the camera id in incidents, URLs, evidence folders and metrics. Any string used
to pass, but the API's paths and filters accept only these characters (``Süd tor`` passed
``check-config`` and then could not be listed, filtered or reported on); the name shown to
people goes in ``name``."""


class SiteConfig(_Strict):
    """The whole site file."""

    version: Literal[1] = Field(1, description="Site file format version.")
    site: SiteInfo = Field(default_factory=SiteInfo)
    models: dict[str, ModelConfig] = Field(description="Detection models by key.")
    cameras: dict[CameraKey, CameraConfig] = Field(
        description="Cameras by key (used as camera_id): letters, digits, '_', '.', '-'."
    )
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    tracing: TracingConfig | None = Field(
        None,
        description="Export OpenTelemetry spans over OTLP (docs/cluster.md); null: none, "
        "unless OTEL_EXPORTER_OTLP_ENDPOINT is set.",
    )
    llm: LLMConfig | None = Field(
        None, description="Language model that drafts rules from plain English (docs/llm.md)."
    )
    alerts: AlertsConfig = Field(
        default_factory=AlertsConfig,
        description="Who hears about incidents, how and when (docs/alerts.md).",
    )
    cluster: ClusterConfig = Field(
        default_factory=ClusterConfig,
        description="How analyzers share the cameras under `serve --cluster` (docs/cluster.md).",
    )

    def privacy_for(self, camera_id: str) -> PrivacyConfig:
        """The site's privacy settings with the keys this camera's own block sets."""
        camera = self.cameras.get(camera_id)
        if camera is None or camera.privacy is None:
            return self.privacy
        override = camera.privacy
        return self.privacy.model_copy(
            update={key: getattr(override, key) for key in override.model_fields_set}
        )

    @model_validator(mode="after")
    def _alert_routes_name_known_cameras(self) -> SiteConfig:
        # FieldValueError: reported at the entry itself, not at the site file's first line.
        for r, route in enumerate(self.alerts.routes):
            for c, camera in enumerate(route.match.cameras):
                if camera not in self.cameras:
                    known = ", ".join(sorted(self.cameras)) or "none"
                    raise FieldValueError(
                        f"alert route {route.id!r} matches camera {camera!r}, which is not "
                        f"defined (defined: {known})",
                        *("alerts", "routes", r, "match", "cameras", c),
                    )
        return self

    @model_validator(mode="after")
    def _cameras_name_known_models(self) -> SiteConfig:
        # FieldValueError: reported at the entry itself, not at the site file's first line.
        for key, camera in self.cameras.items():
            for index, model in enumerate(camera.models):
                if model not in self.models:
                    known = ", ".join(sorted(self.models)) or "none"
                    raise FieldValueError(
                        f"camera {key!r} uses model {model!r}, which is not defined "
                        f"(defined: {known})",
                        *("cameras", key, "models", index),
                    )
        return self
