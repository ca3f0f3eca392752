"""The overlap lane's second sessions: which sites get them, and that they find what the first
session finds (so a frame's detections do not depend on the lane that inferred it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import yaml

from assets import asset
from safewatch.config.loader import LoadedSite, load_site
from safewatch.detect.pool import DetectorPool
from safewatch.domain import Frame
from safewatch.runtime.site_specs import models_to_load, overlap_models

CLIP = "video/construction_cctv_640x352_24s.mp4"
CORES = len(os.sched_getaffinity(0))
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="one core: nothing to split")


def site(folder: Path, cameras: int = 2, overlap: bool = True, **model: Any) -> LoadedSite:
    config = {
        "version": 1,
        "models": {
            "coco": {
                "path": str(asset("models/yolox_nano_coco.onnx")),
                "format": "yolox",
                **model,
            }
        },
        "cameras": {
            f"cam{i}": {"source": f"rtsp://127.0.0.1:1/{i}", "fps": 5, "models": ["coco"]}
            for i in range(cameras)
        },
        "runtime": {"inference": {"overlap": overlap}},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_site(path)


@needs_two_cores
def test_two_cameras_get_a_second_session_with_half_the_cores(tmp_path: Path) -> None:
    (key,) = overlap_models(site(tmp_path))
    config, path = overlap_models(site(tmp_path))[key]
    assert key == "coco" and config.threads == CORES // 2
    assert path == models_to_load(site(tmp_path))["coco"][1]
    assert models_to_load(site(tmp_path))["coco"][0].threads == 0  # the first keeps them all


@needs_two_cores
@pytest.mark.parametrize(
    ("cameras", "overlap", "model"),
    [
        (1, True, {}),  # no other camera's frame to overlap with
        (2, False, {}),  # switched off
        (2, True, {"threads": 2}),  # the user sized the session
        (2, True, {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}),
    ],
)
def test_no_second_session(
    tmp_path: Path, cameras: int, overlap: bool, model: dict[str, Any]
) -> None:
    assert overlap_models(site(tmp_path, cameras, overlap, **model)) == {}


@needs_two_cores
def test_the_second_session_finds_what_the_first_finds(tmp_path: Path) -> None:
    loaded = site(tmp_path)
    first = DetectorPool(models_to_load(loaded)).get("coco")
    second = DetectorPool(overlap_models(loaded)).get("coco")
    frames = []
    with av.open(str(asset(CLIP))) as container:
        for index, picture in enumerate(container.decode(video=0)):
            if index % 40 == 0:
                frames.append(
                    Frame("cam0", index, index / 25, 1.7e9, picture.to_ndarray(format="bgr24"))
                )
            if len(frames) == 6:
                break
    found_first, found_second = first.detect(frames), second.detect(frames)
    assert sum(len(d) for d in found_first) > 6, "the clip should show people"
    for one, two in zip(found_first, found_second, strict=True):
        assert one.label.tolist() == two.label.tolist()
        np.testing.assert_allclose(one.xyxy, two.xyxy, atol=0.05)
        np.testing.assert_allclose(one.confidence, two.confidence, atol=1e-4)
