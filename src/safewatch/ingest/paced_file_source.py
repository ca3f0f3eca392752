"""A video file played as a live camera, for ``safewatch serve`` on recorded footage.

An audit reads a file as fast as it can; a server must not: a file source under ``serve`` is
played at its native rate, each frame released when its presentation time comes, and stamped with
that wall-clock time, exactly as a camera would deliver it. With ``loop: true`` it starts over at
the end, forever, so the example site (whose camera is a clip) shows a live system; without it the
camera ends with the file. Media time (``pts``) and ``seq`` keep counting across loops, so the
tracker and the rules see one continuous stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from safewatch.domain.frame import Frame
from safewatch.ingest.file_source import FileSource
from safewatch.ingest.state import SourceInfo, SourceState, SourceStats, StateChange, StateListener

__all__ = ["PacedFileSource"]

log = logging.getLogger(__name__)


class PacedFileSource:
    """Replay a file in real time, optionally looping; meets the ``Source`` protocol.

    Args:
        camera_id: Camera key copied into every frame.
        path: The video file (opened at once, so a bad path fails here).
        fps: Analysis frames per second (sampling, as for any source).
        loop: Start over at the end of the file.
        on_state: Listener for state changes.
        clock: Wall clock (seconds since the epoch).
    """

    def __init__(
        self,
        camera_id: str,
        path: str | Path,
        *,
        fps: float,
        loop: bool = False,
        on_state: StateListener | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._camera_id = camera_id
        self.path = Path(path)
        self._fps = fps
        self._loop = loop
        self._on_state = on_state
        self._clock = clock
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._state = SourceState.CONNECTING
        self._stats = SourceStats()
        self._base = SourceStats()  # counters of earlier passes over the file
        self._current: FileSource | None = self._open()  # fails now for a bad file
        self._info = self._current.info
        self._started = False

    @property
    def camera_id(self) -> str:
        """The camera key copied into every frame."""
        return self._camera_id

    @property
    def state(self) -> SourceState:
        """``connecting``, ``streaming``, then ``ended`` (never, when looping, until closed)."""
        return self._state

    @property
    def info(self) -> SourceInfo:
        """Size and native fps of the file."""
        return self._info

    @property
    def stats(self) -> SourceStats:
        """Counters over every pass so far."""
        with self._lock:
            return self._stats

    def frames(self) -> Iterator[Frame]:
        """Yield sampled frames as their time comes; callable once.

        Raises:
            RuntimeError: ``frames()`` was already called.
        """
        if self._started:
            raise RuntimeError("PacedFileSource.frames() can only be iterated once")
        self._started = True
        return self._generate()

    def close(self) -> None:
        """Stop at the next frame (from any thread); idempotent."""
        self._closed.set()
        with self._lock:
            current = self._current
        if current is not None:
            current.close()
        self._set_state(SourceState.ENDED, "closed")

    def _open(self) -> FileSource:
        return FileSource(self._camera_id, self.path, fps=self._fps, origin=0.0, threads=1)

    def _generate(self) -> Iterator[Frame]:
        seq = 0
        offset = 0.0  # media time of this pass's start
        anchor = self._clock()  # wall time of media time zero
        self._set_state(SourceState.STREAMING, f"playing {self.path}")
        source: FileSource | None = self._current
        try:
            while not self._closed.is_set():
                if source is None:
                    source = self._open()
                    with self._lock:
                        self._current = source
                last_pts = 0.0
                for frame in source.frames():
                    pts = offset + frame.pts
                    due = anchor + pts
                    if self._closed.wait(max(0.0, due - self._clock())):
                        return
                    last_pts = frame.pts
                    seq += 1
                    self._count(source.stats, seq)
                    yield Frame(self._camera_id, seq - 1, pts, due, frame.image)
                self._count(source.stats, seq)
                with self._lock:
                    self._base = self._stats
                    self._current = None
                source.close()
                source = None
                if not self._loop or self._closed.is_set():
                    break
                period = 1.0 / self._info.fps if self._info.fps else 1.0 / self._fps
                offset += max(self._info.duration or 0.0, last_pts + period)
                log.debug("camera %s: %s looped", self._camera_id, self.path)
        finally:
            if source is not None:
                source.close()
            self._set_state(SourceState.ENDED, f"end of {self.path}")

    def _count(self, stats: SourceStats, delivered: int) -> None:
        # The file source updates its counters per packet, a frame behind what it yielded: the
        # frames delivered are counted here, the decoder's own counts added up over passes.
        with self._lock:
            base = self._base
            decoded = base.decoded + stats.decoded
            self._stats = replace(
                stats,
                decoded=max(decoded, delivered),
                sampled=delivered,
                bad_packets=base.bad_packets + stats.bad_packets,
                untimed=base.untimed + stats.untimed,
            )

    def _set_state(self, state: SourceState, message: str) -> None:
        with self._lock:
            previous = self._state
            if previous is state or previous.is_final:
                return
            self._state = state
        if self._on_state is not None:
            self._on_state(StateChange(self._camera_id, previous, state, message, time.time()))
