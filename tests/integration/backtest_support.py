"""What the CLI tests of archived footage share: running the CLI, the example site with its models
read straight from the shared assets, and rule edits (audit and backtest, CLI and API)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import av

from assets import ASSETS, asset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_RULES = ROOT / "examples" / "rules"
CLIP = "video/construction_cctv_640x352_24s.mp4"


def safewatch(
    *args: str | Path, cwd: Path | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter, as the console script does (wide, uncoloured)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "safewatch", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env=env,
        check=False,
    )


def write_site(folder: Path, extra: str = "") -> Path:
    """The example site with its models and camera read straight from the shared assets."""
    asset("models/yolox_nano_coco.onnx")
    asset("models/ppe14_yolov8n.onnx")
    site = folder / "site.yaml"
    site.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            site: {{name: Backtest yard, timezone: Europe/Berlin}}
            models:
              coco:
                path: {ASSETS / "models/yolox_nano_coco.onnx"}
                format: yolox
                labels: {{person: person, car: vehicle, truck: vehicle, bus: vehicle}}
              ppe:
                path: {ASSETS / "models/ppe14_yolov8n.onnx"}
                format: yolov8
                labels: {{Hardhat: hardhat, NO-Hardhat: no_hardhat, Safety Vest: vest,
                          NO-Safety Vest: no_vest}}
            cameras:
              yard:
                source: {ASSETS / CLIP}
                fps: 5
                models: [coco, ppe]
            privacy: {{mode: blur}}
            """
        )
        + extra
    )
    return site


def proposal(folder: Path, name: str, edits: dict[str, str]) -> Path:
    """A copy of the example rules with text replaced in ``yard.yaml``."""
    target = folder / name
    shutil.copytree(EXAMPLE_RULES, target)
    path = target / "yard.yaml"
    text = path.read_text()
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)
    return target


DROP_ZONE = "[[0.40, 0.42], [0.74, 0.38], [0.78, 0.95], [0.38, 0.95]]"
FRONT_ONLY = "[[0.40, 0.62], [0.74, 0.62], [0.78, 0.95], [0.38, 0.95]]"
GRACE = "    min_duration: 1s\n    grace: 1s"
NO_GRACE = "    min_duration: 1s\n    grace: 0s"


def truncated_copy(folder: Path) -> Path:
    """The first 5 s of the example clip with its index up front, cut off at 60 % of its bytes:
    it opens and decodes without one error, but only half of its frames are there."""
    from safewatch.ingest.video_trim import trim_video

    short = folder / "short.mp4"
    trim_video(asset(CLIP), short, frames=124)
    whole = folder / "whole.mp4"
    with (
        av.open(str(short)) as source,
        av.open(str(whole), "w", format="mp4", options={"movflags": "faststart"}) as target,
    ):
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    data = whole.read_bytes()
    cut = folder / "truncated.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    return cut
