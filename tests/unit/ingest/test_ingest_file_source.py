"""FileSource on the real construction clip: sampling, clock, determinism and damaged files."""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import av
import numpy as np
import pytest
from ingest_media import remux

from assets import asset
from safewatch.errors import SourceError
from safewatch.ingest import FileSource, SourceState, StateChange
from safewatch.ingest.file_source import quarter_turns, stored_box, upright
from safewatch.ingest.video_writer import Mp4Writer

CLIP = "video/construction_cctv_640x352_24s.mp4"


@pytest.fixture(scope="module")
def clip() -> Path:
    return asset(CLIP)


def test_info_describes_the_clip(clip: Path) -> None:
    source = FileSource("yard", clip, fps=5)
    info = source.info
    assert (info.width, info.height, info.frame_count) == (640, 352, 598)
    assert info.fps == pytest.approx(24.686, abs=1e-3)
    assert info.duration == pytest.approx(24.22, abs=0.01)
    assert source.state is SourceState.CONNECTING
    source.close()


def test_samples_to_5_fps_by_pts(clip: Path) -> None:
    changes: list[StateChange] = []
    source = FileSource("yard", clip, fps=5, origin=1_700_000_000.0, on_state=changes.append)
    frames = list(source.frames())
    assert len(frames) == 121
    assert [f.seq for f in frames] == list(range(121))
    assert {f.camera_id for f in frames} == {"yard"}
    pts = np.array([f.pts for f in frames])
    assert pts[0] == 0.0
    assert np.all(np.diff(pts) > 0.15)
    assert np.all(np.diff(pts) < 0.25)
    assert all(f.timestamp == 1_700_000_000.0 + f.pts for f in frames)
    assert frames[0].image.shape == (352, 640, 3)
    assert frames[0].image.dtype == np.uint8
    assert source.stats.decoded == 598
    assert source.stats.sampled == 121
    assert [c.state for c in changes] == [SourceState.STREAMING, SourceState.ENDED]
    assert source.state is SourceState.ENDED


def test_rate_above_native_keeps_every_frame(clip: Path) -> None:
    frames = list(FileSource("yard", clip, fps=30).frames())
    assert len(frames) == 598


def test_avi_with_b_frames_keeps_presentation_time() -> None:
    # PETS09's AVI stamps packets in decode order, so with B-frames picture.time steps back 374
    # times in 795 pictures; read as it is, the sampler restarted at every step back (a 5 fps
    # camera kept 787 pictures) and time ran backwards. The file is read a few pictures ahead,
    # by when the PTS have shown their fault, so every picture gets its exact time.
    avi = asset("video/pets09_s2l1_480x360.avi")
    every = FileSource("road", avi, fps=30)
    pts = np.array([f.pts for f in every.frames()])
    assert every.stats.decoded == every.stats.sampled == 795
    assert pts == pytest.approx(0.1 * np.arange(795))
    sampled = FileSource("road", avi, fps=5)
    pts = np.array([f.pts for f in sampled.frames()])
    assert sampled.stats.sampled == 398  # every second picture of a 10 fps file
    assert pts == pytest.approx(0.2 * np.arange(398))


def test_a_file_whose_stamps_never_move_plays_at_its_frame_rate(clip: Path, tmp_path: Path) -> None:
    # Every picture stamped 0: it was read as 598 pictures a millisecond apart, so a 5 fps
    # camera analysed one of them (and the audit said nothing). One native frame apart instead,
    # and counted, so the audit can warn that its times are the frame rate's.
    flat = remux(clip, tmp_path / "flat.mkv", fmt="matroska", stamp_zero=True)
    source = FileSource("yard", flat, fps=5)
    pts = np.array([f.pts for f in source.frames()])
    assert source.stats.decoded == 598
    assert source.stats.untimed == 597
    assert len(pts) == 121  # as many as the well-stamped clip gives (test above)
    assert np.all(np.diff(pts) > 0.15)
    fps = source.info.fps
    assert fps is not None and pts[-1] == pytest.approx(597 / fps, abs=0.2)  # the last kept: 5 fps
    normal = FileSource("yard", clip, fps=5)
    list(normal.frames())
    assert normal.stats.untimed == 0


def test_a_file_shorter_than_the_read_ahead_gives_every_frame(tmp_path: Path) -> None:
    short = tmp_path / "short.mp4"
    with Mp4Writer(short, 10, 64, 48) as writer:
        for k in range(5):
            writer.write(np.full((48, 64, 3), 40 * k, np.uint8), k / 10)
    frames = list(FileSource("short", short, fps=30).frames())
    assert [f.pts for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert [round(float(f.image.mean()) / 40) for f in frames] == [0, 1, 2, 3, 4]


def test_two_runs_are_identical(clip: Path) -> None:
    def run() -> list[tuple[int, float, str]]:
        frames = FileSource("yard", clip, fps=2).frames()
        return [(f.seq, f.pts, hashlib.sha1(f.image.tobytes()).hexdigest()) for f in frames]

    assert run() == run()


def test_origin_from_creation_time_metadata(clip: Path, tmp_path: Path) -> None:
    stamped = remux(
        clip, tmp_path / "stamped.mp4", metadata={"creation_time": "2024-02-23T10:00:00.000000Z"}
    )
    source = FileSource("yard", stamped, fps=5)
    assert source.origin_kind == "creation_time"
    assert source.origin == 1_708_682_400.0
    first = next(iter(source.frames()))
    assert first.timestamp == 1_708_682_400.0
    explicit = FileSource("yard", stamped, fps=5, origin=10.0)
    assert (explicit.origin, explicit.origin_kind) == (10.0, "argument")


def test_origin_defaults_to_epoch_without_metadata(clip: Path) -> None:
    source = FileSource("yard", clip, fps=5)
    assert (source.origin, source.origin_kind) == (0.0, "epoch")


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=r"video file not found: .*nope\.mp4"):
        FileSource("yard", missing, fps=5)


def test_garbage_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(random.Random(3).randbytes(50_000))
    with pytest.raises(SourceError, match=r"cannot open video file .*garbage\.mp4: "):
        FileSource("yard", garbage, fps=5)


def test_truncated_mp4_without_index_is_a_source_error(clip: Path, tmp_path: Path) -> None:
    # This clip keeps its index (moov) at the end: cut short, it cannot be opened at all.
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"truncated\.mp4"):
        FileSource("yard", truncated, fps=5)


def test_truncated_stream_delivers_what_is_there_and_ends(clip: Path, tmp_path: Path) -> None:
    ts = remux(clip, tmp_path / "clip.ts", fmt="mpegts")
    truncated = tmp_path / "truncated.ts"
    truncated.write_bytes(ts.read_bytes()[: ts.stat().st_size // 2])
    source = FileSource("yard", truncated, fps=5)
    frames = list(source.frames())
    assert 30 < len(frames) < 121
    assert source.state is SourceState.ENDED


def test_corrupt_packets_are_skipped_counted_and_logged(
    clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(clip.read_bytes())
    rng = random.Random(1)
    for offset in range(200_000, 600_000, 50_000):  # inside the media data, index intact
        data[offset : offset + 2000] = rng.randbytes(2000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    source = FileSource("yard", damaged, fps=30)
    with caplog.at_level(logging.WARNING, logger="safewatch.ingest"):
        frames = list(source.frames())
    assert len(frames) > 500
    assert source.stats.bad_packets > 0
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "damaged.mp4" in warning
    assert f"skipped {source.stats.bad_packets} undecodable packet" in warning
    assert source.state is SourceState.ENDED


def test_frames_can_be_iterated_once(clip: Path) -> None:
    source = FileSource("yard", clip, fps=5)
    source.frames()
    with pytest.raises(RuntimeError, match="once"):
        source.frames()
    source.close()


def test_close_mid_file_stops_the_generator(clip: Path) -> None:
    source = FileSource("yard", clip, fps=30)
    frames = source.frames()
    first = [next(frames) for _ in range(3)]
    source.close()
    rest = list(frames)
    assert len(first) + len(rest) < 598
    assert source.state is SourceState.ENDED


@pytest.mark.parametrize(
    ("rotation", "corner"),
    [(90, (-1, 0)), (-90, (0, -1)), (180, (-1, -1))],
    ids=["90", "-90", "180"],
)
def test_a_rotated_video_is_delivered_upright(
    tmp_path: Path, rotation: int, corner: tuple[int, int]
) -> None:
    """A phone video stored sideways with a display rotation (counter-clockwise degrees, as
    ffprobe prints them) comes out as a player shows it: the stored top-left corner is at the
    bottom left after 90 degrees (as ``ffmpeg``'s auto-rotation puts it), the size swapped."""
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:12, :16] = (0, 0, 255)  # red top-left corner, as stored
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.set_display_rotation(rotation)
        for k in range(3):
            picture = av.VideoFrame.from_ndarray(stored, format="bgr24")
            picture.pts = k
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    source = FileSource("phone", path, fps=10)
    frames = list(source.frames())
    turned = rotation % 180 != 0
    assert len(frames) == 3
    assert frames[0].image.shape == ((64, 48, 3) if turned else (48, 64, 3))
    assert (source.info.width, source.info.height) == ((48, 64) if turned else (64, 48))
    image = frames[0].image
    assert image[corner].tolist() == pytest.approx([0, 0, 255], abs=12)
    others = [(0, 0), (0, -1), (-1, 0), (-1, -1)]
    others.remove(corner)
    for other in others:
        assert image[other].tolist() == pytest.approx([0, 0, 0], abs=12), other


@pytest.mark.parametrize("rotation", [0, 90, 180, 270, -90])
def test_a_box_on_the_upright_picture_maps_back_onto_the_stored_one(rotation: int) -> None:
    """The blurred live video shows the stored (sideways) picture of a rotated file, which the
    analysis saw upright: a head box found upright must land on the same pixels stored."""
    stored = np.zeros((48, 64), np.uint8)
    stored[5:15, 40:52] = 255  # a head at x 40-52, y 5-15 of the stored picture
    turned = upright(stored, rotation)
    ys, xs = np.nonzero(turned)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    height, width = turned.shape
    assert stored_box(box, quarter_turns(rotation), width, height) == (40.0, 5.0, 52.0, 15.0)
