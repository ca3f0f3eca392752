"""Decode a video file as fast as the machine allows, deterministically.

Used for audits and backtests: every sampled frame is delivered (nothing is dropped for being
late) and time comes from the file's stamps, so two runs over one file give identical frames and
timestamps, whatever the CPU. :mod:`~safewatch.ingest.picture_clock` reads them (the PTS, or
the DTS where a container's PTS step back, as in AVI files with B-frames) and keeps the frames'
times always increasing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from safewatch.domain.frame import Frame, Image
from safewatch.errors import SourceError
from safewatch.ingest.av_errors import describe_error
from safewatch.ingest.convert import BgrConverter
from safewatch.ingest.picture_clock import HOLD_PICTURES, PictureClock, Stamps, SteadyTimes
from safewatch.ingest.sampler import FrameSampler
from safewatch.ingest.state import (
    SourceInfo,
    SourceState,
    SourceStats,
    StateChange,
    StateListener,
)

__all__ = [
    "FileSource",
    "OriginKind",
    "media_duration",
    "quarter_turns",
    "stored_box",
    "upright",
]

logger = logging.getLogger(__name__)

OriginKind = Literal["argument", "creation_time", "epoch"]
ThreadType = Literal["AUTO", "FRAME", "SLICE", "NONE"]


class FileSource:
    """A video file decoded with PyAV and sampled by PTS to the analysis frame rate.

    The file is opened in the constructor, so a missing or unreadable file is a
    :class:`~safewatch.errors.SourceError` naming it, before any pipeline starts. Corruption found
    later is not fatal: undecodable packets are skipped and counted, a warning gives the count, and
    the frames that did decode are delivered.

    Timestamps: ``Frame.pts`` is the frame's PTS in seconds relative to the first decoded frame;
    ``Frame.timestamp`` is ``origin + pts``. The origin is, in order of preference, the ``origin``
    argument (the caller knows best, e.g. from an NVR export's name), the container's
    ``creation_time`` metadata, or 0.0 (the Unix epoch) so a file without either still gives
    reproducible times. :attr:`origin_kind` says which was used.

    A rotated video (a phone's, stored sideways with a display rotation) is delivered upright, as
    a player shows it (:func:`upright`); :attr:`info` gives the upright size from its first frame.

    Only sampled frames are converted to BGR: conversion costs about as much as decoding, so at
    5 fps from a 25 fps file this saves most of the work that is not decoding.

    Args:
        camera_id: Camera key copied into every frame.
        path: The video file.
        fps: Analysis frames per second; at or above the native rate every frame is kept.
        origin: Wall-clock time (Unix seconds) of the first frame, overriding the metadata.
        threads: Decoder threads; 0 lets FFmpeg choose (one per core, plus one).
        thread_type: FFmpeg threading: ``"AUTO"`` (frame and slice) suits files.
        on_state: Listener for state changes.
    """

    def __init__(
        self,
        camera_id: str,
        path: str | Path,
        *,
        fps: float,
        origin: float | None = None,
        threads: int = 0,
        thread_type: ThreadType = "AUTO",
        on_state: StateListener | None = None,
    ) -> None:
        self._camera_id = camera_id
        self.path = Path(path)
        self._sampler = FrameSampler(fps)
        self._on_state = on_state
        self._state = SourceState.CONNECTING
        self._stats = SourceStats()
        self._started = False
        self._decoding = False  # the generator is between its first and last frame
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._container, self._stream = self._open(threads, thread_type)
        self._info = self._read_info(self._stream, self._container)
        self.origin, self.origin_kind = self._resolve_origin(origin)

    @property
    def camera_id(self) -> str:
        """The camera key copied into every frame."""
        return self._camera_id

    @property
    def state(self) -> SourceState:
        """``connecting`` until ``frames()`` starts, ``streaming``, then ``ended``."""
        return self._state

    @property
    def info(self) -> SourceInfo:
        """Size, native fps, frame count and duration from the container."""
        return self._info

    @property
    def stats(self) -> SourceStats:
        """Counters so far (nothing is ever dropped from a file)."""
        return self._stats

    def frames(self) -> Iterator[Frame]:
        """Yield the sampled frames in order, then end; callable once.

        Raises:
            RuntimeError: ``frames()`` was already called.
        """
        if self._started:
            raise RuntimeError("FileSource.frames() can only be iterated once")
        self._started = True
        return self._generate()

    def close(self) -> None:
        """Close the file; the state becomes ``ended``. Safe from another thread.

        While a generator from :meth:`frames` is mid-file (perhaps on a prefetch thread), closing
        the container under it would pull memory from beneath FFmpeg; the generator is asked to
        stop instead and closes the file itself before its next frame.
        """
        self._closing.set()
        with self._lock:
            if not self._decoding:
                self._container.close()
                self._set_state(SourceState.ENDED, "closed")

    def _open(self, threads: int, thread_type: ThreadType) -> tuple[InputContainer, VideoStream]:
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        try:
            container = av.open(str(self.path), mode="r")
        except (av.FFmpegError, OSError) as error:
            raise SourceError(
                f"cannot open video file {self.path}: {describe_error(error, str(self.path))}"
            ) from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"video file {self.path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        stream.codec_context.thread_count = threads
        return container, stream

    @staticmethod
    def _read_info(stream: VideoStream, container: InputContainer) -> SourceInfo:
        rate = stream.average_rate or stream.guessed_rate
        return SourceInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else None,
            frame_count=stream.frames or None,
            duration=media_duration(container, stream),
        )

    def _resolve_origin(self, origin: float | None) -> tuple[float, OriginKind]:
        if origin is not None:
            return float(origin), "argument"
        for metadata in (self._container.metadata, self._stream.metadata):
            created = _parse_creation_time(metadata.get("creation_time"))
            if created is not None:
                return created, "creation_time"
        return 0.0, "epoch"

    def _generate(self) -> Iterator[Frame]:
        self._set_state(SourceState.STREAMING, f"decoding {self.path}")
        convert = BgrConverter()
        clock = PictureClock()
        times = SteadyTimes(1.0 / self._info.fps if self._info.fps else 0.04)
        held: deque[tuple[av.VideoFrame, Stamps]] = deque()
        seq = decoded = sampled = bad = 0

        def release() -> Iterator[Frame]:
            """The held pictures as frames, timed by the clock's judgement now."""
            nonlocal seq, sampled
            while held:
                picture, stamps = held.popleft()
                pts = times.next(clock.time_of(stamps))
                if not self._sampler.keep(pts):
                    continue
                sampled += 1
                image = upright(convert(picture), picture.rotation)
                yield Frame(self._camera_id, seq, pts, self.origin + pts, image)
                seq += 1

        first_problem = ""
        with self._lock:
            if self._closing.is_set():
                return
            self._decoding = True
        packets = self._container.demux(self._stream)
        try:
            while not self._closing.is_set():
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except (av.FFmpegError, OSError) as error:
                    # The demuxer cannot go on (truncated file): flush what the decoder holds.
                    bad += 1
                    first_problem = first_problem or describe_error(error, str(self.path))
                    packet = None
                try:
                    pictures = self._stream.decode(packet)
                except (av.FFmpegError, OSError) as error:
                    bad += 1
                    first_problem = first_problem or describe_error(error, str(self.path))
                    continue
                for picture in pictures:
                    if not decoded and quarter_turns(picture.rotation) % 2:
                        # The container states the stored size; frames come out turned.
                        info = self._info
                        self._info = replace(info, width=info.height, height=info.width)
                    decoded += 1
                    held.append((picture, clock.note(picture)))
                if packet is not None and decoded < HOLD_PICTURES:
                    continue  # the file's start: read ahead until its stamps can be judged
                yield from release()
                self._stats = SourceStats(decoded, sampled, bad_packets=bad, untimed=times.guessed)
                if packet is None:
                    break
            if not self._closing.is_set():
                yield from release()  # a file shorter than the read-ahead
        finally:
            self._stats = SourceStats(decoded, sampled, bad_packets=bad, untimed=times.guessed)
            with self._lock:
                self._decoding = False
                self._container.close()
            if bad:
                logger.warning(
                    "camera %s: %s: skipped %d undecodable packet(s) (first: %s); "
                    "delivered %d of %d decoded frames",
                    self._camera_id,
                    self.path,
                    bad,
                    first_problem,
                    sampled,
                    decoded,
                )
            self._set_state(SourceState.ENDED, f"end of {self.path}")

    def _set_state(self, state: SourceState, message: str) -> None:
        previous = self._state
        if previous is state:
            return
        self._state = state
        if self._on_state is not None:
            self._on_state(StateChange(self._camera_id, previous, state, message, time.time()))


def quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns (0-3) nearest a display matrix's ``rotation``."""
    return round(rotation / 90) % 4


def upright(image: Image, rotation: float) -> Image:
    """``image`` turned as its display matrix says (``VideoFrame.rotation``: degrees
    counter-clockwise, as ``ffprobe`` prints it), i.e. as a player shows it.

    Phone videos are stored sideways with a rotation to apply on display: analysed as stored,
    people lay on their side, the detector missed them and zones drawn on the upright picture
    fell elsewhere. ``np.rot90`` turns counter-clockwise too; checked against ffmpeg's own
    auto-rotation. Only the rotation is applied (a mirrored matrix, rare outside selfie
    cameras, stays mirrored).
    """
    turns = quarter_turns(rotation)
    if not turns:
        return image
    return np.ascontiguousarray(np.rot90(image, turns))


def stored_box(
    box: tuple[float, float, float, float], turns: int, width: int, height: int
) -> tuple[float, float, float, float]:
    """``box`` of an upright picture (``width`` x ``height``, turned ``turns`` quarter turns
    counter-clockwise by :func:`upright`) in the picture as stored, before the turn.

    A view that shows the stored picture (the dashboard's blurred live video decodes the file
    again) must hide the heads the analysis found on the upright one where they lie there.
    """
    x1, y1, x2, y2 = box
    w, h = width, height
    for _ in range(turns % 4):
        # one counter-clockwise turn undone: the picture before it is h wide and w high, and
        # an upright point (x, y) was at (h - y, x) in it
        x1, y1, x2, y2 = h - y2, x1, h - y1, x2
        w, h = h, w
    return x1, y1, x2, y2


def _parse_creation_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # ambiguous local time: not a trustworthy origin
    return parsed.timestamp()


def media_duration(container: InputContainer, stream: VideoStream) -> float | None:
    """The file's duration in seconds as its container states it (the stream's if the container
    has none), ``None`` if neither does. A looped file camera starts each pass this long after
    the previous one when its pictures end before it, as in well-formed files
    (:class:`~safewatch.ingest.paced_file_source.PacedFileSource`); the dashboard's live video
    of such a camera finds the picture being analysed now by it."""
    if container.duration is not None:
        return float(container.duration / 1_000_000)  # AV_TIME_BASE
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None
