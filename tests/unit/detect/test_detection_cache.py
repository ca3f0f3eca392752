"""The detection cache: exact round trip, refusal of another run's file, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safewatch.detect.cache import (
    CacheKey,
    DetectionCache,
    RecordingDetector,
    ReplayDetector,
    file_sha256,
)
from safewatch.domain import Detections, Frame
from safewatch.errors import ModelError


def frame(seq: int, fps: float = 5.0) -> Frame:
    return Frame("cam", seq, seq / fps, 1000.0 + seq / fps, np.zeros((4, 4, 3), np.uint8))


class CountingDetector:
    """Finds ``seq`` people in frame ``seq``; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frames: list[Frame]) -> list[Detections]:
        self.calls += 1
        return [
            Detections(
                np.array([[i, i, i + 10.5, i + 20.25] for i in range(f.seq)], np.float32),
                np.full(f.seq, 0.5 + f.seq / 100, np.float32),
                np.array(["person", "hardhat"] * f.seq, np.str_)[: f.seq],
            )
            for f in frames
        ]


def key(model_hash: str = "m1") -> CacheKey:
    return CacheKey("f" * 64, {"coco": {"sha256": model_hash, "format": "yolox"}}, 5.0, None)


def test_recorded_detections_come_back_exactly(tmp_path: Path) -> None:
    inner = CountingDetector()
    recording = RecordingDetector(inner)
    frames = [frame(i) for i in range(7)]
    live = recording.detect(frames[:4]) + recording.detect(frames[4:])
    cache = DetectionCache(tmp_path)
    cache.save(key(), recording.recorded())
    loaded = cache.load(key())
    assert loaded is not None
    replayed = ReplayDetector(loaded, "test").detect(frames)
    assert inner.calls == 2
    for a, b in zip(live, replayed, strict=True):
        assert np.array_equal(a.xyxy, b.xyxy)
        assert np.array_equal(a.confidence, b.confidence)
        assert list(a.label) == list(b.label)
    assert [p.name for p in tmp_path.iterdir()] == [cache.path_for(key()).name]


def test_a_key_never_cached_is_a_miss(tmp_path: Path) -> None:
    assert DetectionCache(tmp_path).load(key()) is None


def test_a_file_from_another_model_is_refused(tmp_path: Path) -> None:
    cache = DetectionCache(tmp_path)
    recording = RecordingDetector(CountingDetector())
    recording.detect([frame(0), frame(1)])
    cache.save(key("other-model"), recording.recorded())
    cache.path_for(key("other-model")).rename(cache.path_for(key()))  # misplaced file
    with pytest.raises(ModelError, match=r"was made for other models than this run's"):
        cache.load(key())


def test_a_corrupt_file_is_refused(tmp_path: Path) -> None:
    cache = DetectionCache(tmp_path)
    cache.path_for(key()).write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ModelError, match=r"cannot be read .* delete it"):
        cache.load(key())


def test_replay_refuses_frames_the_cache_does_not_hold(tmp_path: Path) -> None:
    recording = RecordingDetector(CountingDetector())
    recording.detect([frame(0), frame(1)])
    replay = ReplayDetector(recording.recorded(), "c.npz")
    with pytest.raises(ModelError, match=r"does not match the footage at frame 2"):
        replay.detect([frame(2)])
    with pytest.raises(ModelError, match=r"at frame 1"):
        replay.detect([frame(1, fps=10.0)])  # same index, other media time: other sampling


def test_the_key_changes_with_whatever_decides_detections() -> None:
    base = key()
    assert base.digest == key().digest
    assert base.digest != key("m2").digest
    assert base.digest != CacheKey(base.footage_sha256, base.models, 10.0, None).digest
    assert base.digest != CacheKey(base.footage_sha256, base.models, 5.0, {"rows": 2}).digest


def test_file_hash_reads_the_whole_content(tmp_path: Path) -> None:
    path = tmp_path / "v.bin"
    path.write_bytes(b"a" * 3_000_000)
    first = file_sha256(path, chunk=1 << 20)
    path.write_bytes(b"a" * 2_999_999 + b"b")
    assert file_sha256(path) != first
