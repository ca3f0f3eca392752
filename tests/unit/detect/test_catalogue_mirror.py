"""Catalogue downloads through a mirror (a folder or a real local HTTP server) and the recorded
conversion steps (the PPE model's Q/DQ repair, the demo clip's trim) on real files."""

from __future__ import annotations

import hashlib
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import onnxruntime as ort
import pytest

from assets import asset
from mirror_server import serve_folder
from safewatch.detect import catalogue as cat
from safewatch.detect.fetching import MIRROR_ENV, MirrorFile
from safewatch.detect.repair import strip_output_qdq
from safewatch.errors import ModelError


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(cat.CACHE_ENV, str(folder))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def best_class_score(model: Path) -> float:
    """Highest class score the model gives a real hard-hat photo at 320 px (YOLOv8 layout)."""
    photo = sorted(asset("images/hard_hat_workers/images").iterdir())[0]
    picture = cv2.imread(str(photo))
    assert picture is not None
    image = cv2.resize(picture, (320, 320))[:, :, ::-1]
    tensor = np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32) / 255
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    output = session.run(None, {"images": tensor})[0]
    return float(output[0, 4:].max())


def test_the_published_ppe_model_is_broken_and_the_repair_fixes_it(tmp_path: Path) -> None:
    upstream = asset("upstream/ppe14_best_int8.onnx")
    assert best_class_score(upstream) == 0.0  # the defect the assets README records
    repaired = tmp_path / "repaired.onnx"
    strip_output_qdq(upstream, repaired, output="output0")
    assert best_class_score(repaired) > 0.1
    details = cat.info(repaired)
    assert [(o.name, o.shape) for o in details.outputs] == [("output0", (1, 18, 2100))]
    assert "NO-Hardhat" in details.metadata["names"]


def test_the_repair_refuses_a_model_it_was_not_written_for(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not end in a QuantizeLinear/DequantizeLinear"):
        strip_output_qdq(asset("models/yolov8n_coco.onnx"), tmp_path / "x.onnx", output="output0")
    with pytest.raises(ModelError, match="has no output 'nope'"):
        strip_output_qdq(asset("upstream/ppe14_best_int8.onnx"), tmp_path / "x.onnx", output="nope")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not an ONNX file"):
        strip_output_qdq(tmp_path / "junk.onnx", tmp_path / "x.onnx", output="output0")


def test_a_folder_mirror_serves_every_entry_the_example_site_names(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = asset(".")
    monkeypatch.setenv(MIRROR_ENV, str(shared))
    nano = cat.pull("yolox_nano")
    assert nano.checksum == "verified"
    assert nano.model.sha256 == sha(shared / "models/yolox_nano_coco.onnx")
    assert nano.model.origin == f"{shared}/models/yolox_nano_coco.onnx"

    steps: list[str] = []
    ppe = cat.pull("ppe14_yolov8n_int8", on_step=steps.append)
    assert steps and "strip_output_qdq" in steps[0]
    assert ppe.model.fetched == sha(shared / "upstream/ppe14_best_int8.onnx")
    assert ppe.model.sha256 == sha(ppe.model.path) != ppe.model.fetched  # repaired, recorded
    assert best_class_score(ppe.model.path) > 0.1

    clip = cat.pull("construction_cctv", on_step=steps.append)
    assert len(steps) == 1  # the mirror's copy is already trimmed: no step ran
    assert clip.model.path == cache / "construction_cctv.mp4"
    assert clip.model.sha256 == sha(shared / "video/construction_cctv_640x352_24s.mp4")
    assert cat.resolve_video("construction_cctv", Path("/nonexistent")) == clip.model.path

    again = [cat.pull(n) for n in ("yolox_nano", "ppe14_yolov8n_int8", "construction_cctv")]
    assert [r.checksum for r in again] == ["cached"] * 3
    rows = {r.name: r for r in cat.list_models()}
    assert rows["yolox_nano"].matches_catalogue is True  # a pinned mirror file
    assert rows["construction_cctv"].kind == "video"


def test_an_http_mirror_is_asked_for_the_upstream_name_first(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_folder(asset(".")) as server:
        monkeypatch.setenv(MIRROR_ENV, server.url + "/")
        seen: list[tuple[int, int | None]] = []
        result = cat.pull("yolox_nano", progress=lambda done, total: seen.append((done, total)))
    assert server.hits == ["/yolox_nano.onnx", "/models/yolox_nano_coco.onnx"]
    assert result.model.origin == server.url + "/models/yolox_nano_coco.onnx"
    assert seen[-1] == (3_663_393, 3_663_393)


def test_a_mirror_file_with_other_bytes_is_refused(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror" / "models"
    mirror.mkdir(parents=True)
    (mirror / "yolox_nano_coco.onnx").write_bytes(b"a tampered copy")
    monkeypatch.setenv(MIRROR_ENV, str(mirror.parent))
    with pytest.raises(ModelError, match="size mismatch for yolox_nano") as err:
        cat.pull("yolox_nano")
    assert "partial download was deleted" in str(err.value)
    assert list(cache.iterdir()) == []


def test_a_mirror_without_the_file_names_what_it_tried(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="the mirror has no copy of yolox_nano") as err:
        cat.pull("yolox_nano", mirror=str(tmp_path))
    assert f"{tmp_path}/yolox_nano.onnx, {tmp_path}/models/yolox_nano_coco.onnx" in str(err.value)


def test_a_video_not_pulled_yet_says_how_to_get_it(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="safewatch models pull construction_cctv"):
        cat.resolve_video("construction_cctv", tmp_path)
    assert cat.resolve_video("some/file.mp4", tmp_path) is None
    (tmp_path / "construction_cctv").write_bytes(b"")  # a file of that name wins
    assert cat.resolve_video("construction_cctv", tmp_path) is None


def long_video_with_sound(path: Path, frames: int) -> Path:
    """An H.264 + AAC MP4 whose frames count up in brightness (frame i is grey level 4 * i)."""
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=Fraction(25))
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for index in range(frames):
            image = np.full((48, 64, 3), 4 * index, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        samples = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        samples.sample_rate = 16000
        for packet in audio.encode(samples):
            container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def test_a_video_is_trimmed_by_its_recorded_step_after_download(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    source = long_video_with_sound(upstream / "test.mp4", frames=40)
    entry = cat.CatalogueEntry(
        name="demo",
        description="a demo clip",
        url="https://example.invalid/raw/abc123/tests/videos/test.mp4",
        licence="AGPL-3.0",
        size=source.stat().st_size,
        sha256=sha(source),
        kind="video",
        prepare={"step": "trim_video", "frames": 12},
        mirror=(MirrorFile("elsewhere/demo.mp4", "0" * 64, prepared=True),),
    )
    monkeypatch.setattr(cat, "catalogue", lambda: {"demo": entry})
    with serve_folder(upstream) as server:
        result = cat.pull("demo", mirror=server.url)
    assert server.hits == ["/test.mp4"]
    assert result.checksum == "verified" and result.model.fetched == sha(source)
    with av.open(str(result.model.path)) as container:
        assert len(container.streams.audio) == 0
        levels = [int(f.to_ndarray(format="gray").mean()) for f in container.decode(video=0)]
    assert len(levels) == 12
    assert abs(levels[-1] - levels[0] - 44) <= 3  # the first 12 frames, in order
    assert [p.name for p in cache.iterdir() if p.name.endswith(".part")] == []
    assert shutil.disk_usage(cache)  # the cache folder is real and readable


def test_an_unreachable_mirror_says_what_to_fetch_and_how(cache: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ModelError) as err:
        cat.pull("ppe14_yolov8n_int8", mirror=f"http://127.0.0.1:{port}", timeout=5)
    message = str(err.value)
    assert f"cannot reach http://127.0.0.1:{port}/best_int8.onnx" in message
    assert "$SAFEWATCH_MIRROR" in message
    assert "safewatch models import /path/to/file --name ppe14_yolov8n_int8" in message
    assert [p for p in cache.iterdir() if p.suffix == ".part"] == []


def test_importing_the_upstream_ppe_file_runs_its_repair(cache: Path, tmp_path: Path) -> None:
    """A pinned file copied in by hand ends up as the download would: repaired, and pulls
    (offline) count it. Importing the published file as is would cache a model that scores 0."""
    upstream = asset("upstream/ppe14_best_int8.onnx")
    model = cat.import_model(upstream, name="ppe14_yolov8n_int8")
    assert (model.source, model.fetched) == ("import", sha(upstream))
    assert model.sha256 == sha(model.path) != model.fetched  # repaired
    assert best_class_score(model.path) > 0.1
    again = cat.pull("ppe14_yolov8n_int8", mirror=str(tmp_path / "no-mirror"))
    assert (again.checksum, again.model) == ("cached", model)
    assert cat.import_model(upstream, name="ppe14_yolov8n_int8") == model  # no-op
