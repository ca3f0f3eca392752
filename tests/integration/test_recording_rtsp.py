"""Recording a real RTSP camera (GStreamer) through an outage: no segment lost, every segment
playable, and what it costs in CPU."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import pytest
import yaml
from rtsp_server import RtspCamera
from serve_support import wait_for

from safewatch.ingest.av_options import build_open_spec
from safewatch.ingest.backoff import Backoff
from safewatch.recording import RecordStats, Segment, list_segments, record

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(180)]


def frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_recording_survives_a_camera_outage(rtsp_camera: RtspCamera, tmp_path: Path) -> None:
    spec = build_open_spec(rtsp_camera.url, io_timeout=3.0)
    stop = threading.Event()
    closed: list[Segment] = []
    result: dict[str, object] = {}

    def run() -> None:
        started = time.thread_time()
        stats = record(
            lambda: av.open(spec.target, options=spec.options, timeout=5.0),
            tmp_path,
            "yard",
            stop=stop,
            segment_seconds=2,
            backoff=Backoff(initial=0.5, cap=2.0),
            on_segment=closed.append,
        )
        result["stats"] = stats
        result["cpu"] = time.thread_time() - started

    thread = threading.Thread(target=run, name="recorder")
    begun = time.monotonic()
    thread.start()
    try:
        wait_for(lambda: len(closed) >= 1, 60, "a first closed segment")
        rtsp_camera.kill()  # the camera loses power mid-segment
        wait_for(lambda: closed and closed[-1].path.exists() and len(closed) >= 2, 30, "the cut")
        before = len(closed)
        rtsp_camera.start()
        wait_for(lambda: len(closed) >= before + 1, 60, "recording to resume")
    finally:
        stop.set()
        thread.join(30)
    wall = time.monotonic() - begun
    stats = result["stats"]
    assert isinstance(stats, RecordStats)
    assert stats.connections >= 2, "the recorder reconnected after the outage"
    segments = list_segments(tmp_path, "yard")
    assert [s.path for s in segments] == sorted(s.path for s in closed)
    assert not list(tmp_path.glob("yard/*/*.part.mp4")), "every segment was closed"
    for segment in segments:
        assert frames(segment.path) > 0, f"{segment.path.name} does not play"
    cpu = float(result["cpu"])  # type: ignore[arg-type]
    print(
        f"recorded {len(segments)} segments, {stats.packets} packets in {wall:.1f} s "
        f"through an outage; recorder thread CPU {cpu * 1000:.0f} ms = {100 * cpu / wall:.2f} %"
        " of one core"
    )


def test_serve_records_a_camera_with_a_recording_block(
    rtsp_camera: RtspCamera, tmp_path: Path
) -> None:
    from serve_support import metric, readyz, write_site

    from safewatch.config.loader import load_site
    from safewatch.runtime.service import RuntimeService, ServeOptions

    path = write_site(tmp_path, {"yard": rtsp_camera.url})
    site = yaml.safe_load(path.read_text())
    site["cameras"]["yard"]["recording"] = {"segment_seconds": 1}
    path.write_text(yaml.safe_dump(site))
    service = RuntimeService(load_site(path), ServeOptions(rules=tmp_path / "rules"))
    service.start()
    root = tmp_path / "safewatch-data" / "recordings"
    try:
        wait_for(lambda: len(list_segments(root, "yard")) >= 2, 90, "two recorded segments")
        base = service.http_url
        assert base is not None
        # the recording reports itself: up, segments counted, no /readyz warning once writing
        wait_for(lambda: metric(base, "safewatch_recording_up", camera="yard") == 1, 30, "up")
        assert metric(base, "safewatch_recording_segments_total", camera="yard") >= 2
        wait_for(lambda: readyz(base)["cameras"]["yard"]["ready"], 60, "yard analysed")
        assert not [w for w in readyz(base)["cameras"]["yard"]["warnings"] if "recording" in w]
    finally:
        service.stop()
    assert not list(root.glob("yard/*/*.part.mp4")), "the stop closed the open segment"
    segments = list_segments(root, "yard")
    for segment in segments:
        assert frames(segment.path) > 0


def test_serve_starts_and_stops_a_recorder_when_the_site_file_changes(
    rtsp_camera: RtspCamera, tmp_path: Path
) -> None:
    from serve_support import readyz, write_site

    from safewatch.config.loader import load_site
    from safewatch.runtime.service import RuntimeService, ServeOptions

    path = write_site(tmp_path, {"yard": rtsp_camera.url})
    service = RuntimeService(
        load_site(path), ServeOptions(rules=tmp_path / "rules", site_poll_seconds=0.2)
    )
    service.start()
    root = tmp_path / "safewatch-data" / "recordings"
    try:
        base = service.http_url
        assert base is not None
        wait_for(lambda: readyz(base)["cameras"]["yard"]["ready"], 60, "yard streaming")
        pid = readyz(base)["cameras"]["yard"]["pid"]
        assert not root.exists() or list_segments(root, "yard") == []
        site = yaml.safe_load(path.read_text())
        site["cameras"]["yard"]["recording"] = {"segment_seconds": 1}
        path.write_text(yaml.safe_dump(site))
        wait_for(lambda: len(list_segments(root, "yard")) >= 2, 90, "recording after the edit")
        message = readyz(base)["site"]["message"]
        assert "recording started ['yard']" in message, message
        assert readyz(base)["cameras"]["yard"]["pid"] == pid, "the analysis was not restarted"

        del site["cameras"]["yard"]["recording"]
        path.write_text(yaml.safe_dump(site))
        wait_for(
            lambda: "recording started [], stopped ['yard']" in readyz(base)["site"]["message"],
            30,
            "the recorder stopped",
        )
        assert not list(root.glob("yard/*/*.part.mp4")), "stopping closed the open segment"
        kept = list_segments(root, "yard")
        time.sleep(2.5)  # longer than a segment: a recorder still running would add one
        assert list_segments(root, "yard") == kept
        for segment in kept:
            assert frames(segment.path) > 0
    finally:
        service.stop()
