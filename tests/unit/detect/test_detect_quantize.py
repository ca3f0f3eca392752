"""``safewatch models quantize`` on the real yolov8n: an INT8 model that still finds the workers.

Skipped (with the reason) when the team's shared assets are absent. Quantising takes about a
minute of CPU on two cores, so it runs once for the module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from assets import asset
from cli_support import invoke
from safewatch.cli.app import app
from safewatch.config.site import ModelConfig
from safewatch.detect import OnnxDetector, quantize
from safewatch.detect.nms import box_iou
from safewatch.detect.quantize import calibration_images, quantize_model
from safewatch.domain import Frame
from safewatch.errors import ModelError, SourceError

pytestmark = pytest.mark.slow

CLIP = "video/construction_cctv_640x352_24s.mp4"


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quantize") / "yolov8n_int8.onnx"
    result = CliRunner().invoke(
        app,
        [
            "models",
            "quantize",
            str(asset("models/yolov8n_coco.onnx")),
            str(asset(CLIP)),
            "--out",
            str(out),
            "--frames",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "calibrated on 8 frames" in result.output
    return out


@pytest.fixture(scope="module")
def yolox_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """yolox_nano (ONNX opset 11) quantised on 2 frames: a few seconds."""
    out = tmp_path_factory.mktemp("quantize") / "yolox_int8.onnx"
    quantize_model(asset("models/yolox_nano_coco.onnx"), out, calibration_images([asset(CLIP)], 2))
    return out


def test_calibration_frames_are_spread_over_the_video() -> None:
    images = calibration_images([asset(CLIP)], 5)
    assert len(images) == 5
    assert all(i.shape == (352, 640, 3) and i.dtype == np.uint8 for i in images)
    assert not np.array_equal(images[0], images[-1])


def write_numbered_clip(path: Path, first: int, frames: int) -> Path:
    """A lossless Matroska clip whose frame ``i`` is grey level ``(first + i) * 8``; Matroska
    records no frame count, so reading it takes the counting pass."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "gray"
        for i in range(frames):
            picture = np.full((48, 64), (first + i) * 8, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="gray")))
        container.mux(stream.encode())
    return path


def test_every_nth_frame_is_kept_across_videos_without_a_frame_count(tmp_path: Path) -> None:
    a = write_numbered_clip(tmp_path / "a.mkv", 0, 20)
    b = write_numbered_clip(tmp_path / "b.mkv", 20, 10)
    with av.open(str(a)) as container:
        assert container.streams.video[0].frames == 0  # the header does not say
    images = calibration_images([a, b], 6)  # 30 frames: every 5th
    assert [int(i.mean()) // 8 for i in images] == [0, 5, 10, 15, 20, 25]


def test_calibration_holds_only_the_kept_frames() -> None:
    """Every decoded frame used to be kept until the end: the process grew by 397 MB (598
    frames of 640x352) to return 4 of them, and ten minutes of 1080p would need about 90 GB.
    Now 11 MB. Measured in a fresh process, as peak resident memory grown during the call."""
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from safewatch.detect.quantize import calibration_images\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert len(calibration_images([Path(sys.argv[1])], 4)) == 4\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(asset(CLIP))], capture_output=True, text=True, check=True
    )
    grown_mb = int(run.stdout.strip())
    assert grown_mb < 100, f"calibration grew the process by {grown_mb} MB"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["/no/such/clip.mp4"], "does not exist"),
        (["{clip}", "--frames", "0"], "greater than or equal to 1"),
    ],
)
def test_bad_calibration_arguments_are_one_line_errors(
    tmp_path: Path, args: list[str], says: str
) -> None:
    clip = write_numbered_clip(tmp_path / "clip.mkv", 0, 3)
    argv = ["models", "quantize", "model.onnx", *[a.format(clip=clip) for a in args]]
    result = CliRunner().invoke(app, [*argv, "--out", str(tmp_path / "q.onnx")])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_an_unreadable_video_is_a_source_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(SourceError, match="cannot read video"):
        calibration_images([text], 4)


def test_only_convolutions_are_quantised_and_the_output_stays_float(int8_model: Path) -> None:
    graph = onnx.load(str(int8_model)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 50
    producer = {o: n for n in graph.node for o in n.output}
    assert producer["output0"].op_type == "Concat"  # no Q/DQ pair rounding the scores away
    assert not any("dfl" in n.name and n.op_type == "QuantizeLinear" for n in graph.node)


def test_int8_model_finds_the_same_workers(int8_model: Path) -> None:
    image = calibration_images([asset(CLIP)], 12)[1]  # frame 49: workers on the yard
    frame = Frame("yard", 0, 0.0, 0.0, image)
    labels = {"person": "person"}
    fp32 = OnnxDetector(
        ModelConfig(path="fp32", labels=labels), asset("models/yolov8n_coco.onnx"), "fp32"
    )
    int8 = OnnxDetector(ModelConfig(path="int8", labels=labels), int8_model, "int8")
    a, b = fp32.detect([frame])[0], int8.detect([frame])[0]
    confident = a[a.confidence >= 0.4]
    assert len(confident) >= 1 and len(b) >= 1
    assert box_iou(confident.xyxy, b.xyxy).max(axis=1).min() >= 0.7


def test_an_opset_11_model_gets_an_int8_copy_that_loads_and_detects(yolox_int8: Path) -> None:
    """Per-channel weights need opset 13; yolox_nano's copy used to be written and reported as
    a success, then refused by ONNX Runtime as an invalid graph when a site loaded it."""
    source = onnx.load(str(asset("models/yolox_nano_coco.onnx")))
    assert [o.version for o in source.opset_import if o.domain in ("", "ai.onnx")] == [11]
    int8 = OnnxDetector(ModelConfig(path="int8", labels={"person": "person"}), yolox_int8, "int8")
    image = calibration_images([asset(CLIP)], 12)[1]  # frame 49: workers on the yard
    assert len(int8.detect([Frame("yard", 0, 0.0, 0.0, image)])[0]) >= 1
    assert not [p.name for p in yolox_int8.parent.iterdir() if p.name.endswith(".part")]


def test_an_already_quantised_model_is_refused_and_nothing_is_written(
    yolox_int8: Path, tmp_path: Path
) -> None:
    """Quantising a QDQ model again wrote a copy with duplicate node names that did not load."""
    with pytest.raises(ModelError, match="already quantised"):
        quantize_model(yolox_int8, tmp_path / "again.onnx", calibration_images([asset(CLIP)], 1))
    assert list(tmp_path.iterdir()) == []


def test_a_copy_that_does_not_load_is_reported_and_never_left_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the opset upgrade yolox_nano's copy is an invalid graph: the check catches it."""
    monkeypatch.setattr(quantize, "_at_least_opset_13", lambda source, model, folder: source)
    with pytest.raises(ModelError, match=r"nothing was written.*INVALID_GRAPH"):
        quantize_model(
            asset("models/yolox_nano_coco.onnx"),
            tmp_path / "yolox_int8.onnx",
            calibration_images([asset(CLIP)], 1),
        )
    assert list(tmp_path.iterdir()) == []


def yolo11_named(path: Path) -> Path:
    """yolov8n_coco with its Detect head renamed from module 22 to 23, where YOLO11 has it."""
    model = onnx.load(str(asset("models/yolov8n_coco.onnx")))

    def rename(name: str) -> str:
        return name.replace("/model.22/", "/model.23/")

    for node in model.graph.node:
        node.name = rename(node.name)
        node.input[:] = [rename(i) for i in node.input]
        node.output[:] = [rename(o) for o in node.output]
    for tensor in model.graph.initializer:
        tensor.name = rename(tensor.name)
    onnx.save(model, str(path))
    return path


def test_all_operators_finds_the_head_of_a_yolo11_numbered_model(tmp_path: Path) -> None:
    """The decode head was excluded by the name /model.22/ only; a YOLO11 head (module 23) was
    quantised with the rest and its copy saw nothing (best score 0.000 against 0.715)."""
    out = tmp_path / "int8.onnx"
    images = calibration_images([asset(CLIP)], 12)
    quantize_model(yolo11_named(tmp_path / "yolo11ish.onnx"), out, images[:2], all_operators=True)
    int8 = OnnxDetector(ModelConfig(path="int8", labels={"person": "person"}), out, "int8")
    assert len(int8.detect([Frame("yard", 0, 0.0, 0.0, images[1])])[0]) >= 1


def test_a_copy_whose_scores_collapsed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the head quantised too, one int8 scale over pixels and scores zeroes every score:
    the copy loads and runs, so only comparing it with fp32 shows it would never detect."""
    monkeypatch.setattr(quantize, "_decode_head", lambda graph: None)
    with pytest.raises(ModelError, match=r"lost its scores.* 0\.000 against"):
        quantize_model(
            asset("models/yolov8n_coco.onnx"),
            tmp_path / "int8.onnx",
            calibration_images([asset(CLIP)], 1),
            all_operators=True,
        )
    assert list(tmp_path.iterdir()) == []


def test_frames_the_model_sees_nothing_in_are_refused_not_judged(tmp_path: Path) -> None:
    """On noise frames fp32 and int8 best scores are both noise (0.013 against 0.031 was refused
    as a collapse): frames that show nothing the model detects cannot check a copy."""
    noise = np.random.default_rng(7).integers(0, 256, (2, 352, 640, 3), dtype=np.uint8)
    with pytest.raises(ModelError, match=r"finds nothing in the calibration frames"):
        quantize_model(asset("models/yolox_nano_coco.onnx"), tmp_path / "int8.onnx", list(noise))
    assert list(tmp_path.iterdir()) == []


def test_out_is_never_the_model_itself_and_replaces_a_file_only_with_force(tmp_path: Path) -> None:
    """-o overwrote whatever it named, the fp32 source included."""
    source = tmp_path / "yolox.onnx"
    shutil.copyfile(asset("models/yolox_nano_coco.onnx"), source)
    fp32 = source.read_bytes()
    quantize = ["models", "quantize", str(source), str(asset(CLIP)), "--frames", "2"]
    with pytest.raises(ModelError, match="is the model being quantised"):
        invoke(*quantize, "-o", str(tmp_path / "." / "yolox.onnx"), "--force")
    existing = tmp_path / "int8.onnx"
    existing.write_bytes(b"someone's other model")
    with pytest.raises(ModelError, match=r"already exists; .* --force"):
        invoke(*quantize, "-o", str(existing))
    assert source.read_bytes() == fp32
    assert existing.read_bytes() == b"someone's other model"
    code, output = invoke(*quantize, "-o", str(existing), "--force")
    assert code == 0, output
    OnnxDetector(ModelConfig(path="int8"), existing, "int8")  # a loadable copy replaced it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx", "yolox.onnx"]
