"""The contract every video source meets, so the pipeline never cares where pixels come from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from safewatch.domain.frame import Frame
from safewatch.ingest.state import SourceInfo, SourceState, SourceStats

__all__ = ["Source"]


@runtime_checkable
class Source(Protocol):
    """A camera or a file, decoded and sampled to the analysis frame rate.

    Implementations take an optional ``on_state`` listener in their constructor; it hears every
    :class:`~safewatch.ingest.state.StateChange`. ``frames()`` may be called once; it ends when the
    source reaches a final state or is closed. A live source never raises from ``frames()``: it
    reconnects and reports its state instead.
    """

    @property
    def camera_id(self) -> str:
        """The site file's camera key, copied into every frame."""
        ...

    @property
    def state(self) -> SourceState:
        """The current lifecycle state."""
        ...

    @property
    def info(self) -> SourceInfo:
        """Size and native timing of the video (zeros until a live source first connects)."""
        ...

    @property
    def stats(self) -> SourceStats:
        """A snapshot of the counters (decoded, sampled, dropped, bad packets, reconnects)."""
        ...

    def frames(self) -> Iterator[Frame]:
        """Yield sampled frames in presentation order, ``seq`` increasing by one each time."""
        ...

    def close(self) -> None:
        """Release the decoder and network connection; idempotent, safe from any thread."""
        ...
