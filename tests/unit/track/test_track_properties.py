"""Properties: the order of detections within a frame does not change what is tracked."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from safewatch.config.site import TrackerConfig
from safewatch.domain import Detections, Frame, Track
from safewatch.track import CameraTracker

IMAGE = np.zeros((360, 640, 3), np.uint8)
HATS = ("hardhat", "no_hardhat", None)

# One scene: per person a grid cell, a hat label (or none), a vest or not, and a confidence.
person_st = st.tuples(
    st.integers(0, 5),  # grid cell
    st.sampled_from(HATS),
    st.booleans(),  # wears a vest box
    st.floats(0.5, 0.95),  # confidence
)
scene_st = st.lists(person_st, min_size=1, max_size=5, unique_by=lambda p: p[0])


def _rows(
    scene: list[tuple[int, str | None, bool, float]], t: int, drops: set[int]
) -> list[tuple[str, float, float, float, float, float]]:
    rows: list[tuple[str, float, float, float, float, float]] = []
    for k, (cell, hat, vest, conf) in enumerate(scene):
        if k in drops:
            continue
        x = 20 + 100 * cell + 2 * t
        y = 60 + 30 * (cell % 2)
        rows.append(("person", conf, x, y, x + 40, y + 110))
        if hat is not None:
            rows.append((hat, conf - 0.1, x + 10, y - 3, x + 30, y + 15))
        if vest:
            rows.append(("vest", 0.5, x + 3, y + 30, x + 37, y + 65))
    if t % 2:
        rows.append(("vehicle", 0.8, 500, 250, 620, 330))
    return rows


def _det(rows: list[tuple[str, float, float, float, float, float]]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([r[2:] for r in rows], np.float32),
        np.array([r[1] for r in rows], np.float32),
        np.array([r[0] for r in rows]),
    )


def _summary(tracks: tuple[Track, ...]) -> set[tuple[object, ...]]:
    """What a track says, without its id (ids are handed out in input order)."""
    return {(t.label, t.xyxy, tuple(sorted(t.attributes.items()))) for t in tracks}


@settings(max_examples=40, deadline=None)
@given(
    scene=scene_st,
    seed=st.integers(0, 2**32 - 1),
    drops=st.lists(st.sets(st.integers(0, 4), max_size=2), min_size=6, max_size=6),
)
def test_permuting_detections_within_frames_changes_no_box_or_ppe_state(
    scene: list[tuple[int, str | None, bool, float]], seed: int, drops: list[set[int]]
) -> None:
    rng = np.random.default_rng(seed)
    plain = CameraTracker(TrackerConfig(), "cam")
    shuffled = CameraTracker(TrackerConfig(), "cam")
    for t, dropped in enumerate(drops):
        det = _det(_rows(scene, t, dropped))
        perm = rng.permutation(len(det)).astype(np.intp)
        frame = Frame("cam", t, t / 5, 1000.0 + t / 5, IMAGE)
        a = plain.update(det, frame)
        b = shuffled.update(det[perm], frame)
        assert _summary(a.tracks) == _summary(b.tracks)
        assert len({tr.track_id for tr in b.tracks}) == len(b.tracks)
