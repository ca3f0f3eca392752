"""A network or USB camera, decoded on a background thread that never gives up.

The decode thread connects, decodes, samples to the analysis rate and keeps only the newest
frames; the consumer takes them when it is ready. Slow analysis therefore costs dropped (and
counted) frames, never growing latency or memory. Network trouble becomes a state change
(``stalled``, ``reconnecting``) and a capped exponential backoff, not an exception in the pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

import av
from av.container import InputContainer

from safewatch.domain.frame import Frame, Image
from safewatch.ingest.av_errors import describe_error
from safewatch.ingest.av_options import build_open_spec
from safewatch.ingest.backoff import STABLE_SECONDS, Backoff
from safewatch.ingest.convert import BgrConverter
from safewatch.ingest.freeze import FreezeWatch
from safewatch.ingest.picture_clock import PictureClock
from safewatch.ingest.redact import redact_url
from safewatch.ingest.sampler import FrameSampler
from safewatch.ingest.state import (
    SourceInfo,
    SourceState,
    SourceStats,
    StateChange,
    StateListener,
)

__all__ = ["AHEAD_LIMIT", "LiveSource"]

logger = logging.getLogger(__name__)

ThreadType = Literal["AUTO", "FRAME", "SLICE", "NONE"]

# Errors that no amount of retrying fixes: the URL names a protocol or format FFmpeg lacks.
_PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    av.error.ProtocolNotFoundError,
    av.error.DemuxerNotFoundError,
    av.error.DecoderNotFoundError,
)

_TROUBLE = (SourceState.STALLED, SourceState.FROZEN, SourceState.FAILED)

_INVENTED_CLOCK = frozenset({"mpjpeg", "mjpeg"})
"""Demuxers whose timestamps are made up: FFmpeg's MJPEG demuxers (an HTTP camera's
``multipart/x-mixed-replace`` stream, or bare JPEGs one after another) count pictures at their
``framerate`` option, 25 fps, whatever the camera sends (PyAV reports no ``average_rate``, a
``guessed_rate`` of 25 and a time base of 1/25). Read as media time, a 10 fps camera's frames came
0.04 s apart: it was analysed at 2 fps instead of 5 and its stamps fell 0.6 s behind every second.
Frames from these are stamped with their wall receive time instead."""


AHEAD_LIMIT = 60.0
"""Seconds a camera's stamps may run ahead of the wall clock before they are re-anchored on it
(the recorder re-anchors its segments' times by the same limit). Stamps behind it are left
there, by both: a forward step would split every track and incident. The recorder alone also
re-anchors when the wall clock steps forward by more than this between two packets: its segments
would be named that far in the past, and deleted by age as they close."""


@dataclass(slots=True)
class _Session:
    """Clock anchoring of one connection: wall receive time of its first frame and that PTS."""

    anchor_wall: float
    anchor_pts: float
    last_pts: float
    last_received: float = 0.0
    """Wall time the previous frame of this connection arrived."""


class LiveSource:
    """RTSP, HTTP (MJPEG, HLS, MPEG-TS) or USB camera with reconnects and bounded buffering.

    Timestamps: the first frame after each (re)connect is stamped with its wall receive time; later
    frames add their PTS difference to it, so frame spacing is the camera's, not the network's
    (MJPEG has no timestamps of its own: each of its frames is stamped with its receive time). A
    PTS that jumps back, or stamps that run ahead of the wall clock by more than
    :data:`AHEAD_LIMIT` (in one step or summed since the anchor: a camera clock that runs fast)
    re-anchor the same way, so a camera's clock reset or fast drift never puts incident times
    more than that in the future. Time never moves backwards (a new anchor is at least one frame
    after the last stamp), so stamps that ran ahead are held at the limit (frames one native
    interval apart), never stepped back; a clock that runs slow is left behind, as the recorder
    leaves it (a step forward would end every track and incident). The host clock stepping back
    is no camera running ahead: the stamps keep the camera's pace, that far ahead of the host
    clock, until the source is made again (:meth:`_received`). ``Frame.pts`` is seconds
    since the very first frame, and ``seq`` keeps counting across reconnects. Sampling runs on
    that unified timeline in the decode thread, so unsampled frames are never converted to BGR.

    States: ``connecting`` -> ``streaming``; a read that fails or no frame for ``stall_timeout``
    seconds -> ``stalled`` (the latter) -> ``reconnecting`` -> ``streaming`` ... ``failed`` when the
    URL can never work (unknown protocol) or ``max_attempts`` connection attempts in a row failed;
    ``ended`` after :meth:`close`. A picture that stays the same, bit for bit, for
    ``freeze_timeout`` seconds -> ``frozen`` (:mod:`safewatch.ingest.freeze`): its frames are
    withheld (counted in ``SourceStats.frozen``), so the analysis sees the camera as away rather
    than a scene that never moves, until the picture changes (-> ``streaming``). The connection
    is kept: the picture may come back by itself, and a reconnect would show ``streaming`` for
    another ``freeze_timeout`` each time. Every URL in logs and messages is redacted.

    Args:
        camera_id: Camera key copied into every frame.
        url: ``rtsp(s)://``, ``http(s)://``, ``/dev/videoN`` or ``v4l2:///dev/videoN``.
        fps: Analysis frames per second.
        rtsp_transport: ``"tcp"`` or ``"udp"`` for RTSP.
        io_timeout: Seconds a socket read or the connection may block (FFmpeg ``timeout``).
        stall_timeout: Seconds without a new frame (a picture whose stamp does not advance is
            none) before the stream counts as stalled.
        max_buffered: Newest frames kept for the consumer; older ones are dropped and counted.
        backoff: Reconnect delays; default 0.5 s doubling to 30 s with 20 % jitter, started over
            once a connection has streamed for :data:`~safewatch.ingest.backoff.STABLE_SECONDS`.
        max_attempts: Consecutive failed connection attempts before ``failed``; ``None``: never
            give up (a camera may come back after a power cut).
        freeze_timeout: Seconds of an unchanged picture before the source is ``frozen``;
            ``None`` never looks.
        thread_type: FFmpeg decoder threading.
        on_state: Listener for state changes, called on the decode thread (or the closing one)
            while the source's lock is held: it must be quick; it may read the source.
        clock: Wall clock, seconds since the epoch; tests may pass a fake.
        monotonic: Clock for stalls and connection lengths; tests may pass a fake.
    """

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        fps: float,
        rtsp_transport: Literal["tcp", "udp"] = "tcp",
        io_timeout: float = 5.0,
        stall_timeout: float = 10.0,
        max_buffered: int = 2,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        freeze_timeout: float | None = None,
        thread_type: ThreadType = "AUTO",
        on_state: StateListener | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, got {max_buffered}")
        if not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be positive, got {stall_timeout}")
        self._camera_id = camera_id
        self._url = url
        self.redacted_url = redact_url(url)
        self._spec = build_open_spec(url, rtsp_transport=rtsp_transport, io_timeout=io_timeout)
        self._io_timeout = io_timeout
        self._stall_timeout = stall_timeout
        self._sampler = FrameSampler(fps)
        self._backoff = backoff or Backoff()
        self._max_attempts = max_attempts
        # One watch for the source's life, not per connection: a media server that repeats the
        # last picture after a reconnect is still frozen.
        self._freeze = FreezeWatch(freeze_timeout) if freeze_timeout is not None else None
        self._thread_type = thread_type
        self._on_state = on_state
        self._clock = clock
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._buffer: deque[Frame] = deque()
        self._max_buffered = max_buffered
        self._state = SourceState.CONNECTING
        self._message = "not started"
        self._info = SourceInfo(width=0, height=0, fps=None)
        self._stats = SourceStats()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._origin: float | None = None  # wall time of the very first frame
        self._last_timestamp: float | None = None
        # (wall, monotonic) at the previous frame, and the seconds by which the wall clock has
        # stepped back since this source started (added to every receive time): _received.
        self._clock_seen: tuple[float, float] | None = None
        self._wall_shift = 0.0

    @property
    def camera_id(self) -> str:
        """The camera key copied into every frame."""
        return self._camera_id

    @property
    def state(self) -> SourceState:
        """The current state."""
        with self._cond:
            return self._state

    @property
    def message(self) -> str:
        """Why the source is in its current state (redacted), for health pages."""
        with self._cond:
            return self._message

    @property
    def info(self) -> SourceInfo:
        """Size and native fps from the latest connection; zeros before the first one."""
        with self._cond:
            return self._info

    @property
    def stats(self) -> SourceStats:
        """A snapshot of the counters."""
        with self._cond:
            return self._stats

    def start(self) -> None:
        """Start connecting in the background (``frames()`` does this too); idempotent."""
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"ingest-{self._camera_id}", daemon=True
            )
        self._thread.start()

    def frames(self) -> Iterator[Frame]:
        """Yield the newest sampled frames until the source is closed or has failed.

        Blocks while the camera is away; never raises for network trouble. Frames still buffered
        when the source fails are delivered first; after :meth:`close` nothing more is yielded.
        """
        self.start()
        while True:
            with self._cond:
                while not self._buffer and not self._closed.is_set() and not self._state.is_final:
                    self._cond.wait(0.5)
                if self._closed.is_set() or not self._buffer:
                    return
                frame = self._buffer.popleft()
            yield frame

    def close(self) -> None:
        """Stop the decode thread and end ``frames()``; safe from any thread, idempotent.

        The decode thread notices within ``io_timeout`` at worst (a blocked socket read cannot be
        interrupted sooner); it is a daemon thread, so it never keeps the process alive.
        """
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._io_timeout + 1.0)
        self._set_state(SourceState.ENDED, "closed")

    # -- decode thread -------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        first = True
        while not self._closed.is_set():
            if not first:
                delay = self._backoff.next_delay()
                logger.info(
                    "camera %s: reconnecting to %s in %.1f s",
                    self._camera_id,
                    self.redacted_url,
                    delay,
                )
                if self._closed.wait(delay):
                    break
                self._bump(reconnects=1)
            first = False
            try:
                container = av.open(
                    self._spec.target,
                    mode="r",
                    format=self._spec.format,
                    options=self._spec.options,
                    timeout=(self._io_timeout, self._stall_timeout),
                )
            except Exception as error:  # anything FFmpeg raises is a connection failure here
                failures += 1
                reason = describe_error(error, self._url)
                logger.warning(
                    "camera %s: cannot open %s: %s", self._camera_id, self.redacted_url, reason
                )
                if isinstance(error, _PERMANENT_ERRORS):
                    message = f"cannot open {self.redacted_url}: {reason}"
                    self._set_state(SourceState.FAILED, message)
                    return
                if self._max_attempts is not None and failures >= self._max_attempts:
                    self._set_state(
                        SourceState.FAILED,
                        f"gave up on {self.redacted_url} after {failures} attempts: {reason}",
                    )
                    return
                self._set_state(
                    SourceState.RECONNECTING, f"cannot open {self.redacted_url}: {reason}"
                )
                continue
            try:
                delivered, reason = self._decode(container)
            finally:
                container.close()
            if delivered:
                failures = 0
            else:
                failures += 1
            if self._closed.is_set():
                break
            logger.warning(
                "camera %s: stream %s interrupted: %s", self._camera_id, self.redacted_url, reason
            )
            self._set_state(SourceState.RECONNECTING, f"{self.redacted_url}: {reason}")

    def _decode(self, container: InputContainer) -> tuple[bool, str]:
        """Decode one connection until it fails, stalls or the source closes.

        Returns:
            Whether any frame was decoded, and why the connection ended.
        """
        if not container.streams.video:
            return False, "no video stream"
        stream = container.streams.video[0]
        stream.thread_type = self._thread_type
        by_arrival = not _INVENTED_CLOCK.isdisjoint(container.format.name.split(","))
        rate = None if by_arrival else stream.average_rate or stream.guessed_rate
        native_fps = float(rate) if rate else None
        with self._cond:
            self._info = SourceInfo(
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=native_fps,
            )
        convert = BgrConverter()
        stamps = PictureClock()  # one per connection: a new one's stamps start afresh
        session: _Session | None = None
        delivered = False
        connected = last_frame = self._monotonic()
        stable = False
        try:
            for packet in container.demux(stream):
                if self._closed.is_set():
                    return delivered, "closed"
                if self._monotonic() - last_frame > self._stall_timeout:
                    return delivered, self._stalled()
                try:
                    pictures = stream.decode(packet)
                except av.FFmpegError:
                    self._bump(bad_packets=1)
                    continue
                for picture in pictures:
                    now = self._monotonic()
                    previous = self._last_timestamp
                    session = self._deliver(
                        picture, session, native_fps, convert, stamps, by_arrival=by_arrival
                    )
                    if self._last_timestamp == previous:
                        # Thrown away (its stamp did not advance): no frame for the stall clock,
                        # or a stream whose PTS stopped advancing showed streaming, delivered
                        # nothing and never reconnected.
                        continue
                    last_frame = now
                    if not delivered:
                        delivered = True
                        if not self._still_frozen():  # else the first picture that moves
                            self._set_state(SourceState.STREAMING, f"receiving {self.redacted_url}")
                    if not stable and now - connected >= STABLE_SECONDS:
                        # Only a connection that lasted starts the delays over: reset at its first
                        # picture, a camera that accepts, sends one and drops was retried every
                        # 0.5 s forever, with a warning each time.
                        stable = True
                        self._backoff.reset()
        except Exception as error:  # a read error or timeout ends this connection, not the thread
            if self._monotonic() - last_frame >= self._stall_timeout * 0.9:
                return delivered, self._stalled()
            return delivered, describe_error(error, self._url)
        return delivered, "stream ended"

    def _stalled(self) -> str:
        reason = f"no frame for {self._stall_timeout:g} s"
        self._set_state(SourceState.STALLED, f"{self.redacted_url}: {reason}")
        return reason

    def _received(self) -> float:
        """The wall receive time of a frame, on the wall clock as it was before any step back.

        Stamps never go back, so after the host clock stepped back (an NTP correction, a VM
        resumed) they stay ahead of it. Measured on the stepped clock, that read as a camera
        clock running ahead, and every frame was re-anchored one native interval after the
        last: stamps at the announced rate rather than the camera's (half speed for a camera
        sending 12.5 of an announced 25 fps), for good. A step back, seen as the wall clock
        moving less than the monotonic one by over :data:`AHEAD_LIMIT`, is logged once and
        added to every later receive time: the stamps go on at the camera's pace, that far
        ahead of the host clock, until the camera's worker starts again (its stamps are then
        anchored on the host clock, and the rules stage starts the camera afresh).

        A step forward (the wall clock moving more than the monotonic one by over the limit)
        takes back as much of that shift as it can: a wrong step back later corrected left the
        stamps an hour ahead of a host clock that was right again, by-arrival streams at once
        and the others from their next connection on, for good.
        """
        wall, mono = self._clock(), self._monotonic()
        if self._clock_seen is not None:
            seen_wall, seen_mono = self._clock_seen
            back = (mono - seen_mono) - (wall - seen_wall)
            limit = max(self._stall_timeout, AHEAD_LIMIT)
            if back > limit:
                self._wall_shift += back
                logger.warning(
                    "camera %s: the host clock stepped %.0f s back; its frames keep their "
                    "time, %.0f s ahead of the host clock, until its worker restarts or the host "
                    "clock steps forward",
                    self._camera_id,
                    back,
                    self._wall_shift,
                )
            elif -back > limit and self._wall_shift > 0:
                taken = min(self._wall_shift, -back)
                self._wall_shift -= taken
                logger.warning(
                    "camera %s: the host clock stepped %.0f s forward; its frames are %.0f s "
                    "ahead of the host clock now",
                    self._camera_id,
                    -back,
                    self._wall_shift,
                )
        self._clock_seen = (wall, mono)
        return wall + self._wall_shift

    def _deliver(
        self,
        picture: av.VideoFrame,
        session: _Session | None,
        native_fps: float | None,
        convert: BgrConverter,
        stamps: PictureClock,
        *,
        by_arrival: bool = False,
    ) -> _Session:
        received = self._received()
        # A stream without a media clock of its own (_INVENTED_CLOCK) runs on the wall clock.
        pts = received if by_arrival else stamps.seconds(picture)
        if session is not None and pts is None:
            pts = session.last_pts + (1.0 / native_fps if native_fps else 0.0)
        if pts is None:
            pts = 0.0
        # A stamp that runs ahead of the wall clock by more than a minute (an encoder restart, new
        # RTP timestamps) would put every later frame, incident and clip that far in the future.
        # A minute: HLS delivers whole segments (and players prefetch a few) faster than real
        # time, which runs ahead by tens of seconds and is no jump. Both one frame's step (a
        # jump) and the running total since the anchor count: a camera clock 0.2 % fast never
        # jumps but ran 42 s ahead after 6 h and 168 s after 24 h, while the recorder (which
        # measures the running total) re-anchored its segments, so footage and incidents
        # disagreed. A clock running slow is left behind, as the recorder leaves it: catching up
        # would be one forward step of a minute, a gap that ends every track and open incident
        # and opens them again as new ones.
        limit = max(self._stall_timeout, AHEAD_LIMIT)
        jump = drift = 0.0
        if session is not None:
            jump = (pts - session.last_pts) - (received - session.last_received)
            drift = (pts - session.anchor_pts) - (received - session.anchor_wall)
        if session is None or pts < session.last_pts or jump > limit or drift > limit:
            # New connection, or the camera restarted its clock: re-anchor on the wall clock, never
            # earlier than one frame after the previous stamp.
            anchor = received
            if self._last_timestamp is not None:
                step = 1.0 / native_fps if native_fps else 1e-3
                anchor = max(anchor, self._last_timestamp + step)
            session = _Session(anchor_wall=anchor, anchor_pts=pts, last_pts=pts)
        session.last_pts = pts
        session.last_received = received
        timestamp = session.anchor_wall + (pts - session.anchor_pts)
        if self._last_timestamp is not None and timestamp <= self._last_timestamp:
            self._bump(decoded=1)
            return session
        self._last_timestamp = timestamp
        if self._origin is None:
            self._origin = timestamp
        self._bump(decoded=1)
        if self._freeze is not None and picture.key_frame:
            self._freeze.keyframe(timestamp)
        if not self._sampler.keep(timestamp):
            return session
        image = convert(picture)
        if self._withheld_as_frozen(image, timestamp):
            return session
        frame = Frame(self._camera_id, self._seq, timestamp - self._origin, timestamp, image)
        self._seq += 1
        with self._cond:
            dropped = 0
            while len(self._buffer) >= self._max_buffered:
                self._buffer.popleft()
                dropped += 1
            self._buffer.append(frame)
            self._stats = replace(
                self._stats,
                sampled=self._stats.sampled + 1,
                dropped=self._stats.dropped + dropped,
            )
            self._cond.notify_all()
        return session

    def _withheld_as_frozen(self, image: Image, timestamp: float) -> bool:
        """Track the picture's changes; ``True`` (and counted) while it is frozen."""
        watch = self._freeze
        if watch is None:
            return False
        if watch.frozen(image, timestamp):
            with self._cond:
                self._stats = replace(self._stats, frozen=self._stats.frozen + 1)
                state = self._state
            if state is not SourceState.FROZEN:
                self._set_state(
                    SourceState.FROZEN,
                    f"{self.redacted_url}: the picture has not changed for "
                    f"{watch.unchanged_for(timestamp):.0f} s (frozen camera or blank picture)",
                )
            return True
        with self._cond:
            state = self._state
        if state is not SourceState.STREAMING:  # frozen, or a reconnect that kept it frozen
            self._set_state(
                SourceState.STREAMING, f"receiving {self.redacted_url} (the picture moves again)"
            )
        return False

    def _still_frozen(self) -> bool:
        """Whether the picture was frozen at its last check, or the source says so: a
        reconnect's first picture (not sampled, so not checked) must not show ``streaming``
        between two ``frozen``."""
        if self.state is SourceState.FROZEN:
            return True
        return self._freeze is not None and self._freeze.is_frozen

    def _bump(self, *, decoded: int = 0, bad_packets: int = 0, reconnects: int = 0) -> None:
        with self._cond:
            self._stats = replace(
                self._stats,
                decoded=self._stats.decoded + decoded,
                bad_packets=self._stats.bad_packets + bad_packets,
                reconnects=self._stats.reconnects + reconnects,
            )

    def _set_state(self, state: SourceState, message: str) -> None:
        with self._cond:
            previous = self._state
            if previous is state or previous.is_final:
                return
            self._state = state
            self._message = message
            log = logger.warning if state in _TROUBLE else logger.info
            log("camera %s: %s -> %s: %s", self._camera_id, previous, state, message)
            if self._on_state is not None:
                # Under the lock, so a consumer that sees the new state has seen it reported too.
                change = StateChange(self._camera_id, previous, state, message, time.time())
                try:
                    self._on_state(change)
                except Exception:
                    logger.exception("camera %s: state listener failed", self._camera_id)
            self._cond.notify_all()
