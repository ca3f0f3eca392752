"""Recorded segments on disk: how they are named, listed and found around a moment.

A segment is one fragmented MP4 file of one camera's own stream (remuxed, never re-encoded). Its
name carries its wall-clock span, ``<root>/<camera>/<YYYY-MM-DD>/<start_ms>-<end_ms>.mp4`` (UTC
day), so listing a camera's recording, finding the footage around an incident or choosing what
retention may delete needs no file to be opened and no database. A segment being written is
``<start_ms>.part.mp4``; it gets its final name, with its end, when it is closed. Because the
files are fragmented (``frag_keyframe+empty_moov``), a ``.part`` file cut short by a crash or a
camera outage is still playable up to its last complete fragment, and :func:`close_orphans`
names it from what it holds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from safewatch.config.site import CAMERA_KEY_PATTERN

__all__ = [
    "PART_SUFFIX",
    "Segment",
    "day_folder",
    "list_segments",
    "part_path",
    "read_segment",
    "segment_path",
    "segments_between",
]

_CAMERA_ID = re.compile(CAMERA_KEY_PATTERN)

PART_SUFFIX = ".part.mp4"
_DONE = re.compile(r"^(\d{10,16})-(\d{10,16})\.mp4$")


@dataclass(frozen=True, slots=True)
class Segment:
    """One closed segment.

    Attributes:
        camera_id: The camera.
        start: Wall-clock seconds of its first frame.
        end: Wall-clock seconds just after its last frame.
        path: The file.
        size: Bytes on disk.
    """

    camera_id: str
    start: float
    end: float
    path: Path
    size: int

    def overlaps(self, since: float, until: float) -> bool:
        """Whether the segment holds footage of ``[since, until]`` (its end is exclusive: the
        segment before a cut does not hold the moment of the cut)."""
        return self.start <= until and self.end > since


def day_folder(root: Path, camera_id: str, at: float) -> Path:
    """The folder of ``camera_id``'s segments starting on ``at``'s UTC day."""
    return root / camera_id / time.strftime("%Y-%m-%d", time.gmtime(at))


def segment_path(root: Path, camera_id: str, start: float, end: float) -> Path:
    """Where a closed segment spanning ``[start, end]`` lives."""
    return day_folder(root, camera_id, start) / f"{round(start * 1000)}-{round(end * 1000)}.mp4"


def part_path(root: Path, camera_id: str, start: float) -> Path:
    """Where the segment starting at ``start`` is written until it is closed."""
    return day_folder(root, camera_id, start) / f"{round(start * 1000)}{PART_SUFFIX}"


def read_segment(camera_id: str, path: Path) -> Segment | None:
    """The segment a closed file's name describes (times to the millisecond, as named), or
    ``None`` for any other file or one that is gone."""
    match = _DONE.match(path.name)
    if match is None:
        return None
    try:
        size = path.stat().st_size
    except OSError:  # deleted by retention while listing
        return None
    return Segment(camera_id, int(match[1]) / 1000, int(match[2]) / 1000, path, size)


def list_segments(root: Path, camera_id: str) -> list[Segment]:
    """Closed segments of ``camera_id``, oldest first (``.part`` files are not listed)."""
    folder = root / camera_id
    if not folder.is_dir():
        return []
    found = (read_segment(camera_id, path) for path in folder.glob("*/*.mp4"))
    return sorted((s for s in found if s is not None), key=lambda s: s.start)


def segments_between(root: Path, camera_id: str, since: float, until: float) -> list[Segment]:
    """Closed segments of ``camera_id`` with footage in ``[since, until]``, oldest first."""
    return [s for s in list_segments(root, camera_id) if s.overlaps(since, until)]


def cameras(root: Path) -> Iterator[str]:
    """Camera ids with a folder under ``root``: folders named as a camera id can be, so that a
    mount point's ``lost+found`` (unreadable, no camera) is not pruned and warned about every
    retention round."""
    if root.is_dir():
        yield from sorted(p.name for p in root.iterdir() if p.is_dir() and _CAMERA_ID.match(p.name))
