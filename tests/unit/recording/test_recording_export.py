"""Range export: one MP4 of a camera's recording across segments, by packet copy, starting on the
keyframe at or before the range and keeping an outage as a gap in time."""

from __future__ import annotations

import contextlib
import itertools
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from assets import asset
from safewatch.recording import close_orphans, list_segments, record
from safewatch.recording.export import export_range
from safewatch.recording.segments import Segment, part_path, segment_path

T0 = 1_750_000_000.0
CLIP = "video/construction_cctv_640x352_24s.mp4"  # keyframes at 0, 10.13 and 20.25 s


def source_packets() -> list[tuple[float, bytes]]:
    with av.open(str(asset(CLIP))) as container:
        stream = container.streams.video[0]
        base = Fraction(stream.time_base)
        return [
            (float(p.pts * base), bytes(p))
            for p in container.demux(stream)
            if p.size and p.pts is not None
        ]


def exported(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base = Fraction(stream.time_base)
        return [
            (float(p.pts * base), bytes(p))
            for p in container.demux(stream)
            if p.size and p.pts is not None
        ]


@pytest.fixture
def segments(tmp_path: Path) -> list[Segment]:
    """The clip recorded from T0 into three segments (cut at its keyframes)."""
    record(
        lambda: av.open(str(asset(CLIP))),
        tmp_path / "rec",
        "yard",
        stop=threading.Event(),
        segment_seconds=5,
        clock=lambda: T0,
        reconnect=False,
    )
    found = list_segments(tmp_path / "rec", "yard")
    assert len(found) == 3
    return found


def test_an_export_across_segments_is_the_cameras_packets_from_the_keyframe_before(
    segments: list[Segment], tmp_path: Path
) -> None:
    target = tmp_path / "out.mp4"
    stats = export_range(segments, T0 + 12.0, T0 + 22.0, target)
    assert stats.segments == 3
    assert stats.start == pytest.approx(T0 + 10.13, abs=0.01), "starts on the keyframe before"
    assert T0 + 21.9 <= stats.end <= T0 + 22.05
    source = [(t, data) for t, data in source_packets() if 10.1 <= t < 22.0]
    copied = exported(target)
    assert sorted(d for _, d in copied) == sorted(d for _, d in source), "bit-exact, none lost"
    assert stats.packets == len(source)
    # one timeline from 0: the frame 12 s into the clip is 12 - 10.13 s into the export
    times = sorted(t for t, _ in copied)
    assert times[0] == pytest.approx(0, abs=0.001)
    assert times[-1] == pytest.approx(max(t for t, _ in source) - 10.13, abs=0.01)
    with av.open(str(target)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(source), "every frame plays"


def test_an_outage_stays_a_gap_in_time(segments: list[Segment], tmp_path: Path) -> None:
    # move the last segment 30 s later, as if the camera had been off in between
    last = segments[-1]
    moved = segment_path(last.path.parents[1].parent, "yard", last.start + 30, last.end + 30)
    last.path.replace(moved)
    shifted = [*segments[:-1], Segment("yard", last.start + 30, last.end + 30, moved, last.size)]
    target = tmp_path / "gap.mp4"
    stats = export_range(shifted, T0 + 11.0, T0 + 60.0, target)
    times = sorted(t for t, _ in exported(target))
    jumps = [b - a for a, b in itertools.pairwise(times)]
    assert max(jumps) == pytest.approx(30 + 1 / 24.7, abs=0.05)
    assert stats.end == pytest.approx(last.end + 30, abs=0.1)


def test_no_footage_in_the_range_is_a_clear_error(segments: list[Segment], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no recorded frame"):
        export_range(segments, T0 + 100, T0 + 200, tmp_path / "none.mp4")
    assert not (tmp_path / "none.mp4").exists()
    with pytest.raises(ValueError, match="must end after it starts"):
        export_range(segments, T0 + 5, T0 + 5, tmp_path / "none.mp4")


def test_overlapping_segments_export_as_one_timeline(
    segments: list[Segment], tmp_path: Path
) -> None:
    """The wall clock stepped back between two segments (the recorder anchors the next on it):
    the last one is stamped 3 s before the second ends. The export keeps the second's footage
    and goes on with the last from its first keyframe after it, here none (copied as they came,
    the last one's frames went to the muxer out of order and the export failed)."""
    last = segments[-1]
    moved = segment_path(last.path.parents[1].parent, "yard", last.start - 3, last.end - 3)
    last.path.replace(moved)
    shifted = [*segments[:-1], Segment("yard", last.start - 3, last.end - 3, moved, last.size)]
    target = tmp_path / "overlap.mp4"
    stats = export_range(shifted, T0 + 11.0, T0 + 30.0, target)
    # the second segment: from the keyframe at 10.13 s to the one at 20.25 s
    source = [(t, data) for t, data in source_packets() if 10.1 <= t < 20.25]
    copied = exported(target)
    assert sorted(d for _, d in copied) == sorted(d for _, d in source)
    times = sorted(t for t, _ in copied)
    assert min(b - a for a, b in itertools.pairwise(times)) > 0.03  # every frame its own time
    assert stats.end == pytest.approx(shifted[1].end, abs=0.05)
    with av.open(str(target)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(source)


def test_a_segment_cut_short_mid_frame_ends_at_its_last_whole_frame(
    segments: list[Segment], tmp_path: Path
) -> None:
    """A crash mid-fragment leaves a last packet the demuxer flags corrupt (the file ends
    inside it): the segment was named with it and the export copied it, a frame nothing could
    decode (a player stopped there)."""
    first = segments[0]
    data = first.path.read_bytes()
    first.path.unlink()
    part_path(tmp_path / "rec", "yard", first.start).write_bytes(data[: len(data) * 3 // 10])
    (named,) = close_orphans(tmp_path / "rec", "yard")  # the others were named
    with av.open(str(named.path)) as container:  # what decodes, frame by frame
        stream = container.streams.video[0]
        times = []
        for packet in container.demux(stream):
            with contextlib.suppress(av.error.InvalidDataError):
                times += [frame.time for frame in stream.codec_context.decode(packet)]
    times.sort()
    assert named.end == pytest.approx(named.start + times[-1] - times[0] + 478 / 11800, abs=0.002)
    target = tmp_path / "cut.mp4"  # on into the next segment, after the outage
    stats = export_range([named, *segments[1:]], named.start, segments[1].start + 1, target)
    with av.open(str(target)) as container:
        assert sum(1 for _ in container.decode(video=0)) == stats.packets


def test_every_frame_of_an_export_ending_mid_gop_is_the_cameras(
    segments: list[Segment], tmp_path: Path
) -> None:
    """The first frame at or after ``until`` was left out but the B-frames after it in decode
    order were copied: decoded without it, the last frame shown was garbage. Packet copy: every
    frame decodes to the camera's, pixel for pixel."""
    with av.open(str(asset(CLIP))) as container:
        source = {round(f.time, 3): f.to_ndarray(format="gray") for f in container.decode(video=0)}
    target = tmp_path / "out.mp4"
    stats = export_range(segments, T0 + 12.0, T0 + 17.3, target)
    offset = stats.start - T0
    with av.open(str(target)) as container:
        for frame in container.decode(video=0):
            original = source[min(source, key=lambda t: abs(t - frame.time - offset))]
            assert np.array_equal(original, frame.to_ndarray(format="gray")), frame.time


def test_an_export_says_when_its_footage_starts_and_where_it_has_gaps(
    segments: list[Segment], tmp_path: Path
) -> None:
    """A range starting in an outage starts at the next footage: the export must say so (its
    name claimed ``since``), and the outages inside a range (longer than GAP_SECONDS)."""
    first, middle, last = segments
    middle.path.unlink()  # the camera was off from 10.13 s to 20.25 s
    late = export_range([last], T0 + 15, T0 + 23, tmp_path / "late.mp4")
    assert (late.start, late.gaps) == (last.start, ())
    target = tmp_path / "gap.mp4"
    stats = export_range([first, last], T0 + 5, T0 + 23, target)
    assert stats.gaps == ((first.end, last.start),)
    with av.open(str(target)) as container:
        comment = container.metadata["comment"]
        created = container.metadata["creation_time"]
    assert comment == f"safewatch start={T0:.3f} gaps={first.end:.3f}-{last.start:.3f}"
    assert created == "2025-06-15T15:06:40.000000Z"  # T0, to the second in an MP4
