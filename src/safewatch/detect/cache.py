"""Detections cached per (footage, models, analysis rate, tiling): a backtest's second run is free.

Inference is nearly all of a backtest's cost (the measured split is in ``bench/backtest.py``),
while a safety officer tries rule change after rule change on the same footage. Detection does not
depend on the rules, so the detections of each analysed frame are stored once, under a key made of
everything that decides them: the footage's content hash (not its name: a file replaced under the
same name is new footage), each model file's hash and its site settings, the analysis rate, the
camera's tiling and this cache's format version. A run whose key matches replays the detections
instead of loading a model; tracking, rules and incidents run as usual.

A cache file holds plain arrays (``numpy.savez``, read back with ``allow_pickle=False``, so a
tampered file cannot run code) plus its key's description, which is checked on load: a file from
another model or footage is refused with a clear error, never used. Files are written to a
temporary name and renamed, so an interrupted run leaves no half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from safewatch.domain import Detections, Frame
from safewatch.errors import ModelError
from safewatch.storage.atomic import atomic_file

__all__ = [
    "CACHE_FORMAT",
    "CacheKey",
    "CachedDetections",
    "DetectionCache",
    "RecordingDetector",
    "ReplayDetector",
    "file_sha256",
]

CACHE_FORMAT = 2
"""Bumped whenever what a cached frame holds, or how detections are computed, changes (2: rotated
files are analysed upright, so detections cached from their sideways frames no longer fit)."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's content, read in 1 MiB chunks (footage can be gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CacheKey:
    """What decides a footage's detections.

    Attributes:
        footage_sha256: Content hash of the video file.
        models: Per model key, its file's hash and the site settings that shape its output.
        fps: Analysis rate (frames sampled per second of video).
        tiling: The camera's tiling settings, or ``None``.
    """

    footage_sha256: str
    models: Mapping[str, Mapping[str, Any]]
    fps: float
    tiling: Mapping[str, Any] | None

    def describe(self) -> dict[str, Any]:
        """The key as JSON-ready data (stored in the cache file and compared on load)."""
        return {
            "format": CACHE_FORMAT,
            "footage_sha256": self.footage_sha256,
            "models": {k: dict(v) for k, v in sorted(self.models.items())},
            "fps": self.fps,
            "tiling": None if self.tiling is None else dict(self.tiling),
        }

    @property
    def digest(self) -> str:
        """A short hash of :meth:`describe`, the cache file's name."""
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class CachedDetections:
    """Every analysed frame's detections of one footage, by frame sequence number."""

    pts: tuple[float, ...]
    detections: tuple[Detections, ...]

    def __len__(self) -> int:
        return len(self.pts)


class _Detector(Protocol):
    def detect(self, frames: Sequence[Frame]) -> list[Detections]: ...


class RecordingDetector:
    """Runs a real detector and keeps what it found, in frame order, for the cache."""

    def __init__(self, inner: _Detector) -> None:
        self._inner = inner
        self._pts: list[float] = []
        self._found: list[Detections] = []

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """Detect with the real detector and record each frame's result."""
        found = self._inner.detect(frames)
        for frame, detections in zip(frames, found, strict=True):
            if frame.seq != len(self._pts):
                raise ModelError(f"frames reached the cache out of order (seq {frame.seq})")
            self._pts.append(frame.pts)
            self._found.append(detections)
        return found

    def recorded(self) -> CachedDetections:
        """What was detected so far."""
        return CachedDetections(tuple(self._pts), tuple(self._found))


class ReplayDetector:
    """Answers from the cache; a frame the cache does not hold is an error, never a guess."""

    def __init__(self, cached: CachedDetections, source: str) -> None:
        self._cached = cached
        self._source = source

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """The cached detections of these frames (matched by sequence number and media time)."""
        out = []
        for frame in frames:
            if (
                frame.seq >= len(self._cached)
                or abs(self._cached.pts[frame.seq] - frame.pts) > 1e-4
            ):
                raise ModelError(
                    f"detection cache {self._source} does not match the footage at frame "
                    f"{frame.seq} (pts {frame.pts:.3f} s); delete it or run with --no-cache"
                )
            out.append(self._cached.detections[frame.seq])
        return out


class DetectionCache:
    """A folder of cached detections, one file per :class:`CacheKey`.

    Args:
        root: The folder (created on first save).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, key: CacheKey) -> Path:
        """Where this key's detections are (or would be) stored."""
        return self.root / f"{key.digest}.npz"

    def load(self, key: CacheKey) -> CachedDetections | None:
        """This key's detections, or ``None`` when none are cached.

        Raises:
            ModelError: The file exists but is unreadable or describes another key (other models,
                other footage, another format): it is never used.
        """
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = json.loads(str(data["key"]))
                pts = data["pts"].astype(np.float64)
                counts = data["counts"].astype(np.int64)
                xyxy = data["xyxy"].astype(np.float32)
                confidence = data["confidence"].astype(np.float32)
                label = data["label"].astype(np.str_)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelError(
                f"detection cache {path} cannot be read ({exc}); delete it to rebuild it"
            ) from exc
        expected = json.loads(json.dumps(key.describe(), sort_keys=True, default=str))
        if stored != expected:
            differs = sorted(k for k in expected if stored.get(k) != expected.get(k))
            raise ModelError(
                f"detection cache {path} was made for other {', '.join(differs)} than this run's; "
                "delete it to rebuild it"
            )
        if counts.sum() != len(xyxy) or len(counts) != len(pts):
            raise ModelError(f"detection cache {path} is inconsistent; delete it to rebuild it")
        ends = np.cumsum(counts)
        starts = ends - counts
        found = tuple(
            Detections(xyxy[a:b], confidence[a:b], label[a:b])
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        )
        return CachedDetections(tuple(pts.tolist()), found)

    def save(self, key: CacheKey, cached: CachedDetections) -> Path:
        """Store this key's detections atomically (temporary file, then rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key)
        parts = cached.detections
        arrays = {
            "key": np.array(json.dumps(key.describe(), sort_keys=True, default=str)),
            "pts": np.asarray(cached.pts, dtype=np.float64),
            "counts": np.asarray([len(d) for d in parts], dtype=np.int64),
            "xyxy": np.concatenate([d.xyxy for d in parts]) if parts else np.zeros((0, 4)),
            "confidence": np.concatenate([d.confidence for d in parts]) if parts else np.zeros(0),
            "label": np.concatenate([d.label for d in parts]) if parts else np.zeros(0, "<U1"),
        }
        with atomic_file(path, suffix=".npz") as out:
            np.savez(out, **arrays)  # type: ignore[arg-type]
        return path
