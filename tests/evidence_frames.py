"""Synthetic CCTV frames for evidence tests: each frame carries its own index in its pixels.

A clip decoded from disk can then be checked frame by frame: the index read from the pixels says
which frame it was, independent of the timestamps the encoder wrote. The picture is a checkerboard
(fine detail a blur removes, cheap for H.264) with one person whose head is known, and the index
as ten black/white blocks along the bottom edge, away from any head.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from safewatch.domain import Frame, Phase, RuleEvent, Severity, Track, TrackedFrame

__all__ = [
    "CAM",
    "HEAD",
    "PERSON",
    "RULE",
    "T0",
    "H",
    "W",
    "checkerboard",
    "coded_frame",
    "episode_events",
    "event",
    "read_index",
]

T0 = 1_700_000_000.0
W, H = 320, 240
CAM = "line-2"
RULE = "hardhat-required"
PERSON = (120.0, 60.0, 184.0, 200.0)
HEAD = (120, 60, 184, 95)
"""Top 25% of :data:`PERSON` (before the privacy margin)."""
_BITS = 10
_BLOCK = 24
_CODE_Y = H - _BLOCK


def checkerboard() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    board = np.where(((x // 8) + (y // 8)) % 2 == 0, 40, 215).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


_BOARD = checkerboard()


def coded_frame(index: int, fps: float) -> tuple[Frame, TrackedFrame]:
    """Frame ``index`` of a camera at ``fps``, at ``T0 + index / fps``, with its tracker output."""
    image = _BOARD.copy()
    image[_CODE_Y:, :] = 128
    for bit in range(_BITS):
        value = 255 if (index >> bit) & 1 else 0
        image[_CODE_Y + 4 : H - 4, bit * _BLOCK + 4 : (bit + 1) * _BLOCK - 4] = value
    at = T0 + index / fps
    track = Track(4, "person", PERSON, 0.9)
    tracked = TrackedFrame(CAM, index, index / fps, at, W, H, (track,))
    return Frame(CAM, index, index / fps, at, image), tracked


def read_index(image: np.ndarray) -> int:
    """The index :func:`coded_frame` wrote, read back from a (decoded, lossy) image."""
    index = 0
    y = _CODE_Y + _BLOCK // 2
    for bit in range(_BITS):
        x = bit * _BLOCK + _BLOCK // 2
        if int(image[y - 2 : y + 3, x - 2 : x + 3].mean()) > 128:
            index |= 1 << bit
    return index


def event(
    phase: Phase, at: float, started_at: float, confidence: float = 0.7, track: int = 4
) -> RuleEvent:
    return RuleEvent(
        rule_id=RULE,
        rule_kind="ppe",
        camera_id=CAM,
        phase=phase,
        track_ids=(track,),
        started_at=started_at,
        at=at,
        severity=Severity.HIGH,
        confidence=confidence,
        message=f"person #{track} without hardhat",
    )


def episode_events(
    index: int, fps: float, *, started: int, fired: int, ended: int
) -> Sequence[RuleEvent]:
    """The rule events of frame ``index`` for one episode (frame numbers of its milestones)."""
    at = T0 + index / fps
    start = T0 + started / fps
    if index == fired:
        return [event(Phase.STARTED, at, start)]
    if fired < index < ended:
        return [event(Phase.ONGOING, at, start)]
    if index == ended:
        return [event(Phase.ENDED, at, start)]
    return []
