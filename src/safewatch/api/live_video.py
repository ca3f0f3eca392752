"""Live video at the camera's frame rate for the dashboard: fragmented MP4 for Media Source
Extensions, heads hidden unless an admin asks for the original.

Privacy, decided as a demanding EHS customer would: the product promises footage with faces
hidden, so operators get **blurred** video: the API process opens its own connection to the camera
(as a recorder does; cameras and media servers serve several clients), decodes every frame,
hides the heads of the newest analysed frame's people (:func:`~safewatch.incidents.privacy.
head_regions`, grown by ``motion_margin`` per side because people move between analysed
frames), scales to at most ``max_width`` and re-encodes H.264 (libx264, ultrafast, zero latency,
one keyframe a second so a new viewer starts within a second). It **fails closed**: while the
camera's newest analysed frame is not within ``stale_seconds`` of the picture shown (analysis
behind, camera just started, analysis down), the whole picture is blurred, because nobody knows
where the heads are; each feed counts those pictures and logs why at most once a minute.
How far apart the two pictures are is measured on one clock (:func:`analysis_gap`): for a
network camera, when the feed received its picture against when the decode worker published
the analysed frame, both read off the server's clock, so a frame analysed seconds late (a
backlog, the rules thread held by a database stall) is as old as it is however fresh it reaches
the hub. Not the two connections' frame stamps: each is anchored once per connection on its
own (a media server's burst of cached pictures at connect, a camera clock's drift over a long
session), and a lasting offset between them blurred every picture whole. A file the feed plays
on the analysis's clock (below) compares the analysed frame's own stamp; one it cannot show at
the analysis's moment (``realtime: false``, not seekable) is always blurred whole.
What it cannot hide: a person who walks in between two analysed frames is visible until the next
one (at most one analysis interval, 0.2 s at 5 fps).

Admins may ask for the **raw** stream: the camera's packets copied, no decoding, no re-encoding
(bit-exact, full resolution, nearly free), like a recorded segment; every raw connection is
written to the audit log (``live.raw_view``) before a byte is sent (:mod:`safewatch.api.ws`).

One feed per (camera, mode) however many viewers watch it: its thread produces the chunks once
and every viewer's bounded queue gets a reference. A viewer that falls ``backlog`` fragments
behind is cut back to the next keyframe (it skips, never queues without bound), and a feed with
no viewer for ``idle_seconds`` closes its camera connection. A blurred feed short of CPU drops
frames (decoded, not blurred or encoded) older than ``max_lag`` rather than falling behind the
camera, and past ``skip_lag`` waits for the next keyframe. Feeds follow site reloads: a camera
whose source changes is reopened (its viewers get a new init), one removed or disabled ends and
ends its viewers (:meth:`Viewer.end`: the socket closes, the browser connects again).

Each chunk carries the wall-clock time of its frame, computed as the recorder and the decode
worker do (the first packet of a connection stamped with the clock, later ones by presentation
time from there), so the browser can match a video frame to the analysis metadata of the same
moment and measure how old the frame it shows is. A blurred feed times its decoded pictures with
:class:`~safewatch.ingest.picture_clock.PictureClock`, like the analysis: a file whose container
stamps pictures in decode order (AVI with B-frames) would otherwise step back at every B-frame,
and each step back was a picture not shown. The raw feed copies the camera's stamps as they are:
from such a file, the browser plays the pictures in decode order. A blurred chunk's media time is
its picture's time in the MP4 the browser plays (the muxer starts the track at the first picture
shown, whatever its stamp), so ``wall - media`` maps the browser's playhead to wall time.

A **file** played as a camera (the example site, footage replayed as a camera) is decoded twice,
by the analysis and by this feed. The feed follows the analysis's clock (:meth:`_Feed._follow`):
the analysis stamps each picture ``anchor + pts``, pts counting on across the loop's passes of
``duration`` seconds, so the feed seeks to the picture being analysed now, stamps its pictures on
that clock, starts the next pass when the analysis does, and reopens within a second when it is
out of step (watched before the first analysed frame, or the analysis restarted). A blurred feed
shows nothing before the analysis's moment (a browser given a burst of older pictures plays that
far behind); a raw one starts at the keyframe before it, and the player jumps to the newest frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import av
import numpy as np

from safewatch.api.live import LiveFrame, LiveHub
from safewatch.config.loader import LoadedSite
from safewatch.config.site import CameraConfig, PrivacyConfig, PrivacyMode
from safewatch.domain.arrival import ArrivalOrigin
from safewatch.incidents.privacy import Box, anonymise, head_regions
from safewatch.ingest.av_options import build_open_spec, source_kind
from safewatch.ingest.factory import file_source_path
from safewatch.ingest.file_source import media_duration, quarter_turns, stored_box
from safewatch.ingest.picture_clock import PictureClock

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "Chunk",
    "LiveVideo",
    "Moment",
    "VideoMode",
    "VideoSettings",
    "Viewer",
    "analysis_gap",
    "close_at_shutdown",
    "encode_chunk",
    "hide_heads",
    "live_regions",
    "split_boxes",
]

log = logging.getLogger(__name__)

VideoMode = Literal["blurred", "raw"]

_MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"
"""One fragment per frame (the browser gets each frame as soon as the next one is muxed)."""
_ENCODER_BASE = Fraction(1, 90_000)
_IN_STEP = 0.1
"""A file feed whose pass starts further than this (seconds) from the analysis's is reopened."""
_KEY_WAIT = 4000
"""Packets a followed file skips after its seek waiting for a keyframe (then it decodes on)."""
_HELD_LIMIT = 16 << 20
"""Bytes of a raw catch-up sent as one fragment at most (the cluster relay takes 64 MiB)."""
_STALE_LOG_SECONDS = 60.0
"""A feed logs why it blurs whole pictures at most this often."""

Moment = Literal["arrival", "analysis"]
"""The clock a shown picture's time is on (:func:`analysis_gap`)."""


@dataclass(frozen=True, slots=True)
class VideoSettings:
    """How live video is made.

    Attributes:
        max_width: Blurred video is scaled down to at most this width (bounded CPU and bytes).
        crf: libx264 quality of the blurred video (higher: fewer bytes).
        stale_seconds: Blur the whole picture while the newest analysed frame is further than
            this from the picture shown (:func:`analysis_gap`).
        motion_margin: Extra growth of each head region per side, as a share of its size.
        idle_seconds: A feed nobody watches closes its camera connection after this.
        backlog: Fragments queued for one viewer before it is cut back to the next keyframe.
        retry_seconds: Wait before reopening a camera after an error or the end of a file.
        max_lag: A blurred frame older than this when decoded is dropped instead of blurred
            and encoded (the feed skips frames to stay live when the CPU is short).
        skip_lag: Older than this, packets are not even decoded until the next keyframe.
    """

    max_width: int = 1280
    crf: int = 26
    stale_seconds: float = 2.0
    motion_margin: float = 0.5
    idle_seconds: float = 10.0
    backlog: int = 75
    retry_seconds: float = 1.0
    max_lag: float = 0.5
    skip_lag: float = 2.0


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a feed's fragmented MP4.

    Attributes:
        kind: ``init`` (``ftyp`` + ``moov``, sent first and again after a reconnect) or
            ``fragment`` (``moof`` + ``mdat`` of one frame).
        data: The bytes.
        generation: The camera connection it belongs to (a new one needs a new init).
        key: Whether the fragment starts with a keyframe (a viewer may start there).
        media: Presentation time of its frame in the video, in seconds.
        wall: Wall-clock seconds of its frame (the camera's clock mapping, see the module).
        made: Wall-clock seconds when the fragment was complete.
        codec: The RFC 6381 codec string (``avc1.PPCCLL``), for ``MediaSource.isTypeSupported``.
        width: Picture width.
        height: Picture height.
    """

    kind: Literal["init", "fragment"]
    data: bytes
    generation: int
    key: bool = False
    media: float = 0.0
    wall: float = 0.0
    made: float = 0.0
    codec: str = ""
    width: int = 0
    height: int = 0


def encode_chunk(chunk: Chunk, mode: VideoMode, sent: float) -> bytes:
    """One WebSocket message: a 4-byte big-endian header length, the JSON header, the MP4 bytes.

    One message (not a JSON message then a binary one) so the header can never be paired with
    another chunk's bytes.
    """
    header: dict[str, Any] = {
        "type": chunk.kind,
        "generation": chunk.generation,
        "key": chunk.key,
        "media": round(chunk.media, 6),
        "wall": round(chunk.wall, 6),
        "made": round(chunk.made, 6),
        "sent": round(sent, 6),
        "mode": mode,
    }
    if chunk.kind == "init":
        header.update(codec=chunk.codec, width=chunk.width, height=chunk.height)
    raw = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(raw)) + raw + chunk.data


def split_boxes(buffer: bytearray) -> Iterator[tuple[bytes, bytes]]:
    """Take the complete top-level MP4 boxes off the front of ``buffer``: ``(type, bytes)``.

    A box cut by the muxer's write buffer stays in ``buffer`` until the rest arrives.

    Raises:
        ValueError: A box header that cannot be an MP4 box (the muxer's output is corrupt).
    """
    while len(buffer) >= 8:
        size = struct.unpack_from(">I", buffer, 0)[0]
        kind = bytes(buffer[4:8])
        head = 8
        if size == 1:
            if len(buffer) < 16:
                return
            size = struct.unpack_from(">Q", buffer, 8)[0]
            head = 16
        if size < head:
            raise ValueError(f"bad MP4 box {kind!r} of {size} bytes")
        if len(buffer) < size:
            return
        data = bytes(buffer[:size])
        del buffer[:size]
        yield kind, data


def _codec_string(init: bytes) -> str:
    """``avc1.PPCCLL`` from the ``avcC`` box of an init segment (profile, constraints, level)."""
    at = init.find(b"avcC")
    if at < 0 or len(init) < at + 8:
        raise ValueError("the live stream is not H.264 (no avcC box): MSE cannot play it")
    profile, constraints, level = init[at + 5], init[at + 6], init[at + 7]
    return f"avc1.{profile:02x}{constraints:02x}{level:02x}"


class _Sink:
    """The muxer's output file: collects bytes; not seekable (fragments are written in order)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)


@dataclass(frozen=True, slots=True)
class _Stamp:
    key: bool
    media: float
    wall: float


class _Fragmenter:
    """An MP4 muxer writing to memory, turned into init and per-frame fragment chunks."""

    def __init__(self, generation: int) -> None:
        self._sink = _Sink()
        self.output: Any = av.open(self._sink, "w", format="mp4", options={"movflags": _MOVFLAGS})
        self._generation = generation
        self._init = bytearray()
        self._init_sent = False
        self._stamps: deque[_Stamp] = deque()
        self._moof: bytes | None = None
        self.width = 0
        self.height = 0

    def mux(self, packet: Any, stamp: _Stamp) -> list[Chunk]:
        self._stamps.append(stamp)
        self.output.mux(packet)
        return self._take()

    def _take(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        for kind, data in split_boxes(self._sink.buffer):
            if kind in (b"ftyp", b"moov"):
                self._init += data
                if kind == b"moov":
                    init = bytes(self._init)
                    self._init_sent = True
                    chunks.append(
                        Chunk(
                            "init",
                            init,
                            self._generation,
                            made=time.time(),
                            codec=_codec_string(init),
                            width=self.width,
                            height=self.height,
                        )
                    )
            elif kind == b"moof":
                self._moof = data
            elif kind == b"mdat" and self._moof is not None:
                stamp = self._stamps.popleft() if self._stamps else _Stamp(False, 0.0, 0.0)
                chunks.append(
                    Chunk(
                        "fragment",
                        self._moof + data,
                        self._generation,
                        key=stamp.key,
                        media=stamp.media,
                        wall=stamp.wall,
                        made=time.time(),
                    )
                )
                self._moof = None
        return chunks

    def close(self) -> list[Chunk]:
        try:
            self.output.close()
        except (av.error.FFmpegError, OSError) as error:
            log.debug("live video: closing the muxer: %s", error)
        return self._take()


def analysis_gap(latest: LiveFrame | None, filmed: float, clock: Moment | None) -> float | None:
    """Seconds from the analysed frame ``latest`` to a picture of its camera at ``filmed`` on
    ``clock`` (positive: the picture is newer); ``None`` without a frame or a shared clock.

    ``arrival``: ``filmed`` is when the server received the picture (a network camera's feed
    stamps its pictures from their arrival, never later), compared with when the decode worker
    published the analysed frame (:attr:`LiveFrame.published_at`): two readings of the server's
    clock, so the gap is the analysed frame's age (its analysis's delay, and the time since it
    reached the hub) less the picture's. Not ``tracked.timestamp``: the analysis anchors its
    stamps once per connection (its first picture's arrival, re-anchored only on a jump) and the
    feed on its own connection (moved back over a burst of cached pictures), so a media server's
    burst at the analysis's connect or a camera clock's drift over a long session left a lasting
    offset that blurred every picture whole. A frame published without a worker's time counts
    from its own stamp.

    ``analysis``: ``filmed`` is on the analysis's own clock (a file the feed follows, stamped
    ``anchor + pts`` as the analysis does), compared with the analysed frame's stamp.

    ``None``: the picture has no moment in common with the analysis (a file read as fast as it
    decodes, or one the feed cannot seek to the analysis's moment).
    """
    if latest is None or clock is None:
        return None
    if clock == "arrival":
        return filmed - latest.published_at
    return filmed - latest.tracked.timestamp


def live_regions(
    live: LiveHub,
    camera_id: str,
    privacy: PrivacyConfig,
    settings: VideoSettings,
    filmed: float,
    width: int,
    height: int,
    *,
    clock: Moment | None = "arrival",
    turns: int = 0,
) -> list[Box]:
    """Regions to hide in a ``width`` x ``height`` picture of the camera at ``filmed`` on
    ``clock`` (:func:`analysis_gap`): the heads of its newest analysed frame, grown by
    ``motion_margin``; the whole picture when that frame is more than ``stale_seconds`` from the
    picture either way or there is none (fail closed); none with privacy off.

    Judged by how old the analysed frame is, not by when the hub received it: a frame analysed
    seconds late (the rules thread held by a database stall, a backlog) arrives "fresh" with
    heads where the people stood seconds ago, and those boxes laid on the current picture left
    the people's heads where they are now visible.
    """
    if privacy.mode == "off":
        return []
    latest = live.latest(camera_id)
    gap = analysis_gap(latest, filmed, clock)
    if latest is None or gap is None or abs(gap) > settings.stale_seconds:
        return [(0, 0, width, height)]
    tracked = latest.tracked
    # ``turns``: the picture is the stored one of a rotated file, which the analysis saw upright
    # (FileSource): its heads are turned back onto it.
    stored_w, stored_h = (
        (tracked.height, tracked.width) if turns % 2 else (tracked.width, tracked.height)
    )
    sx = width / max(1, stored_w)
    sy = height / max(1, stored_h)
    grow = settings.motion_margin
    regions: list[Box] = []
    for box in head_regions(tracked, privacy):
        x1, y1, x2, y2 = stored_box(box, turns, tracked.width, tracked.height)
        dx, dy = (x2 - x1) * grow, (y2 - y1) * grow
        regions.append(
            (
                max(0, int((x1 - dx) * sx)),
                max(0, int((y1 - dy) * sy)),
                min(width, int((x2 + dx) * sx) + 1),
                min(height, int((y2 + dy) * sy) + 1),
            )
        )
    return regions


def hide_heads(
    picture: np.ndarray[Any, Any], regions: list[Box], mode: PrivacyMode
) -> np.ndarray[Any, Any]:
    """Hide ``regions`` in a YUV 4:2:0 picture (PyAV's packed ``yuv420p`` array: the Y rows, then
    U and V, each a quarter of the rows), plane by plane.

    Working in the encoder's own format skips two colour conversions a frame (to BGR and back):
    at 720p that halved the feed's CPU (5.6 against 10.8 ms a frame).
    """
    if not regions or mode == "off":
        return picture
    rows, width = picture.shape
    height = rows * 2 // 3
    quarter = height // 4
    half = [(x1 // 2, y1 // 2, (x2 + 1) // 2, (y2 + 1) // 2) for x1, y1, x2, y2 in regions]
    out = np.empty_like(picture)
    out[:height] = anonymise(picture[:height], regions, mode)
    for start in (height, height + quarter):
        plane = picture[start : start + quarter].reshape(height // 2, width // 2)
        out[start : start + quarter] = anonymise(plane, half, mode).reshape(quarter, width)
    return out


@dataclass(eq=False)
class Viewer:
    """One browser's queue of chunks of one feed (see the module docstring)."""

    feed: _Feed
    backlog: int
    loop: asyncio.AbstractEventLoop | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _queue: deque[Chunk] = field(default_factory=deque)
    _ready: threading.Event = field(default_factory=threading.Event)
    _need_key: bool = True
    skipped: int = 0
    ended: bool = False

    def offer(self, chunk: Chunk) -> None:
        """Queue ``chunk`` (the feed's thread); starts at an init, then at a keyframe."""
        with self._lock:
            if chunk.kind == "init":
                self._queue.clear()
                self._need_key = True
            elif self._need_key and not chunk.key:
                self.skipped += 1
                return
            elif len(self._queue) >= self.backlog:
                init = [c for c in self._queue if c.kind == "init"]
                self.skipped += len(self._queue) - len(init) + 1
                self._queue = deque(init)
                self._need_key = True
                return
            else:
                self._need_key = False
            self._queue.append(chunk)
        self._ready.set()
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is closed: the viewer is gone
                self.feed.leave(self)

    def take(self, timeout: float) -> list[Chunk]:
        """The chunks queued since the last call (blocks up to ``timeout``; run it on a worker
        thread from async code)."""
        self._ready.wait(timeout)
        with self._lock:
            self._ready.clear()
            taken = list(self._queue)
            self._queue.clear()
        return taken

    async def next(self, timeout: float) -> list[Chunk]:
        """:meth:`take` for a viewer made on an event loop (no worker thread held while
        waiting: forty tiles must not take the server's thread pool)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()
        return self.take(0)

    def close(self) -> None:
        """Stop receiving (the feed closes when nobody is left)."""
        self.feed.leave(self)
        self._ready.set()

    def end(self) -> None:
        """The feed ended (its camera disabled or removed by a site reload, or the server
        stopping): no chunk comes any more. Wakes the sender, which closes the socket so the
        browser connects again (to a new feed once the camera is back); before this, a viewer of
        a camera disabled and enabled again waited on the dead feed for good, its tile frozen."""
        self.ended = True
        self._ready.set()
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the viewer is gone
                self.loop.call_soon_threadsafe(self._wake.set)


class _Feed:
    """One camera in one mode: a thread that opens the camera and makes chunks for viewers."""

    def __init__(
        self,
        owner: LiveVideo,
        camera_id: str,
        mode: VideoMode,
    ) -> None:
        self._owner = owner
        self.camera_id = camera_id
        self.mode = mode
        self._source: tuple[str, str] | None = None
        self._realtime = False  # a file, played at its own rate by this feed
        self._follows = False  # ... and analysed in real time: follow the analysis's clock
        self._checked = 0.0
        self._duration: float | None = None  # a file's, when it can follow the analysis
        self._pass_start: float | None = None  # wall time of the file's start in this pass
        self._zero = 0  # the file's first stamp (its time zero for the analysis)
        self._unfollowable: tuple[str, str] | None = None  # a file it failed to seek or probe
        self._lock = threading.Lock()
        self._viewers: set[Viewer] = set()
        self._init: Chunk | None = None
        self._idle_since: float | None = None
        self.stop = threading.Event()
        self.generation = 0
        self.fragments = 0
        self.dropped = 0
        self.blurred_whole = 0  # pictures hidden whole: no analysed frame near them
        self._unlogged = 0  # ... since the last log line about it
        self._stale_logged: float | None = None
        self._arrivals = ArrivalOrigin()  # the blurred feed's clock origin, per connection
        self.thread = threading.Thread(
            target=self._run, name=f"live-video-{camera_id}-{mode}", daemon=True
        )

    # -- viewers ------------------------------------------------------------------------------

    def join(self, viewer: Viewer) -> bool:
        """Add a viewer; ``False`` if the feed is already closing (use a new one)."""
        with self._lock:
            if self.stop.is_set():
                return False
            self._viewers.add(viewer)
            self._idle_since = None
            init = self._init
        if init is not None:
            viewer.offer(init)
        return True

    def leave(self, viewer: Viewer) -> None:
        with self._lock:
            self._viewers.discard(viewer)
            if not self._viewers:
                self._idle_since = time.monotonic()

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def _publish(self, chunks: list[Chunk]) -> None:
        with self._lock:
            for chunk in chunks:
                if chunk.kind == "init":
                    self._init = chunk
                else:
                    self.fragments += 1
            targets = list(self._viewers)
        for chunk in chunks:
            for viewer in targets:
                viewer.offer(chunk)

    def _idle(self) -> bool:
        with self._lock:
            idle = (
                self._idle_since is not None
                and time.monotonic() - self._idle_since > self._owner.settings.idle_seconds
            )
            if idle:
                self.stop.set()
            return idle

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        settings = self._owner.settings
        try:
            while not self.stop.is_set() and not self._idle():
                camera = self._owner.camera(self.camera_id)
                if camera is None:
                    log.info("live video %s: camera removed or disabled", self.camera_id)
                    return
                self._source = (camera.source, camera.rtsp_transport)
                self._realtime = source_kind(camera.source) == "file"
                # realtime: false reads a file as fast as it decodes: no moment to follow
                self._follows = (
                    self._realtime and camera.realtime and self._unfollowable != self._source
                )
                container: Any = None
                shown = self.fragments
                pass_start: float | None = None
                ended = False
                try:
                    container = self._owner.open_camera(self.camera_id, camera)
                    self.generation += 1
                    pass_start = self._follow(container) if self._follows else None
                    ended = self._stream(container, pass_start)
                except (av.error.FFmpegError, OSError, ValueError) as error:
                    log.warning("live video %s (%s): %s", self.camera_id, self.mode, error)
                    shown = self.fragments  # an error: wait before trying again
                finally:
                    if container is not None:
                        with contextlib.suppress(av.error.FFmpegError, OSError):
                            container.close()
                if ended and pass_start is not None and self._duration:
                    # a followed file: on when the analysis's next pass starts (its last
                    # picture comes before the pass ends; none at all when the seek landed
                    # after it)
                    rest = pass_start + self._duration - time.time()
                    self.stop.wait(min(max(0.0, rest), self._duration))
                    continue
                if self._realtime and self.fragments > shown:
                    continue  # a file that played: on from its start without a gap
                self.stop.wait(settings.retry_seconds)
        finally:
            self.stop.set()
            self._owner._forget(self)
            with self._lock:  # (join refuses a viewer once stop is set)
                left = list(self._viewers)
            for viewer in left:
                viewer.end()

    def _analysis_anchor(self) -> float | None:
        """Wall time of media time zero of the camera's analysis (a file played as a camera
        stamps each picture ``anchor + pts``, pts counting on across passes), ``None`` while
        no analysed frame is younger than ``stale_seconds``."""
        latest = self._owner.live.latest(self.camera_id)
        if latest is None or time.time() - latest.received_at > self._owner.settings.stale_seconds:
            return None
        return latest.tracked.timestamp - latest.tracked.pts

    def _follow(self, container: Any) -> float | None:
        """Seek a file to the picture the analysis plays now; return the wall time of the
        file's start in the analysis's current pass (``None``: play from the start, no analysis
        to follow or no duration to count its passes by).

        The feed decodes its own copy of the file. Played from its start whenever somebody
        first watches, it showed another moment than the analysis, so the overlays (matched by
        wall time) sat beside the people, and the heads it blurred were where the analysed
        people stood at another moment, not where the pictured ones stood.
        """
        stream = container.streams.video[0]
        self._duration = media_duration(container, stream)
        anchor = self._analysis_anchor()
        self._pass_start = None
        if anchor is None or not self._duration or stream.time_base is None:
            return None
        zero = _first_picture_stamp(container)  # the analysis counts from there
        if zero is None:  # not probed: from the start, and not reopened to follow
            self._unfollowable = self._source
            self._follows = False
            return None
        self._zero = zero
        now = time.time()
        start = anchor + math.floor((now - anchor) / self._duration) * self._duration
        try:
            _seek_before(container, stream, zero + int((now - start) / stream.time_base))
        except av.error.FFmpegError:
            self._unfollowable = self._source  # reopened (retry_seconds), from the start
            raise
        self._pass_start = start
        return start

    def _out_of_step(self) -> bool:
        """Whether a file feed should reopen to follow the analysis: it started before the
        first analysed frame, or the analysis restarted with a new clock."""
        if not self._follows or not self._duration:
            return False
        anchor = self._analysis_anchor()
        if anchor is None:
            return False
        if self._pass_start is None:
            return True
        drift = (self._pass_start - anchor) % self._duration
        return min(drift, self._duration - drift) > _IN_STEP

    def _stream(self, container: Any, pass_start: float | None = None) -> bool:
        """Publish the chunks of an open camera until it ends (``True``) or the feed stops or
        must reopen (``False``); a file with ``pass_start`` is stamped and paced on the
        analysis's clock (see :meth:`_follow`)."""
        stream = container.streams.video[0]
        base = Fraction(stream.time_base or _ENCODER_BASE)
        fragmenter = _Fragmenter(self.generation)
        first: int | None = None
        wall0 = 0.0
        started = time.monotonic()
        encoder: Any = None
        shift = 0  # the first encoded picture's time: the MP4 track's zero
        out: Any = None
        offset = 0
        last = -1
        clock = PictureClock()  # the decoded pictures' times, even from decode-order stamps
        origin: float | None = None  # the first picture's time after the first packet's
        settings = self._owner.settings
        resumed = time.time()  # a followed file decodes up to here without skipping
        # which clock the pictures' times share with the analysis (none: a file shown at
        # another moment than the analysis's)
        moment: Moment | None = (
            "analysis" if pass_start is not None else None if self._realtime else "arrival"
        )
        catch_up = _CatchUp() if pass_start is not None and self.mode == "raw" else None
        keyed = pass_start is None  # a followed file starts at a keyframe
        waited = 0
        try:
            if self.mode == "raw":
                out = fragmenter.output.add_stream_from_template(stream)
                fragmenter.width, fragmenter.height = stream.width, stream.height
            else:
                stream.thread_type = "SLICE"  # frame threads would hold frames back (latency)
            for packet in container.demux(stream):
                if self.stop.is_set() or self._idle() or self._camera_changed():
                    return False
                if packet.size == 0 and (self.mode == "raw" or not self._realtime or first is None):
                    continue  # (a blurred file's end flushes the decoder's last pictures)
                if not keyed:  # after a seek, which may land between keyframes (MPEG-TS/PS)
                    if not packet.is_keyframe and waited < _KEY_WAIT:
                        waited += 1
                        continue  # no references to decode it from
                    keyed = True
                stamped = packet.pts is not None and packet.dts is not None
                if first is None and stamped and (self.mode == "blurred" or packet.is_keyframe):
                    first, wall0, offset = packet.pts, time.time(), packet.dts
                    self._arrivals = ArrivalOrigin()
                    self._arrivals.update(wall0, 0.0)
                    if pass_start is not None:  # the file's times on the analysis's clock
                        zero = self._zero
                        wall0 = pass_start + float((first - zero) * base)
                        due = pass_start + float((offset - zero) * base)
                        started = time.monotonic() + due - time.time()
                if self.mode == "raw":
                    # a fragmented stream starts on a keyframe, and needs every timestamp
                    if first is None or not stamped:
                        continue
                    wall0 = self._paced(packet, first, offset, base, started, wall0, pass_start)
                    media = float((packet.pts - first) * base)
                    stamp = _Stamp(bool(packet.is_keyframe), media, wall0 + media)
                    packet.pts -= offset
                    packet.dts -= offset
                    packet.stream = out
                    chunks = fragmenter.mux(packet, stamp)
                    if catch_up is not None:  # from the keyframe before the analysis's moment
                        self._publish(catch_up.add(chunks))  # (its inits at once)
                        if stamp.wall < resumed:
                            continue
                        # caught up, for good: a B-frame after this may still be stamped
                        # before the moment (decode order), and is sent as it comes
                        chunks, catch_up = catch_up.take(), None
                    self._publish(chunks)
                    continue
                if first is not None and stamped:
                    wall0 = self._paced(packet, first, offset, base, started, wall0, pass_start)
                    filmed = wall0 + float((packet.pts - first) * base)
                    catching_up = pass_start is not None and filmed < resumed
                    late = time.time() - filmed > settings.skip_lag and not catching_up
                    if late and not packet.is_keyframe:
                        self.dropped += 1  # far behind: catch up at the next keyframe
                        continue
                # every packet is decoded (a keyframe without timestamps still feeds the frames
                # after it); frames without a time, or before the first, are not shown
                for frame in packet.decode():
                    seconds = clock.seconds(frame)  # every picture counts into its judgement
                    if seconds is None or frame.pts is None or first is None:
                        continue
                    if origin is None:
                        origin = float((frame.pts - first) * base) - seconds
                    at = round((origin + seconds) / _ENCODER_BASE)
                    if at <= last:
                        continue
                    last = at
                    filmed = wall0 + float(at * _ENCODER_BASE)
                    if pass_start is not None and filmed < resumed:
                        continue  # before the analysis's moment: a reference, not shown (a
                        # browser given a burst of past pictures would play that far behind)
                    if time.time() - filmed > settings.max_lag:
                        self.dropped += 1  # behind: decoded (a reference), not shown
                        continue
                    if encoder is None:
                        encoder = self._encoder(fragmenter, stream, frame)
                        shift = at  # the muxer starts the track there, whatever its stamp
                    image = self._hidden(frame, filmed, moment, encoder.width, encoder.height)
                    picture = av.VideoFrame.from_ndarray(image, format="yuv420p")
                    picture.pts = at - shift
                    picture.time_base = _ENCODER_BASE
                    for encoded in encoder.encode(picture):
                        pts = encoded.pts if encoded.pts is not None else picture.pts
                        when = float(pts * _ENCODER_BASE)
                        wall = wall0 + float((pts + shift) * _ENCODER_BASE)
                        stamp = _Stamp(bool(encoded.is_keyframe), when, wall)
                        self._publish(fragmenter.mux(encoded, stamp))
        finally:
            self._publish(fragmenter.close())  # (held: all past; the next pass comes)
        return True

    def _camera_changed(self) -> bool:
        """Whether a site reload removed or disabled the camera or changed its source, or a
        file feed left the analysis's step (checked once a second): the feed then reconnects
        with the new settings, or ends."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return False
        self._checked = now
        camera = self._owner.camera(self.camera_id)
        if camera is None or (camera.source, camera.rtsp_transport) != self._source:
            return True
        return self._out_of_step()

    def _paced(
        self,
        packet: Any,
        first: int,
        offset: int,
        base: Fraction,
        started: float,
        wall0: float,
        pass_start: float | None,
    ) -> float:
        """Wait for a file's packet to be due (a file plays at its own rate, like a camera);
        return the connection's clock origin, moved back if this packet arrived earlier than it
        says it was filmed (a camera or media server bursts its first frames ahead of real time,
        and no frame can be filmed after it arrived). A file that follows the analysis
        (``pass_start``) keeps the analysis's origin.

        The blurred feed's origin also follows a camera whose clock runs slow, slowly
        (:class:`~safewatch.domain.arrival.ArrivalOrigin`): with an origin that only moved back
        every picture was "late" after a few hours (0.5 s behind at 50 ppm in under 3 h) and
        dropped, the viewer's video frozen with no reconnect.
        """
        if self._realtime:
            due = started + float((packet.dts - offset) * base)  # decode order
            self.stop.wait(max(0.0, due - time.monotonic()))
        if pass_start is not None:
            return wall0
        arrived = time.time()
        media = float((packet.pts - first) * base)
        if self.mode == "raw":  # nothing is dropped as late, and the browser's wall - media
            return min(wall0, arrived - media)  # (overlay matching) only ever moves back
        return self._arrivals.update(arrived, media)

    def _encoder(self, fragmenter: _Fragmenter, stream: Any, frame: Any) -> Any:
        settings = self._owner.settings
        width, height = frame.width, frame.height
        if width > settings.max_width:
            height = round(height * settings.max_width / width)
            width = settings.max_width
        width -= width % 2
        height -= height % 4  # whole rows of U and V in PyAV's packed yuv420p array
        rate = stream.average_rate or stream.guessed_rate or 25
        fps = max(1, round(float(rate)))
        encoder = fragmenter.output.add_stream("libx264", rate=fps)
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.codec_context.time_base = _ENCODER_BASE
        encoder.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "crf": str(settings.crf),
            "g": str(fps),  # a keyframe a second: a new viewer starts within a second
            "bf": "0",
        }
        fragmenter.width, fragmenter.height = width, height
        return encoder

    def _hidden(
        self, frame: Any, filmed: float, clock: Moment | None, width: int, height: int
    ) -> np.ndarray[Any, Any]:
        picture = frame.to_ndarray(format="yuv420p", width=width, height=height)
        owner = self._owner
        privacy = owner.privacy(self.camera_id)
        regions = live_regions(
            owner.live,
            self.camera_id,
            privacy,
            owner.settings,
            filmed,
            width,
            height,
            clock=clock,
            # Only a file is analysed upright (FileSource); a network camera's frames are
            # analysed as stored, display rotation or not, and its boxes already fit.
            turns=quarter_turns(frame.rotation) if self._realtime else 0,
        )
        if privacy.mode != "off":
            self._count_stale(filmed, clock)
        return hide_heads(picture, regions, privacy.mode)

    def _count_stale(self, filmed: float, clock: Moment | None) -> None:
        """Count a picture blurred whole for want of an analysed frame near it, and say why
        at most once a minute: an operator who sees only blur must learn whether the analysis
        is behind, down, or on another clock."""
        latest = self._owner.live.latest(self.camera_id)
        gap = analysis_gap(latest, filmed, clock)
        limit = self._owner.settings.stale_seconds
        if gap is not None and abs(gap) <= limit:
            return
        self.blurred_whole += 1
        self._unlogged += 1
        now = time.monotonic()
        if self._stale_logged is not None and now - self._stale_logged < _STALE_LOG_SECONDS:
            return
        if latest is None:
            why = "no analysed frame of the camera"
        elif gap is None:
            why = "the file is not shown at the moment the analysis sees"
        else:
            why = f"the newest analysed frame is {gap:+.1f} s from the picture (limit {limit:g} s)"
        log.warning(
            "live video %s: %d pictures blurred whole since the last report (%d in all): %s",
            self.camera_id,
            self._unlogged,
            self.blurred_whole,
            why,
        )
        self._stale_logged, self._unlogged = now, 0


class LiveVideo:
    """The live video feeds of a dashboard (one per watched camera and mode).

    Args:
        live: The analysed frames' hub (head positions for the blurred video).
        site: The site in force (camera sources, privacy).
        settings: How the video is made.
        opener: Opens a camera (id, config, the site's folder); PyAV by default.
    """

    def __init__(
        self,
        live: LiveHub,
        site: Callable[[], LoadedSite],
        settings: VideoSettings | None = None,
        *,
        opener: Callable[[str, CameraConfig, Path], Any] | None = None,
    ) -> None:
        self.live = live
        self._site = site
        self.settings = settings or VideoSettings()
        self._opener = opener or _open_camera
        self._lock = threading.Lock()
        self._feeds: dict[tuple[str, VideoMode], _Feed] = {}

    def camera(self, camera_id: str) -> CameraConfig | None:
        """The camera's settings in force, ``None`` if it is gone from the site or disabled."""
        camera = self._site().config.cameras.get(camera_id)
        return camera if camera is not None and camera.enabled else None

    def open_camera(self, camera_id: str, camera: CameraConfig) -> Any:
        """Open the camera with the opener (relative file paths from the site's folder)."""
        return self._opener(camera_id, camera, self._site().base_dir)

    def privacy(self, camera_id: str) -> PrivacyConfig:
        """The camera's privacy settings in force."""
        return self._site().config.privacy_for(camera_id)

    def watch(
        self, camera_id: str, mode: VideoMode, loop: asyncio.AbstractEventLoop | None = None
    ) -> Viewer:
        """A new viewer of the camera's feed in ``mode`` (the feed starts if it is not running);
        with ``loop``, :meth:`Viewer.next` awaits its chunks on that loop.

        Raises:
            KeyError: No such camera in the site, or it is disabled.
        """
        if self.camera(camera_id) is None:
            raise KeyError(camera_id)
        with self._lock:
            while True:
                feed = self._feeds.get((camera_id, mode))
                if feed is None:
                    feed = _Feed(self, camera_id, mode)
                    self._feeds[(camera_id, mode)] = feed
                    feed.thread.start()
                viewer = Viewer(feed, self.settings.backlog, loop)
                if feed.join(viewer):
                    return viewer
                self._feeds.pop((camera_id, mode), None)  # closing: start a fresh one

    def feeds(self) -> dict[tuple[str, VideoMode], int]:
        """Running feeds and their viewer counts."""
        with self._lock:
            return {key: feed.viewers for key, feed in self._feeds.items()}

    def _forget(self, feed: _Feed) -> None:
        with self._lock:
            if self._feeds.get((feed.camera_id, feed.mode)) is feed:
                del self._feeds[(feed.camera_id, feed.mode)]

    def close(self, timeout: float = 3.0) -> None:
        """Stop every feed, waiting for their threads ``timeout`` seconds in all (a feed
        blocked opening an unreachable camera cannot be cut short; one still decoding at
        interpreter exit could abort the process, see :func:`close_at_shutdown`)."""
        with self._lock:
            feeds = list(self._feeds.values())
        for feed in feeds:
            feed.stop.set()
        deadline = time.monotonic() + timeout
        for feed in feeds:
            feed.thread.join(max(0.0, deadline - time.monotonic()))


@contextlib.asynccontextmanager
async def close_at_shutdown(app: Starlette) -> AsyncIterator[None]:
    """An app's lifespan that stops its live video feeds (``app.state.live_video``) at
    shutdown; every app that may hold them (``create_app``'s, an analyzer's internal video app)
    uses it.

    The feeds' threads decode and encode in native code. One still running when the
    interpreter exits is cut off there, and inside OpenCV that aborts the whole process
    ("terminate called without an active exception", exit code 134): ``safewatch serve``
    stopped by SIGTERM then reads as a crash to systemd or Docker. ``HttpServer`` runs uvicorn
    with the lifespan on so this happens there too.
    """
    yield
    video = getattr(app.state, "live_video", None)
    if isinstance(video, LiveVideo):
        await anyio.to_thread.run_sync(video.close)


class _CatchUp:
    """A raw feed's pictures from the keyframe before the analysis's moment up to it, held and
    sent as one fragment (:func:`_merged`). Only the newest GOP is kept: each keyframe fragment
    restarts it (a fragment comes out of the muxer one packet late, so the keyframe *packet*
    is not where it starts). Past :data:`_HELD_LIMIT` bytes nothing is held until the next
    keyframe, and viewers start there."""

    def __init__(self) -> None:
        self._held: list[Chunk] = []
        self._bytes = 0

    def add(self, chunks: list[Chunk]) -> list[Chunk]:
        """Hold the fragments of ``chunks``; return its inits, to publish now."""
        for chunk in chunks:
            if chunk.kind == "init":
                continue
            if chunk.key:
                self._held, self._bytes = [], 0
            elif not self._held:
                continue  # after an overflow: nothing until the next keyframe
            self._held.append(chunk)
            self._bytes += len(chunk.data)
            if self._bytes > _HELD_LIMIT:
                self._held = []
        return [c for c in chunks if c.kind == "init"]

    def take(self) -> list[Chunk]:
        """The held pictures as one fragment (none if nothing is held)."""
        return _merged(self._held)


def _merged(fragments: list[Chunk]) -> list[Chunk]:
    """A raw feed's catch-up after a seek (the keyframe before the analysis's moment up to
    it: a whole GOP, 10 s and about 250 pictures for the example clip) as one fragment, so it takes
    one place in a viewer's backlog (75) instead of overflowing it and losing everything up to
    the next keyframe; the player then jumps to the newest picture."""
    if len(fragments) < 2:
        return fragments
    last = fragments[-1]
    data = b"".join(c.data for c in fragments)
    return [replace(fragments[0], data=data, media=last.media, wall=last.wall, made=last.made)]


def _first_picture_stamp(container: Any) -> int | None:
    """The first decoded picture's presentation stamp: the analysis counts a file's times
    from it (:class:`~safewatch.ingest.file_source.FileSource`, which skips damaged packets
    too). Neither the stream's ``start_time`` (0 for an AVI whose first picture is stamped 1)
    nor the first packet's (a file cut mid-GOP: 8.9 s before its first decodable picture) will
    do. Read from a second opening of the file, so the feed's own decoder is not opened before
    it is set up; ``None`` if that fails (the feed then plays the file unfollowed)."""
    try:
        with av.open(container.name) as probe:
            for packet in probe.demux(video=0):
                try:
                    pictures = packet.decode()
                except av.error.FFmpegError:
                    continue  # a damaged packet
                for picture in pictures:
                    if picture.pts is not None:
                        return int(picture.pts)
    except (av.error.FFmpegError, OSError) as error:
        log.info("live video: cannot read the first picture of %s: %s", container.name, error)
    return None


def _seek_before(container: Any, stream: Any, target: int) -> None:
    """Seek so that a keyframe at or before ``target`` (stream time base) is read first or soon.

    An indexed file (MP4, MKV, AVI) lands on the keyframe before the target. MPEG-TS lands
    anywhere, often after the target (measured: 15.6 s for 12.0 s, the last packet for 22.0 s)
    or between keyframes, and a feed waiting for the next keyframe then showed the analysis's
    moment seconds late or not at all. So it steps back until a keyframe read from the landing
    lies at or before the target; the pictures before the target are decoded, not shown.
    """
    rate = stream.time_base
    for back in (0.0, 5.0, 10.0, 20.0, 40.0, 60.0):
        at = target - int(back / rate)
        if at <= 0:
            break
        container.seek(at, stream=stream)
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            if packet.pts > target:
                break
            if packet.is_keyframe:
                container.seek(at, stream=stream)  # again, to read from the landing
                return
    container.seek(0)


def _open_camera(camera_id: str, camera: CameraConfig, base_dir: Path) -> Any:
    """A live camera as the decode worker opens it; a file (tests, demo sites) from the start."""
    if source_kind(camera.source) == "file":
        return av.open(str(file_source_path(camera_id, camera.source, base_dir)))
    spec = build_open_spec(camera.source, rtsp_transport=camera.rtsp_transport)
    return av.open(spec.target, format=spec.format, options=spec.options, timeout=10.0)
