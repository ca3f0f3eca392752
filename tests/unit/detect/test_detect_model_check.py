"""``check-config`` loads every model and runs it once on a blank frame (issue 13).

Before, ``check-config`` only resolved model paths: a model whose outputs are NaN (a broken export
or quantisation) passed, and ``serve`` then ran it seeing nothing, since NaN never beats a
threshold. Synthetic ONNX models (``onnx_fakes``) say exactly what they output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from onnx_fakes import constant_model

from safewatch.config.site import ModelConfig
from safewatch.detect.onnx_detector import OnnxDetector
from safewatch.errors import ModelError

SAFEWATCH = Path(sys.executable).with_name("safewatch")
ANCHORS = 84  # 64x64 input, strides 8/16/32


def hardhat_model(path: Path, value: float) -> Path:
    """A YOLOv8-layout model (4 box rows, 2 classes) that outputs ``value`` everywhere."""
    out = np.full((4 + 2, ANCHORS), value, np.float32)
    meta = {"names": "{0: 'Hardhat', 1: 'NO-Hardhat'}", "task": "detect", "imgsz": "[64, 64]"}
    return constant_model(path, {"output0": out}, metadata=meta)


def site_with(folder: Path, model: Path) -> Path:
    site = {
        "version": 1,
        "models": {"ppe": {"path": str(model), "format": "yolov8"}},
        "cameras": {"yard": {"source": "yard.mp4", "models": ["ppe"]}},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def check_config(site: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SAFEWATCH), "check-config", str(site), *more],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
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
