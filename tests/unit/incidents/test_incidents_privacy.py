"""Privacy: head regions from person and PPE boxes; blur and pixelate touch only them; config."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from safewatch.config.loader import load_site
from safewatch.config.site import PrivacyConfig
from safewatch.domain import Detections, Track, TrackedFrame
from safewatch.domain.tracks import FACE_HEAD
from safewatch.errors import ConfigError
from safewatch.incidents.privacy import (
    FACE_BELOW_HAT,
    HAT_SHOWN,
    anonymise,
    anonymise_heads,
    head_regions,
)
from safewatch.track.camera import head_from_face

W, H = 640, 360


def tracked(
    tracks: tuple[Track, ...] = (),
    boxes: list[tuple[float, float, float, float]] | None = None,
    labels: list[str] | None = None,
) -> TrackedFrame:
    boxes = boxes or []
    det = Detections(
        xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        confidence=np.full(len(boxes), 0.9, np.float32),
        label=np.array(labels or [], np.str_),
    )
    return TrackedFrame("cam", 0, 0.0, 0.0, W, H, tracks, det)


def person(x1: float, y1: float, x2: float, y2: float, track_id: int = 1) -> Track:
    return Track(track_id, "person", (x1, y1, x2, y2), 0.9)


def noise(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def inside(regions: list[tuple[int, int, int, int]]) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    for x1, y1, x2, y2 in regions:
        mask[y1:y2, x1:x2] = True
    return mask


NO_MARGIN = PrivacyConfig(margin=0.0)


def test_person_without_head_box_hides_the_top_fraction_full_width() -> None:
    regions = head_regions(tracked((person(100, 100, 140, 300),)), NO_MARGIN)
    assert regions == [(100, 100, 140, 150)]  # top 25% of a 200 px tall box


def test_margin_grows_the_region_and_stays_inside_the_frame() -> None:
    config = PrivacyConfig(margin=0.5)
    assert head_regions(tracked((person(100, 100, 140, 300),)), config) == [(80, 75, 160, 175)]
    edge = head_regions(tracked((person(0, 0, 40, 200),)), config)
    assert edge == [(0, 0, 60, 75)]


def test_head_box_replaces_the_top_fraction_of_its_person() -> None:
    frame = tracked((person(100, 100, 200, 400),), [(130, 105, 170, 150)], ["no_hardhat"])
    assert head_regions(frame, NO_MARGIN) == [(130, 105, 170, 150)]


def test_hat_box_reaches_down_over_the_face_and_leaves_the_hat_visible() -> None:
    frame = tracked((person(100, 100, 200, 400),), [(130, 100, 170, 120)], ["hardhat"])
    (region,) = head_regions(frame, NO_MARGIN)
    assert region == (130, round(100 + HAT_SHOWN * 20), 170, round(120 + FACE_BELOW_HAT * 20))
    # A margin grows the region sideways and down, never up over the hat.
    (grown,) = head_regions(frame, PrivacyConfig(margin=0.5))
    assert grown[1] == round(100 + HAT_SHOWN * 20) and grown[3] > region[3]


@pytest.mark.parametrize(
    "face",
    [(300, 120, 320, 140), (300, 120, 332, 160), (300, 120, 360, 160), (300, 0, 332, 40)],
    ids=["square", "tall", "wide", "top-edge"],
)
def test_a_face_subject_has_its_face_hidden_and_its_hair_or_hat_shown(
    face: tuple[float, float, float, float],
) -> None:
    """A face-first PPE subject (``tracker.face_subjects``) is tracked on a head box made from its
    face, reaching above it and stopping inside it: the face itself (square, tall, wide, at the
    frame's top edge) is hidden from the tracker's face box, without a face detector in privacy,
    and the top of the head square (hair, hat) is not hidden."""
    (head,) = np.clip(head_from_face(np.array([face], np.float64)), 0, None)
    box = (float(head[0]), float(head[1]), float(head[2]), float(head[3]))
    subject = Track(5, "person", box, 0.8, ppe_only=True)
    frame = replace(tracked((subject,), [box], [FACE_HEAD]), faces=(face,))
    regions = head_regions(frame, NO_MARGIN)
    hidden = inside(regions)
    x1, y1, x2, y2 = (int(v) for v in face)
    assert hidden[y1:y2, x1:x2].all(), f"{regions} must cover the face {face}"
    if head[1] < y1:
        assert not hidden[int(head[1]) : y1, x1:x2].any(), "the hair or hat above stays visible"


def test_a_face_made_head_box_spares_no_one_else() -> None:
    """A face found on a worker's chest (or another face in front of them) is no head of that
    worker: their own head region is still hidden."""
    (head,) = head_from_face(np.array([[140.0, 180.0, 160.0, 200.0]]))
    box = (float(head[0]), float(head[1]), float(head[2]), float(head[3]))
    frame = tracked((person(100, 100, 200, 400),), [box], [FACE_HEAD])
    assert head_regions(frame, NO_MARGIN) == [(100, 100, 200, 175)]


def test_head_box_of_someone_else_does_not_spare_a_person() -> None:
    # The hat is beside the person, not in the upper half of their box: both are hidden.
    frame = tracked((person(100, 100, 200, 400),), [(400, 100, 440, 120)], ["hardhat"])
    regions = head_regions(frame, NO_MARGIN)
    assert (100, 100, 200, 175) in regions and len(regions) == 2


def test_the_head_of_someone_behind_does_not_spare_the_person_in_front() -> None:
    """In a crowd, B's head lies in the upper half of A's box: it counted as A's, and A's own
    head, not detected, stayed visible. A head now goes to the one person it fits best."""
    a = person(300, 100, 420, 500, track_id=1)  # in front, head not detected
    b = person(380, 145, 470, 420, track_id=2)  # behind, its head box found
    frame = tracked((a, b), [(395, 150, 425, 180)], ["no_hardhat"])
    hidden = inside(head_regions(frame, NO_MARGIN))
    assert hidden[100:135, 300:420].all(), "A's head (the top of its box) is hidden"
    assert hidden[150:180, 395:425].all(), "B's head is hidden"
    assert not hidden[200:, 300:380].any()


def test_a_person_seen_as_track_and_detection_keeps_its_hat_visible() -> None:
    """A person's track box and its detection box are one person: its hat is theirs, and no
    top-fraction region hides the hat of either."""
    frame = tracked(
        (person(100, 100, 200, 400),),
        [(102, 98, 198, 402), (130, 100, 170, 120)],
        ["person", "hardhat"],
    )
    (region,) = head_regions(frame, NO_MARGIN)
    assert region[1] == round(100 + HAT_SHOWN * 20)  # the hat's dome is not hidden


def test_untracked_person_detections_and_other_labels() -> None:
    frame = tracked(
        (),
        [(10, 10, 50, 90), (300, 200, 340, 220), (500, 100, 560, 300)],
        ["person", "vest", "forklift"],
    )
    assert head_regions(frame, NO_MARGIN) == [(10, 10, 50, 30)]  # vest and forklift: no head


def test_off_finds_nothing_and_returns_the_same_image() -> None:
    image = noise()
    frame = tracked((person(100, 100, 140, 300),))
    config = PrivacyConfig(mode="off")
    assert head_regions(frame, config) == []
    assert anonymise_heads(image, frame, config) is image


@pytest.mark.parametrize("mode", ["blur", "pixelate"])
def test_pixels_change_inside_head_regions_only(mode: str) -> None:
    image = noise()
    original = image.copy()
    frame = tracked(
        (person(100, 100, 160, 300), person(400, 50, 480, 330, 2)),
        [(420, 55, 460, 75)],
        ["hardhat"],
    )
    config = PrivacyConfig(mode=mode)  # type: ignore[arg-type]
    regions = head_regions(frame, config)
    out = anonymise_heads(image, frame, config)
    assert np.array_equal(image, original), "the input frame must not be modified"
    mask = inside(regions)
    assert np.array_equal(out[~mask], image[~mask]), "pixels outside head regions changed"
    changed = np.any(out != image, axis=2)[mask].mean()
    assert changed > 0.9, f"only {changed:.0%} of head pixels changed"
    # Hidden means the detail is gone, not just shifted: local contrast collapses.
    for x1, y1, x2, y2 in regions:
        assert out[y1:y2, x1:x2].std() < 0.5 * image[y1:y2, x1:x2].std()


@pytest.mark.parametrize("side", [4, 10, 11])
def test_pixelate_changes_a_small_region(side: int) -> None:
    """Blocks of ``side // 6`` px were 1 px under 12 px: a small face was left as it was."""
    image = noise()
    region = (300, 200, 300 + side, 200 + side)
    out = anonymise(image, [region], "pixelate")
    mask = inside([region])
    changed = np.any(out != image, axis=2)[mask].mean()
    assert changed > 0.9, f"only {changed:.0%} of a {side}x{side} region changed"
    assert np.array_equal(out[~mask], image[~mask])


def test_anonymise_clips_regions_to_the_image() -> None:
    image = noise()
    out = anonymise(image, [(-20, -20, 30, 30), (630, 350, 700, 400)], "pixelate")
    assert out.shape == image.shape
    assert np.array_equal(out[40:, 40:620], image[40:, 40:620])


SITE = """\
version: 1
models:
  coco: {path: m.onnx}
privacy:
  mode: pixelate
  head_fraction: 0.3
cameras:
  dock:
    source: a.mp4
    models: [coco]
  office:
    source: b.mp4
    models: [coco]
    privacy: {mode: "off"}
  gate:
    source: c.mp4
    models: [coco]
    privacy: {margin: 0.4}
"""


def test_site_privacy_with_per_camera_overrides(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    config = load_site(path).config
    assert config.privacy_for("dock") == PrivacyConfig(mode="pixelate", head_fraction=0.3)
    assert config.privacy_for("office").mode == "off"
    assert config.privacy_for("office").head_fraction == 0.3  # unset keys come from the site
    gate = config.privacy_for("gate")
    assert (gate.mode, gate.head_fraction, gate.margin) == ("pixelate", 0.3, 0.4)


def test_privacy_is_on_by_default(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("privacy:\n  mode: pixelate\n  head_fraction: 0.3\n", ""))
    assert load_site(path).config.privacy_for("dock").mode == "blur"


def test_bad_mode_and_short_buffer_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("mode: pixelate", "mode: smudge"))
    with pytest.raises(ConfigError, match=r"site.yaml:5: privacy.mode"):
        load_site(path)
    path.write_text(
        SITE
        + textwrap.dedent("""\
        evidence:
          pre_seconds: 8
          buffer_seconds: 5
        """)
    )
    with pytest.raises(ConfigError, match=r"buffer_seconds .* shorter than pre_seconds"):
        load_site(path)
