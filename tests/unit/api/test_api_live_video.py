"""Live video at the camera's rate: the raw feed is the camera's own packets, the blurred one hides
the heads of the newest analysed frame (the whole picture when there is none), a slow viewer
skips to a keyframe, and only admins get the raw stream, audited."""

from __future__ import annotations

import contextlib
import html
import io
import itertools
import json
import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import cv2
import numpy as np
import pytest
import yaml
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from api_support import (
    PASSWORD,
    add_users,
    client_for,
    close_of,
    login,
    make_app,
    make_dashboard,
    served_app,
    wait_until,
    write_site,
)
from assets import asset
from patience import poll
from safewatch.api import live_video
from safewatch.api.dashboard import Dashboard
from safewatch.api.live import LiveHub
from safewatch.api.live_video import (
    Chunk,
    LiveVideo,
    VideoMode,
    VideoSettings,
    Viewer,
    live_regions,
    split_boxes,
)
from safewatch.config.loader import load_site
from safewatch.config.site import PrivacyConfig
from safewatch.domain import Frame, Track, TrackedFrame
from safewatch.incidents.site_storage import SiteStorage, open_site_storage
from safewatch.runtime.http_server import HttpServer

CLIP = "video/construction_cctv_640x352_24s.mp4"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Dashboard, SiteStorage]]:
    """A site whose camera is the construction clip (played at its own rate, as a camera)."""
    loaded = load_site(write_site(tmp_path, source=str(asset(CLIP))))
    storage = open_site_storage(loaded)
    dashboard = Dashboard.create(lambda: loaded, tmp_path / "rules", storage)
    add_users(dashboard)
    yield dashboard, storage
    storage.close()


def collect(viewer: Viewer, fragments: int, timeout: float = 30.0) -> list[Chunk]:
    chunks: list[Chunk] = []

    def enough() -> bool:
        chunks.extend(viewer.take(0.5))
        return sum(c.kind == "fragment" for c in chunks) >= fragments

    poll(enough, timeout, f"{fragments} fragments", 0)
    return chunks


def watch_once(
    video: LiveVideo, mode: VideoMode, fragments: int, timeout: float = 30.0
) -> list[Chunk]:
    """The yard camera's ``mode`` feed until ``fragments`` fragments came; then the viewer and
    every feed are closed."""
    viewer = video.watch("yard", mode)
    try:
        return collect(viewer, fragments, timeout)
    finally:
        viewer.close()
        video.close()


def decoded(chunks: list[Chunk]) -> list[np.ndarray[Any, Any]]:
    data = b"".join(c.data for c in chunks)
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def source_frames(count: int) -> list[np.ndarray[Any, Any]]:
    with av.open(str(asset(CLIP))) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == count:
                return frames
    return frames


def sharpness(image: np.ndarray[Any, Any]) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_split_boxes_keeps_a_cut_box_until_the_rest_arrives() -> None:
    moof = struct.pack(">I", 16) + b"moof" + b"12345678"
    mdat = struct.pack(">I", 12) + b"mdat" + b"abcd"
    buffer = bytearray(moof + mdat[:5])
    assert list(split_boxes(buffer)) == [(b"moof", moof)]
    buffer += mdat[5:]
    assert list(split_boxes(buffer)) == [(b"mdat", mdat)]
    assert buffer == b""
    with pytest.raises(ValueError, match="bad MP4 box"):
        list(split_boxes(bytearray(struct.pack(">I", 3) + b"junk")))


def test_the_raw_feed_is_the_cameras_own_packets(site: tuple[Dashboard, SiteStorage]) -> None:
    dashboard, _ = site
    video = LiveVideo(dashboard.live, dashboard.site)
    chunks = watch_once(video, "raw", 12)
    assert chunks[0].kind == "init" and chunks[0].codec.startswith("avc1.")
    assert chunks[1].key, "a viewer starts at a keyframe"
    fragments = [c for c in chunks if c.kind == "fragment"]
    # the browser turns video time into wall time with wall - media; it only ever moves back
    # (a frame cannot have been filmed after it arrived), and never far
    offsets = [c.wall - c.media for c in fragments]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(offsets))
    assert offsets[0] - offsets[-1] < 0.5
    assert all(c.wall <= c.made for c in fragments)
    assert max(c.media for c in fragments) == pytest.approx(11 / 24, abs=3 / 24)
    with av.open(str(asset(CLIP))) as container:
        original = [bytes(p) for p in container.demux(video=0) if p.size][:12]
    with av.open(io.BytesIO(b"".join(c.data for c in chunks))) as container:
        copied = [bytes(p) for p in container.demux(video=0) if p.size][:12]
    assert copied == original, "raw is bit-exact: no decoding, no re-encoding"


def test_the_blurred_feed_fails_closed_without_an_analysed_frame(
    site: tuple[Dashboard, SiteStorage], caplog: pytest.LogCaptureFixture
) -> None:
    dashboard, _ = site
    video = LiveVideo(LiveHub(), dashboard.site)  # no analysis has published anything
    with caplog.at_level("WARNING", logger=live_video.__name__):
        chunks = watch_once(video, "blurred", 6)
    # the operator who sees only blur is told why, once (not once a picture)
    told = [r.getMessage() for r in caplog.records if "blurred whole" in r.getMessage()]
    assert len(told) == 1 and "yard" in told[0] and "no analysed frame" in told[0], told
    assert chunks[0].codec.startswith("avc1.") and chunks[0].width == 640
    frames, originals = decoded(chunks), source_frames(6)
    for shown, original in zip(frames, originals, strict=False):
        assert shown.shape == original.shape
        assert sharpness(shown) < 0.05 * sharpness(original), "the whole picture is hidden"


def test_the_blurred_feed_hides_the_heads_of_the_newest_analysed_frame(
    site: tuple[Dashboard, SiteStorage],
) -> None:
    dashboard, _ = site
    hub = LiveHub()
    person = Track(1, "person", (200.0, 60.0, 300.0, 340.0), 0.9)
    image = np.zeros((352, 640, 3), np.uint8)
    hub.publish_frame(TrackedFrame("yard", 1, 0.0, time.time(), 640, 352, (person,)), image)
    video = LiveVideo(hub, dashboard.site, VideoSettings(stale_seconds=600, motion_margin=0))
    chunks = watch_once(video, "blurred", 6)
    frames, originals = decoded(chunks), source_frames(6)
    # head: the top quarter of the box grown by the privacy margin (15 %)
    head = (slice(60, 120), slice(210, 290))
    away = (slice(200, 352), slice(400, 640))
    for shown, original in zip(frames, originals, strict=False):
        assert sharpness(shown[head]) < 0.1 * sharpness(original[head])
        error = np.abs(shown[away].astype(int) - original[away].astype(int)).mean()
        assert error < 6, f"the rest of the picture is the camera's (mean error {error:.1f})"


def test_an_analysed_frame_filmed_long_before_the_picture_hides_the_whole_picture() -> None:
    """The heads of an analysed frame are where its people stood when it was filmed. One analysed
    8 s late (the rules thread held by a database stall, a backlog) reached the hub just now and
    passed for fresh: its old boxes were laid on the current picture, where the people have
    moved, so their heads were shown. The analysed frame's filming time is compared with the
    picture's, whenever the frame arrived."""
    hub = LiveHub()
    person = Track(1, "person", (100.0, 100.0, 160.0, 300.0), 0.9)
    image = np.zeros((360, 640, 3), np.uint8)
    now = time.time()
    hub.publish_frame(TrackedFrame("cam", 1, 0.0, now - 8.0, 640, 360, (person,)), image)
    privacy, settings = PrivacyConfig(), VideoSettings()  # stale after 2 s
    whole = [(0, 0, 640, 360)]
    assert live_regions(hub, "cam", privacy, settings, now, 640, 360) == whole, "fail closed"
    # a picture filmed as that frame was gets its heads hidden, not the whole picture
    heads = live_regions(hub, "cam", privacy, settings, now - 8.0, 640, 360)
    assert heads and heads != whole and all(x2 - x1 < 640 for x1, _, x2, _ in heads)
    # nor does a frame filmed seconds after the picture (the feed behind) hide its heads
    assert live_regions(hub, "cam", privacy, settings, now - 11.0, 640, 360) == whole


@pytest.mark.parametrize("offset", [5.0, -5.0])
def test_a_lasting_offset_between_the_two_connections_clocks_keeps_the_heads(
    offset: float,
) -> None:
    """The analysis and the feed stamp a camera's pictures on clocks each anchors once per
    connection: a media server's burst of 5 s of cached pictures when the analysis connected
    (+5), or the camera clock's drift over a long session (-5), left the two apart for good, and
    every picture was blurred whole although the analysis was live. The analysed frame's age is
    read off the server's clock (when the decode worker published it) instead; a frame published
    8 s ago (a backlog) still lends no heads, whatever its stamp."""
    hub = LiveHub()
    person = Track(1, "person", (100.0, 100.0, 160.0, 300.0), 0.9)
    image = np.zeros((360, 640, 3), np.uint8)
    privacy, settings = PrivacyConfig(), VideoSettings()  # stale after 2 s
    whole = [(0, 0, 640, 360)]
    now = time.time()  # the shown picture arrived now (the feed's stamp)
    tracked = TrackedFrame("cam", 1, 0.0, now + offset - 0.3, 640, 360, (person,))
    decoded = Frame("cam", 1, 0.0, tracked.timestamp, image, published_at=now - 0.3)
    hub.on_frame(decoded, tracked, [], [])  # the runtime's listener: the worker's time too
    heads = live_regions(hub, "cam", privacy, settings, now, 640, 360)
    assert heads and heads != whole and all(x2 - x1 < 640 for x1, _, x2, _ in heads)
    # the same offset, a frame decoded 8 s ago and analysed late: its heads are old
    tracked = TrackedFrame("cam", 2, 0.0, now + offset - 8.0, 640, 360, (person,))
    hub.publish_frame(tracked, image, (), now - 8.0)
    assert live_regions(hub, "cam", privacy, settings, now, 640, 360) == whole
    # a file the feed plays on the analysis's clock compares the stamps themselves
    hub.publish_frame(tracked, image, (), now - 0.3)
    stamp = tracked.timestamp
    assert live_regions(hub, "cam", privacy, settings, now, 640, 360, clock="analysis") == whole
    assert live_regions(hub, "cam", privacy, settings, stamp, 640, 360, clock="analysis") != whole
    # and a picture on no clock shared with the analysis (a file shown at another moment)
    assert live_regions(hub, "cam", privacy, settings, now, 640, 360, clock=None) == whole


def test_a_blurred_feed_shows_every_picture_of_a_decode_order_stamped_file(
    tmp_path: Path,
) -> None:
    """PETS09's AVI stamps its pictures in decode order (they step back at every B-frame): the
    feed times them as the analysis does, so each of the 10 fps file's pictures is shown, 0.1 s
    after the one before, but for the start: a live feed is not read ahead (latency), so the
    second picture is timed before the first step back has shown (0.3 s), and the third and
    fourth (0.2 s, 0.3 s) are skipped as not after it. Read by their raw stamps, about 45 % of
    all pictures were skipped as "older"."""
    loaded = load_site(write_site(tmp_path, source=str(asset("video/pets09_s2l1_480x360.avi"))))
    # no lag limit: on a busy machine this test is about the pictures' times, not about dropping
    settings = VideoSettings(max_lag=3600.0, skip_lag=3600.0)
    video = LiveVideo(LiveHub(), lambda: loaded, settings)
    chunks = watch_once(video, "blurred", 20, timeout=60)
    media = [c.media for c in chunks if c.kind == "fragment"][:20]
    steps = [round(b - a, 3) for a, b in itertools.pairwise(media)]
    assert steps == [0.3] + [0.1] * 18, f"a picture skipped or out of order: {steps}"


def _thumbnail(picture: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    grey = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (160, 88), interpolation=cv2.INTER_AREA).astype(np.float32)


def _as_mpeg_ts(source: Path, target: Path) -> Path:
    """``source``'s packets in an MPEG-TS container (no index: seeks land anywhere)."""
    with av.open(str(source)) as inp, av.open(str(target), "w", format="mpegts") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                out.mux(packet)
    return target


@pytest.mark.parametrize("container_format", ["mp4", "mpegts"])
def test_a_file_feed_shows_the_moment_the_analysis_sees_and_follows_its_loop(
    tmp_path: Path, container_format: str
) -> None:
    """A file played as a camera (the example site's) is analysed from one copy and shown from
    another. Each shown picture must be the one the analysis stamped with the same wall time
    (``anchor + pts``, pts counting on across the loop's passes), or the overlays, matched by
    wall time, sit beside the people. Before: the feed played the file from its start when the
    first viewer came, seconds to a whole pass away from the analysis. MPEG-TS has no index: a
    seek there landed after the moment or between keyframes (seconds late, or no picture)."""
    path = asset(CLIP)
    if container_format == "mpegts":
        path = _as_mpeg_ts(path, tmp_path / "clip.ts")
    loaded = load_site(write_site(tmp_path, source=str(path)))
    with av.open(str(path)) as container:
        duration = container.duration / 1_000_000
        times, thumbnails = [], []
        for frame in container.decode(video=0):
            times.append(float(frame.time))  # from the first picture, as the analysis counts
            thumbnails.append(_thumbnail(frame.to_ndarray(format="rgb24")))
    times = [t - times[0] for t in times]
    hub = LiveHub()
    # no lag limit: on a busy machine this test is about which picture is shown, not dropping
    settings = VideoSettings(stale_seconds=600, max_lag=3600.0, skip_lag=3600.0)
    video = LiveVideo(hub, lambda: loaded, settings)
    viewer = video.watch("yard", "blurred")  # before the analysis: from the file's start
    chunks: list[Chunk] = []
    try:
        chunks.extend(collect(viewer, 3))
        # the analysis starts: its second pass is 3 s from its end now (the feed looks once
        # a second whether it is in step)
        now = time.time()
        anchor = now - (2 * duration - 3)
        image = np.zeros((352, 640, 3), np.uint8)
        hub.publish_frame(TrackedFrame("yard", 1, now - anchor, now, 640, 352, ()), image)

        def next_pass_shown() -> bool:
            chunks.extend(viewer.take(0.5))
            generations = {c.generation for c in chunks}
            newest = sum(c.generation == max(generations) for c in chunks)
            return len(generations) == 3 and newest > 10

        poll(next_pass_shown, 30, "the feed to follow the analysis into its next pass", 0)
    finally:
        viewer.close()
        video.close()
    source = np.stack(thumbnails)
    first = chunks[0].generation
    passes: dict[int, list[float]] = {}
    for generation in sorted({c.generation for c in chunks} - {first}):
        own = [c for c in chunks if c.generation == generation]
        fragments = [c for c in own if c.kind == "fragment"]
        with av.open(io.BytesIO(b"".join(c.data for c in own))) as container:
            mp4 = [float(frame.time) for frame in container.decode(video=0)]
        # the browser maps its playhead (the MP4's time) to wall time with wall - media: after
        # the pictures before the analysis's moment, the MP4 still starts at 0 (was 3-4 s off)
        assert [round(c.media, 3) for c in fragments] == [round(t, 3) for t in mp4]
        walls = [c.wall for c in fragments]
        for wall, picture in zip(walls, decoded(own), strict=True):
            position = (wall - anchor) % duration
            errors = np.abs(source - _thumbnail(picture)).mean(axis=(1, 2))
            shown = times[int(np.argmin(errors))]  # the file's picture it looks most like
            assert abs(shown - position) < 0.1, f"shown {shown:.2f} s, analysed {position:.2f} s"
            passes.setdefault(generation, []).append(position)
    follow, loop = passes.values()  # the feed reopened once to follow, once to loop
    assert follow[0] > duration - 3, "the analysis's moment, not the file's start"
    assert follow[-1] == pytest.approx(times[-1], abs=0.01), "to the file's last picture"
    assert loop[0] < 3, "the next pass from its start (not the old pass's end again)"


def _raw_following(tmp_path: Path, moment: float, fragments: int) -> tuple[Viewer, list[Chunk]]:
    """A raw feed of the clip whose analysis is ``moment`` seconds in, until ``fragments``."""
    loaded = load_site(write_site(tmp_path, source=str(asset(CLIP))))
    hub = LiveHub()
    image = np.zeros((352, 640, 3), np.uint8)
    hub.publish_frame(TrackedFrame("yard", 1, moment, time.time(), 640, 352, ()), image)
    video = LiveVideo(hub, lambda: loaded, VideoSettings(stale_seconds=600))
    viewer = video.watch("yard", "raw")
    try:
        return viewer, collect(viewer, fragments)
    finally:
        viewer.close()
        video.close()


def test_a_raw_catch_up_over_several_gops_sends_the_newest_from_its_keyframe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seek that lands GOPs early (MPEG-TS steps back in seconds) makes the raw catch-up
    span keyframes: only the newest GOP is sent, as one fragment starting at its keyframe. The
    muxer hands each fragment out one packet late, so restarting at the keyframe *packet* put
    the previous GOP's last picture first: a fragment that is not a keyframe, which a viewer
    skips, and with it the whole catch-up."""
    monkeypatch.setattr(live_video, "_seek_before", lambda container, *_: container.seek(0))
    viewer, chunks = _raw_following(tmp_path, 21.0, 3)  # keyframes at 0, 10.1, 20.3 s before
    fragments = [c for c in chunks if c.kind == "fragment"]
    assert viewer.skipped == 0 and fragments[0].key
    pictures = len(decoded(chunks))
    assert pictures < 150 + len(fragments), f"{pictures} pictures: only the newest GOP"


def test_the_first_picture_stamp_skips_damaged_packets_and_a_missing_file(
    tmp_path: Path,
) -> None:
    """The feed counts a file's times from its first decodable picture, as the analysis does;
    a damaged first packet raised, and the feed reopened forever without playing."""
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(asset(CLIP).read_bytes())
    with av.open(str(asset(CLIP))) as container:
        packet = next(container.demux(video=0))  # the first keyframe
        where, size = packet.pos, packet.size
    data[where + 16 : where + size] = bytes(b ^ 0x5A for b in data[where + 16 : where + size])
    damaged.write_bytes(bytes(data))
    with av.open(str(damaged)) as container:
        stamp = live_video._first_picture_stamp(container)
        first = next(  # the first picture a decoder that skips damaged packets gets
            frame.pts for frame in _decodable(container) if frame.pts is not None
        )
    assert stamp == first and stamp > 0, (stamp, first)

    class Unopenable:
        name = str(tmp_path / "gone.mp4")

    assert live_video._first_picture_stamp(Unopenable()) is None


def _decodable(container: Any) -> Iterator[Any]:
    for packet in container.demux(video=0):
        with contextlib.suppress(av.error.FFmpegError):
            yield from packet.decode()


def test_a_raw_feed_catching_up_to_the_analysis_sends_the_gop_as_one_fragment(
    tmp_path: Path,
) -> None:
    """Raw packets cannot be dropped, so a raw feed following the analysis starts at the
    keyframe before its moment (the clip's GOP is 10 s): sent one by one, those pictures (about
    120 here, up to 250) overflowed the viewer's backlog of 75, which then skipped to the next
    keyframe (up to 10 s without a picture)."""
    # 5 s in: the next keyframe is at 10.1 s, so a feed slow to open still seeks to 0 s
    viewer, chunks = _raw_following(tmp_path, 5.0, 30)
    fragments = [c for c in chunks if c.kind == "fragment"]
    assert viewer.skipped == 0 and fragments[0].key
    assert len(decoded(chunks)) >= 100 + len(fragments), "the keyframe and every picture after"
    # every picture once, none lost where the catch-up ends: B-frames sent after the first
    # packet past the moment can be stamped before it (decode order), and were dropped
    with av.open(io.BytesIO(b"".join(c.data for c in chunks))) as container:
        times = sorted(float(frame.time) for frame in container.decode(video=0))
    times = times[:-10]  # the last ones may wait for packets not collected yet (B-frames)
    gaps = [(round(a, 3), round(b - a, 3)) for a, b in itertools.pairwise(times) if b - a > 0.06]
    assert not gaps, f"pictures missing (gaps {gaps} s; the clip's frame is 0.041 s)"


def _chunk(kind: str = "fragment", key: bool = False) -> Chunk:
    return Chunk(kind, b"x", 1, key=key)  # type: ignore[arg-type]


def test_a_viewer_that_falls_behind_skips_to_the_next_keyframe() -> None:
    class Feed:
        def leave(self, viewer: Viewer) -> None: ...

    viewer = Viewer(Feed(), backlog=3)  # type: ignore[arg-type]
    viewer.offer(_chunk())  # before any init and keyframe: nothing playable
    viewer.offer(_chunk("init"))
    viewer.offer(_chunk())
    assert [c.kind for c in viewer.take(0)] == ["init"]
    viewer.offer(_chunk(key=True))
    viewer.offer(_chunk())
    viewer.offer(_chunk())
    viewer.offer(_chunk())  # the fourth unread fragment: cut back
    viewer.offer(_chunk())  # not a keyframe: skipped
    assert viewer.take(0) == []
    viewer.offer(_chunk(key=True))
    assert [c.key for c in viewer.take(0)] == [True]
    assert viewer.skipped == 7  # 2 before the first keyframe, 4 cut back, 1 after


def _header(message: bytes) -> dict[str, Any]:
    (length,) = struct.unpack(">I", message[:4])
    header: dict[str, Any] = json.loads(message[4 : 4 + length])
    return header


def test_only_admins_get_the_raw_stream_and_it_is_audited(
    site: tuple[Dashboard, SiteStorage],
) -> None:
    dashboard, _ = site
    url = "/api/v1/ws/cameras/yard/video"
    with client_for(dashboard) as viewer:
        login(viewer, "operator")
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            viewer.websocket_connect(f"{url}?mode=raw") as ws,
        ):
            ws.receive_bytes()
        assert refused.value.code == 4403
        with viewer.websocket_connect(url) as ws:
            first, second = _header(ws.receive_bytes()), _header(ws.receive_bytes())
        assert (first["type"], first["mode"], first["width"]) == ("init", "blurred", 640)
        assert second["type"] == "fragment" and second["key"] is True
        assert second["sent"] >= second["made"] >= second["wall"] - 1
    assert dashboard.auth.audit_records(action="live.raw_view")[1] == 0
    with client_for(dashboard) as admin:
        login(admin, "admin")
        with admin.websocket_connect(f"{url}?mode=raw") as ws:
            first = _header(ws.receive_bytes())
        assert (first["type"], first["mode"]) == ("init", "raw")
        with (
            pytest.raises(WebSocketDisconnect) as missing,
            admin.websocket_connect("/api/v1/ws/cameras/dock/video") as ws,
        ):
            ws.receive_bytes()
        assert missing.value.code == 1013  # disabled: the browser keeps trying
        with (
            pytest.raises(WebSocketDisconnect) as unknown,
            admin.websocket_connect("/api/v1/ws/cameras/gate/video") as ws,
        ):
            ws.receive_bytes()
        assert unknown.value.code == 4404  # not in the site: the browser stops
    records, total = dashboard.auth.audit_records(action="live.raw_view")
    assert total == 1 and records[0].actor == "admin" and records[0].subject == "yard"


def test_a_demoted_admins_open_raw_stream_is_closed(site: tuple[Dashboard, SiteStorage]) -> None:
    """The raw stream is for admins when it opens and while it runs: an admin demoted to
    operator (a token survives the change, unlike a session) loses the open ``mode=raw``
    stream (4403) and keeps the blurred one."""
    dashboard, _ = site
    dashboard.auth.add_user("boss", PASSWORD, "admin")
    token = dashboard.auth.create_token("boss", "control room").token
    bearer = {"Authorization": f"Bearer {token}"}
    url = "/api/v1/ws/cameras/yard/video"
    with (
        client_for(dashboard) as client,
        client.websocket_connect(f"{url}?mode=raw", headers=bearer) as raw,
        client.websocket_connect(url, headers=bearer) as blurred,
    ):
        assert _header(raw.receive_bytes())["mode"] == "raw"
        assert _header(blurred.receive_bytes())["mode"] == "blurred"
        dashboard.auth.update_user("boss", role="operator")
        code, reason = close_of(raw)
        assert code == 4403 and reason is not None and "admin" in reason, (code, reason)
        assert _header(blurred.receive_bytes())["type"] == "fragment"


def _live_cameras(client: Any, query: str = "") -> dict[str, str | None]:
    """``live_url`` of each camera as the Live page hands it to its script."""
    page = client.get(f"/live{query}")
    assert page.status_code == 200, page.text
    found = re.search(r'data-page-data="([^"]*)"', page.text)
    assert found is not None
    data = json.loads(html.unescape(found.group(1)))
    return {c["id"]: c["live_url"] for c in data["cameras"]}


def test_a_media_servers_original_video_is_given_only_where_nothing_is_hidden(
    tmp_path: Path,
) -> None:
    """A camera's ``live_url`` (its media server's player: the original video, heads visible)
    went to every user, so viewers saw the heads the live video hides under a page saying
    they were hidden. It is given for a camera whose privacy mode is off, and otherwise only to
    admins: on the Live page to an admin who chose the original, written to the audit log."""
    cameras = {
        "yard": {
            "source": "yard.mp4",
            "fps": 5,
            "models": ["coco", "ppe"],
            "live_url": "http://m/yard/",
        },
        "dock": {
            "source": "dock.mp4",
            "fps": 5,
            "models": ["coco"],
            "live_url": "http://m/dock/",
            "privacy": {"mode": "off"},
        },
    }
    dashboard, storage = make_dashboard(tmp_path, site_extra={"cameras": cameras})
    add_users(dashboard)
    unhidden = {"yard": None, "dock": "http://m/dock/"}
    try:
        for role in ("viewer", "operator"):
            with client_for(dashboard) as client:
                login(client, role)
                listed = {c["id"]: c["live_url"] for c in client.get("/api/v1/cameras").json()}
                assert listed == unhidden, role
                assert client.get("/api/v1/cameras/yard").json()["live_url"] is None
                assert _live_cameras(client) == unhidden, role
                assert _live_cameras(client, "?video=raw") == unhidden, role
        assert dashboard.auth.audit_records(action="live.raw_view")[1] == 0
        with client_for(dashboard) as admin:
            login(admin, "admin")
            assert _live_cameras(admin) == unhidden, "blurred unless the original is chosen"
            assert dashboard.auth.audit_records(action="live.raw_view")[1] == 0
            assert _live_cameras(admin, "?video=raw") == {**unhidden, "yard": "http://m/yard/"}
            records, total = dashboard.auth.audit_records(action="live.raw_view")
            assert total == 1 and (records[0].actor, records[0].subject) == ("admin", "yard")
            assert records[0].detail == {"mode": "raw", "via": "live_url"}
            assert admin.get("/api/v1/cameras/yard").json()["live_url"] == "http://m/yard/"
    finally:
        storage.close()


def test_a_media_servers_credentials_stay_out_of_the_content_security_policy(
    tmp_path: Path,
) -> None:
    """The CSP that lets the pages embed a camera's ``live_url`` player named its origin from
    the URL's netloc, user and password included, on every answer to anyone (the login page
    too). It names scheme, host and port only."""
    cameras = {
        "yard": {
            "source": "yard.mp4",
            "fps": 5,
            "models": ["coco", "ppe"],
            "live_url": "http://viewer:s3cret@media.local:8889/yard/",
        },
        "dock": {
            "source": "dock.mp4",
            "fps": 5,
            "models": ["coco"],
            "live_url": "https://[::1]/d/",
        },
    }
    dashboard, storage = make_dashboard(tmp_path, site_extra={"cameras": cameras})
    try:
        with client_for(dashboard) as client:
            csp = client.get("/login").headers["content-security-policy"]
        assert "s3cret" not in csp and "viewer" not in csp, csp
        assert "frame-src http://media.local:8889 https://[::1];" in csp, csp
    finally:
        storage.close()


def _feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("live-video-")]


def test_the_apps_shutdown_stops_its_video_feeds(site: tuple[Dashboard, SiteStorage]) -> None:
    """A feed outlives its viewers for ``idle_seconds``; the app's shutdown must not leave it
    running: a feed thread inside OpenCV when the interpreter exits aborts the process (exit
    code 134 after every test had passed, and after a SIGTERM of ``serve``)."""
    dashboard, _ = site
    before = set(_feed_threads())  # an earlier test's feed may still be waiting to go idle
    with client_for(dashboard) as client:  # TestClient: the app's lifespan, as ASGI servers
        login(client, "admin")
        with client.websocket_connect("/api/v1/ws/cameras/yard/video") as ws:
            assert _header(ws.receive_bytes())["type"] == "init"
        video: LiveVideo = client.app.state.live_video
        assert video.feeds() == {("yard", "blurred"): 0}, "kept for the next viewer"
    assert not video.feeds() and not set(_feed_threads()) - before
    app = make_app(dashboard)
    video = app.state.live_video = LiveVideo(dashboard.live, dashboard.site)
    server = HttpServer(app, "127.0.0.1", 0)  # uvicorn, as serve runs the app
    server.start()
    try:
        viewer = video.watch("yard", "raw")
        collect(viewer, 1)
        viewer.close()
    finally:
        server.stop()
    assert not video.feeds() and not set(_feed_threads()) - before


def test_a_feed_follows_site_reloads(tmp_path: Path) -> None:
    """A changed source reopens the feed (a new init, the new picture size); a disabled camera
    ends it."""
    path = write_site(tmp_path, source=str(asset(CLIP)))
    current = {"site": load_site(path)}
    video = LiveVideo(LiveHub(), lambda: current["site"])
    viewer = video.watch("yard", "raw")
    try:
        first = collect(viewer, 2)
        assert (first[0].kind, first[0].width) == ("init", 640)
        site = yaml.safe_load(path.read_text())
        site["cameras"]["yard"]["source"] = str(asset("video/pets09_s2l1_480x360.avi"))
        path.write_text(yaml.safe_dump(site))
        current["site"] = load_site(path)
        init: Chunk = poll(
            lambda: next((c for c in viewer.take(0.5) if c.kind == "init"), None),
            30,
            "a new init after the source changed",
            0,
        )
        assert (init.width, init.height, init.generation) == (480, 360, first[0].generation + 1)
        site["cameras"]["yard"]["enabled"] = False
        path.write_text(yaml.safe_dump(site))
        current["site"] = load_site(path)
        wait_until(lambda: not video.feeds(), timeout=30)
        with pytest.raises(KeyError):
            video.watch("yard", "raw")
    finally:
        viewer.close()
        video.close()


def test_a_camera_disabled_while_watched_closes_its_video_and_comes_back(tmp_path: Path) -> None:
    """A site reload that disables a watched camera ends its feed: the video socket is closed
    with 1013 (the browser connects again), and the metadata socket's state says ``disabled``.
    Before, the video socket stayed open on the dead feed for good (no close, no reconnect: the
    tile froze on its last picture after the camera was enabled again) and the state said
    ``unknown``. Enabled again, the video comes back on a new connection."""
    path = write_site(tmp_path, source=str(asset(CLIP)))
    current = {"site": load_site(path)}
    storage = open_site_storage(current["site"])
    dashboard = Dashboard.create(lambda: current["site"], tmp_path / "rules", storage)
    add_users(dashboard)
    bearer = {"Authorization": f"Bearer {dashboard.auth.create_token('viewer', 'wall').token}"}

    def switch(enabled: bool) -> None:
        site = yaml.safe_load(path.read_text())
        site["cameras"]["yard"]["enabled"] = enabled
        path.write_text(yaml.safe_dump(site))
        current["site"] = load_site(path)

    def states(meta: Any) -> Iterator[str]:
        while True:
            message = json.loads(meta.recv(timeout=10))
            if message["type"] == "state":
                yield message["state"]

    try:
        with served_app(dashboard) as base:
            ws = base.replace("http", "ws", 1) + "/api/v1/ws/cameras/yard"
            with (
                connect(f"{ws}/video", additional_headers=bearer, max_size=None) as video,
                connect(ws, additional_headers=bearer) as meta,
            ):
                assert _header(video.recv(timeout=30))["type"] == "init"
                switch(False)
                with pytest.raises(ConnectionClosed):
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:  # fragments until the feed notices
                        video.recv(timeout=deadline - time.monotonic())
                assert video.close_code == 1013, (video.close_code, video.close_reason)
                shown = itertools.islice(states(meta), 15)  # a state a second
                assert next((s for s in shown if s != "unknown"), None) == "disabled"
            with (
                pytest.raises(ConnectionClosed),
                connect(f"{ws}/video", additional_headers=bearer) as refused,
            ):
                refused.recv(timeout=30)
            assert refused.close_code == 1013, "disabled: the browser is to try again"
            switch(True)
            with connect(f"{ws}/video", additional_headers=bearer, max_size=None) as video:
                assert _header(video.recv(timeout=30))["type"] == "init"
    finally:
        storage.close()


def test_a_blurred_feed_short_of_cpu_drops_frames_to_stay_live(
    site: tuple[Dashboard, SiteStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hiding heads made to take 80 ms a frame (half the camera's 24 fps): the feed shows fewer
    frames, never older ones (without dropping, each second would add half a second of lag)."""
    slow = live_video.hide_heads

    def hide_slowly(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.08)
        return slow(*args, **kwargs)

    monkeypatch.setattr(live_video, "hide_heads", hide_slowly)
    dashboard, _ = site
    video = LiveVideo(dashboard.live, dashboard.site, VideoSettings(max_lag=0.5))
    chunks = watch_once(video, "blurred", 50, timeout=60)
    fragments = [c for c in chunks if c.kind == "fragment"]
    span = fragments[-1].media - fragments[0].media
    assert len(fragments) < 0.8 * 24 * span, "frames were dropped"
    ages = [c.made - c.wall for c in fragments[-10:]]
    assert max(ages) < 1.5, f"the feed stayed live (ages {ages})"


def test_a_slow_camera_clock_is_followed_but_a_backlog_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A feed's clock origin only ever moved back (a burst ahead of real time), so a camera
    whose clock runs 50 ppm slow had its pictures 0.5 s "late" after under 3 h, and every one
    was dropped: the viewer's video froze, with no reconnect. The origin now follows such a
    clock, slowly enough that pictures read 3 s late stay 3 s late."""
    from fractions import Fraction
    from types import SimpleNamespace

    feed = live_video._Feed.__new__(live_video._Feed)
    feed.mode, feed._realtime = "blurred", False
    now = {"wall": 1_700_000_000.0, "mono": 0.0}
    monkeypatch.setattr(live_video.time, "time", lambda: now["wall"])
    monkeypatch.setattr(live_video.time, "monotonic", lambda: now["mono"])
    base = Fraction(1, 90_000)
    wall0, start = now["wall"], now["wall"]
    feed._arrivals = live_video.ArrivalOrigin()
    feed._arrivals.update(start, 0.0)

    def lag_after(seconds: float, *, slow: float, read_late: float = 0.0) -> float:
        nonlocal wall0
        media = seconds * (1 - slow)
        now["wall"], now["mono"] = start + seconds + read_late, seconds + read_late
        packet = SimpleNamespace(pts=round(media / base), dts=0)
        wall0 = feed._paced(packet, 0, 0, base, 0.0, wall0, None)
        return now["wall"] - (wall0 + media)  # how late the picture looks

    for second in range(1, 3 * 3600, 5):  # three hours of a 50 ppm slow clock
        lag = lag_after(second, slow=50e-6)
    assert lag < 0.05  # before: 0.54 s, past max_lag (0.5 s): every picture dropped
    for second in range(3 * 3600, 3 * 3600 + 60):  # then a minute of pictures read 3 s late
        lag = lag_after(second, slow=50e-6, read_late=3.0)
    assert lag > 2.9


def test_a_rotated_files_heads_are_hidden_on_the_stored_picture() -> None:
    """Re-review: a rotated (phone) file is analysed upright (FileSource) but the blurred live
    video decodes and shows it as stored, sideways; the upright head boxes were scaled onto the
    sideways picture and hid the wrong place. Turned back, they cover the stored head."""
    hub = LiveHub()
    # upright 360 x 640 (portrait); the person's head near the top left
    person = Track(1, "person", (40.0, 20.0, 100.0, 220.0), 0.9)
    image = np.zeros((640, 360, 3), np.uint8)
    now = time.time()
    hub.publish_frame(TrackedFrame("cam", 1, 0.0, now, 360, 640, (person,)), image)
    privacy, settings = PrivacyConfig(), VideoSettings()
    upright_regions = live_regions(hub, "cam", privacy, settings, now, 360, 640)
    stored = live_regions(hub, "cam", privacy, settings, now, 640, 360, turns=1)
    assert len(upright_regions) == len(stored) == 1
    (ux1, uy1, ux2, uy2), (sx1, sy1, sx2, sy2) = upright_regions[0], stored[0]
    # one counter-clockwise turn undone: upright (x, y) was at (640 - y, x) when stored
    assert abs(sx1 - (640 - uy2)) <= 2 and abs(sx2 - (640 - uy1)) <= 2
    assert abs(sy1 - ux1) <= 2 and abs(sy2 - ux2) <= 2


@pytest.mark.parametrize(("is_file", "turned"), [(False, False), (True, True)])
def test_only_a_file_cameras_heads_are_turned_back(
    monkeypatch: pytest.MonkeyPatch, is_file: bool, turned: bool
) -> None:
    """Only FileSource analyses a rotated picture upright; a network camera (an http MP4 or HLS
    stream can carry a display rotation too) is analysed as stored, so its boxes already fit
    the picture the feed shows and must not be turned."""
    hub = LiveHub()
    person = Track(1, "person", (100.0, 100.0, 160.0, 300.0), 0.9)
    now = time.time()
    hub.publish_frame(
        TrackedFrame("cam", 1, 0.0, now, 640, 360, (person,)), np.zeros((360, 640, 3), np.uint8)
    )
    owner = SimpleNamespace(live=hub, settings=VideoSettings(), privacy=lambda _c: PrivacyConfig())
    feed = live_video._Feed(owner, "cam", "blurred")  # type: ignore[arg-type]
    feed._realtime = is_file
    monkeypatch.setattr(live_video, "quarter_turns", lambda _rotation: 1)  # frames say 90
    noise = np.random.default_rng(7).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    picture = av.VideoFrame.from_ndarray(noise, format="rgb24")  # blur changes every region
    shown = feed._hidden(picture, now, "arrival", 640, 360)
    plain = picture.to_ndarray(format="yuv420p", width=640, height=360)
    as_stored = live_regions(hub, "cam", PrivacyConfig(), VideoSettings(), now, 640, 360)
    expected = live_video.hide_heads(plain, as_stored, PrivacyConfig().mode)
    assert np.array_equal(shown, expected) is not turned
