"""``check-config`` loads every model and runs it once on a blank frame (issue 13).

Before, ``check-config`` only resolved model paths: a model whose outputs are NaN (a broken export
or quantisation) passed, and ``serve`` then ran it seeing nothing, since NaN never beats a
threshold. Synthetic ONNX models (``onnx_fakes``) say exactly what they output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from onnx_fakes import constant_model

from assets import asset
from safewatch.config.site import ModelConfig
from safewatch.detect.catalogue import CACHE_ENV, MIRROR_ENV
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.errors import ModelError

SAFEWATCH = Path(sys.executable).with_name("safewatch")
ANCHORS = 84  # 64x64 input, strides 8/16/32


def hardhat_model(path: Path, value: float) -> Path:
    """A YOLOv8-layout model (4 box rows, 2 classes) that outputs ``value`` everywhere."""
    out = np.full((4 + 2, ANCHORS), value, np.float32)
    meta = {"names": "{0: 'Hardhat', 1: 'NO-Hardhat'}", "task": "detect", "imgsz": "[64, 64]"}
    return constant_model(path, {"output0": out}, metadata=meta)


def tiny_video(path: Path) -> Path:
    """A three-frame MPEG-4 file: check-config opens a file camera's source as a video."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def site_with(folder: Path, model: Path) -> Path:
    site = {
        "version": 1,
        "models": {"ppe": {"path": str(model), "format": "yolov8"}},
        "cameras": {"yard": {"source": "yard.mp4", "models": ["ppe"]}},
    }
    tiny_video(folder / "yard.mp4")
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def check_config(
    site: Path, *more: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SAFEWATCH), "check-config", str(site), *more],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_model_with_non_finite_outputs_is_refused_on_load(tmp_path: Path, value: float) -> None:
    path = hardhat_model(tmp_path / "bad.onnx", value)
    with pytest.raises(ModelError, match=r"model 'ppe': output 'output0' has 504 of 504 values"):
        OnnxDetector(ModelConfig(path=str(path), format="yolov8"), path, "ppe")


def test_check_config_refuses_a_nan_model_with_one_clear_error(tmp_path: Path) -> None:
    result = check_config(site_with(tmp_path, hardhat_model(tmp_path / "nan.onnx", np.nan)))
    assert result.returncode == 2, result.stdout
    assert "model 'ppe': output 'output0' has 504 of 504 values NaN or infinite on a plain " \
        "grey frame" in result.stderr  # fmt: skip
    assert "Traceback" not in result.stderr
    assert "ok" not in result.stdout


def test_check_config_runs_a_sound_model_on_a_blank_frame(tmp_path: Path) -> None:
    result = check_config(site_with(tmp_path, hardhat_model(tmp_path / "ok.onnx", 0.0)))
    assert result.returncode == 0, result.stderr
    assert (
        "yolov8, 2 classes, input 64x64, site labels hardhat, no_hardhat; a blank frame ran in"
        in result.stdout
    )
    assert "(0 detection(s))" in result.stdout


def test_check_config_checks_rules_against_the_labels_a_loaded_model_produces(
    tmp_path: Path,
) -> None:
    """The model's classes come only from its metadata: ``rules validate`` cannot judge them,
    ``check-config`` loads the model and can."""
    site = site_with(tmp_path, hardhat_model(tmp_path / "ok.onnx", 0.0))
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - {id: vests, kind: ppe, require: [vest]}\n")
    result = check_config(site, "--rules", str(rules))
    assert result.returncode == 2, result.stdout
    assert f"{rules}:3: rules[0].require[0]: rule 'vests' needs 'vest' or 'no_vest' but camera " \
        "'yard' has no model producing it (models ppe produce: hardhat, no_hardhat)" \
        in result.stderr  # fmt: skip
    rules.write_text("version: 1\nrules:\n  - {id: hats, kind: ppe, require: [hardhat]}\n")
    result = check_config(site, "--rules", str(rules))  # hard hats seen, but nobody wearing one
    assert result.returncode == 2, result.stdout
    assert "rules[0].objects: rule 'hats' needs 'person' but camera 'yard'" in result.stderr
    assert "require" not in result.stderr


def test_check_config_loads_the_face_detector_privacy_names(tmp_path: Path) -> None:
    """A wrong ``privacy.faces`` model used to pass here, and then every audit incident came
    out without its still and clip (the evidence thread only logged the error)."""
    model = hardhat_model(tmp_path / "ok.onnx", 0.0)
    site = site_with(tmp_path, model)
    data = yaml.safe_load(site.read_text())
    data["privacy"] = {"faces": "ok.onnx"}  # relative to the site file, and no face detector
    site.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [str(SAFEWATCH), "check-config", str(site)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=Path(__file__).parent,  # not the site's folder
    )
    assert result.returncode == 2, result.stdout
    assert f"privacy.faces: {model}: not a YuNet face detector" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_checks_what_only_a_disabled_camera_uses_when_it_can_be_had(
    tmp_path: Path,
) -> None:
    """``serve`` pulls only what enabled cameras use; check-config resolved every model and face
    detector, so a disabled camera's catalogue model failed it ("not in the cache yet") on any
    machine that had not pulled it. Now it is pulled and checked (the pre-flight for the day
    the camera is switched on); offline it is listed as not checked, and the check passes."""
    site = site_with(tmp_path, hardhat_model(tmp_path / "ok.onnx", 0.0))
    data = yaml.safe_load(site.read_text())
    data["models"]["spare"] = {"path": "yolox_nano"}
    data["cameras"]["later"] = {
        "source": "yard.mp4",
        "models": ["spare"],
        "enabled": False,
        "privacy": {"faces": "yunet"},
    }
    site.write_text(yaml.safe_dump(data))
    cache, offline = tmp_path / "cache", tmp_path / "offline"
    offline.mkdir()
    env = {**os.environ, CACHE_ENV: str(cache), MIRROR_ENV: str(offline)}
    result = check_config(site, env=env)
    assert result.returncode == 0, result.stderr
    assert "model spare: not checked (used by no enabled camera): the mirror has no copy of " \
        "yolox_nano" in result.stdout  # fmt: skip
    assert "privacy.faces yunet: not checked (used by no enabled camera): the mirror has no " \
        "copy of yunet" in result.stdout  # fmt: skip
    assert "model ppe: " in result.stdout

    env[MIRROR_ENV] = str(asset("models").parent)
    result = check_config(site, env=env)
    assert result.returncode == 0, result.stderr
    assert f"model spare: {cache / 'yolox_nano.onnx'}: yolox, 80 classes" in result.stdout
    assert f"privacy.faces yunet: {cache / 'yunet.onnx'}: loads" in result.stdout


@pytest.mark.parametrize("content", [b"", b"hello\n", b"\x00\x00\x00\x18ftypisom" + bytes(64)])
def test_check_config_refuses_a_file_source_that_is_not_a_video(
    tmp_path: Path, content: bytes
) -> None:
    """An empty, non-video or truncated (no index) file camera source passed check-config,
    which only looked for the file; serve then dropped the camera for good. It is now opened
    as ``audit`` opens its videos, and named."""
    site = site_with(tmp_path, hardhat_model(tmp_path / "ok.onnx", 0.0))
    (tmp_path / "yard.mp4").write_bytes(content)
    result = check_config(site)
    assert result.returncode == 2, result.stdout
    assert f"camera 'yard': source 'yard.mp4': cannot open video file {tmp_path / 'yard.mp4'}" \
        in " ".join(result.stderr.split())  # fmt: skip
    assert "Traceback" not in result.stderr


def test_check_config_names_the_setting_and_the_metadata_a_head_classifier_lacks(
    tmp_path: Path,
) -> None:
    """A detection model given as the head classifier was "<path>: not a head classifier
    ('classes')": no setting named, and a bare KeyError for the reason."""
    model = hardhat_model(tmp_path / "ok.onnx", 0.0)
    site = site_with(tmp_path, model)
    data = yaml.safe_load(site.read_text())
    data["tracker"] = {"head_classifier": str(model)}
    site.write_text(yaml.safe_dump(data))
    result = check_config(site)
    assert result.returncode == 2, result.stdout
    assert f"tracker.head_classifier: {model}: not a head classifier (no metadata ['classes', " \
        "'input_size', 'thresholds'])" in " ".join(result.stderr.split())  # fmt: skip
    assert "Traceback" not in result.stderr


def test_check_config_refuses_a_file_source_that_does_not_exist(tmp_path: Path) -> None:
    """A typo in a file camera's path passed check-config and only ``serve`` refused it. Camera
    URLs are not connected to; a disabled camera's missing file is said, not failed."""
    site = site_with(tmp_path, hardhat_model(tmp_path / "ok.onnx", 0.0))
    data = yaml.safe_load(site.read_text())
    data["cameras"]["yard"]["source"] = "clips/typo.mp4"
    data["cameras"]["gate"] = {"source": "rtsp://127.0.0.1:1/none", "models": ["ppe"]}
    data["cameras"]["old"] = {"source": "gone.mp4", "models": ["ppe"], "enabled": False}
    site.write_text(yaml.safe_dump(data))
    result = check_config(site)
    assert result.returncode == 2, result.stdout
    assert "camera 'yard': source 'clips/typo.mp4': no file at " \
        f"{tmp_path / 'clips' / 'typo.mp4'}" in " ".join(result.stderr.split())  # fmt: skip
    assert "Traceback" not in result.stderr

    (tmp_path / "clips").mkdir()
    tiny_video(tmp_path / "clips" / "typo.mp4")
    result = check_config(site)
    assert result.returncode == 0, result.stderr
    assert "camera gate: 1 model(s)" in result.stdout
    assert "(disabled; not usable yet: source 'gone.mp4': no file at " \
        f"{tmp_path / 'gone.mp4'})" in result.stdout  # fmt: skip
