"""The motion gate: static scenes are skipped, motion passes, slow change adds up."""

from __future__ import annotations

import numpy as np
import pytest

from safewatch.ingest.motion import MotionGate


def scene(offset: int = 0, *, noise: int = 0, seed: int = 0) -> np.ndarray:
    """A 640x352 grey yard with a dark 'worker' 30x80 px at x=100+offset."""
    rng = np.random.default_rng(seed)
    image = np.full((352, 640, 3), 128, np.uint8)
    image[200:280, 100 + offset : 130 + offset] = 30
    if noise:
        jitter = rng.integers(-noise, noise + 1, image.shape)
        image = np.clip(image.astype(int) + jitter, 0, 255).astype(np.uint8)
    return image


def test_the_first_frame_passes_and_an_identical_one_does_not() -> None:
    gate = MotionGate(0.002)
    first = gate.check(scene())
    assert first.moving and first.score == 1.0
    again = gate.check(scene())
    assert not again.moving and again.score == 0.0


def test_sensor_noise_is_static() -> None:
    gate = MotionGate(0.002, pixel_threshold=20)
    gate.check(scene(noise=6, seed=1))
    for seed in range(2, 6):
        assert not gate.check(scene(noise=6, seed=seed)).moving


def test_a_small_worker_walking_is_motion() -> None:
    gate = MotionGate(0.002)
    gate.check(scene(0))
    result = gate.check(scene(12))  # 12 px at 5 fps: a slow walk for a distant worker
    assert result.moving
    assert result.score > 0.002


def test_slow_change_adds_up_against_the_last_passed_frame() -> None:
    gate = MotionGate(0.004)
    gate.check(scene(0))
    verdicts = [gate.check(scene(step)).moving for step in range(1, 12)]
    assert not verdicts[0]  # one pixel is not enough ...
    assert any(verdicts)  # ... but the drift from the reference is


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_threshold_extremes(threshold: float) -> None:
    gate = MotionGate(threshold)
    gate.check(scene(0))
    assert gate.check(scene(0)).moving is (threshold == 0.0)


def test_disabled_gate_passes_everything_and_reset_forgets() -> None:
    off = MotionGate(0.5, enabled=False)
    assert all(off.check(scene()).moving for _ in range(3))
    gate = MotionGate(0.002)
    gate.check(scene())
    gate.reset()
    assert gate.check(scene()).moving


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        MotionGate(1.5)
    with pytest.raises(ValueError, match="pixel_threshold"):
        MotionGate(0.1, pixel_threshold=0)
