"""What an audit actually read of each video, and what a failed audit leaves behind (nothing).

Coverage: a partly corrupt file decodes with gaps (the decoder skips what it cannot read) and an
audit of it used to look complete. Coverage is the share of the video's frames, as the container
counts them (else its duration times its frame rate), that were decoded; with a constant frame
rate that is the share of its duration. ``audit --strict`` fails below :data:`FULL`.

Output: an audit writes a database, evidence, annotated videos and ``incidents.json``. It writes
them into a hidden staging folder inside its output folder and moves them into place only when it
succeeds (:func:`staged_output`). A failed audit (a file that is not a video, a model that cannot
load, Ctrl-C) therefore leaves the folder exactly as it was, an earlier audit there included; a
successful one replaces the earlier audit's files rather than adding its incidents to the earlier
``audit.db``, so the database, the evidence and ``incidents.json`` always describe one run. Files
that are not audit outputs are left alone either way, and a folder holding an ``evidence``
folder, ``audit.db`` or annotated videos that no audit wrote (a site's data folder given as
``--out`` by mistake) is refused before anything runs, rather than having them replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from safewatch.errors import StorageError
from safewatch.ingest.source import Source
from safewatch.ingest.state import SourceInfo, SourceStats

__all__ = ["FULL", "RESULT", "VideoReading", "staged_output", "video_coverage"]

RESULT = "incidents.json"
"""The audit's summary; published last, so a folder that has it holds a whole audit."""

_OUTPUTS = ("audit.db", "audit.db-wal", "audit.db-shm", "audit.db-journal", "evidence")
"""What else an audit writes (besides :data:`RESULT` and ``*.annotated.mp4``)."""

STAGING_PREFIX = ".audit-staging-"

MARKER = ".safewatch-audit"
"""Written into every audit folder (before its other files): the folder's audit files are an
audit's, so a later audit may replace them."""

FULL = 0.999
"""Coverage at or above this counts as the whole video (container counts can be off by one)."""


def video_coverage(info: SourceInfo, stats: SourceStats) -> float | None:
    """Share (0-1) of the video's frames that were decoded; ``None`` when its length is unknown."""
    expected: float | None = None
    if info.frame_count:
        expected = float(info.frame_count)
    elif info.duration and info.fps:
        expected = info.duration * info.fps
    if not expected:
        return None
    return min(1.0, stats.decoded / expected)


@dataclass(frozen=True, slots=True)
class VideoReading:
    """What was read of one video and where its times came from (as :class:`VideoResult` of
    :mod:`safewatch.footage.audit` says them; ``safewatch backtest`` keeps these)."""

    video: Path
    clock: str
    coverage: float | None
    bad_packets: int
    untimed: int
    decoded: int

    @classmethod
    def of(cls, video: Path, source: Source, clock: str) -> VideoReading:
        """The reading of ``source`` (after its frames were read) opened with ``clock``."""
        read = source.stats
        coverage = video_coverage(source.info, read)
        return cls(video, clock, coverage, read.bad_packets, read.untimed, read.decoded)


@contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """Yield a staging folder inside ``out_dir``; publish its contents there only on success.

    Raises:
        StorageError: ``out_dir`` cannot be created or written.
    """
    existed = out_dir.is_dir()
    if existed:
        _check_replaceable(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
        (staging / MARKER).write_text("an audit's output folder (safewatch audit)\n")
    except OSError as exc:
        raise StorageError(f"cannot create the output folder {out_dir}: {exc}") from exc
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not existed:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    try:
        _publish(staging, out_dir)
    except OSError as exc:
        raise StorageError(
            f"the audit finished but could not be moved into {out_dir} ({exc}); "
            f"its files are in {staging}"
        ) from exc


def _earlier_outputs(out_dir: Path) -> list[Path]:
    """What an earlier audit would have left in ``out_dir`` (what a new one replaces)."""
    names = (RESULT, *_OUTPUTS)
    found = [out_dir / name for name in names if (out_dir / name).exists()]
    return found + sorted(out_dir.glob("*.annotated.mp4"))


def _holds_an_audit(out_dir: Path) -> bool:
    """Whether an audit wrote ``out_dir``'s audit files: its marker, or (audits written before
    the marker) an ``incidents.json`` in an audit's own format."""
    if (out_dir / MARKER).is_file():
        return True
    try:
        document = json.loads((out_dir / RESULT).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and {"safewatch", "videos", "incidents"} <= set(document)


def _check_replaceable(out_dir: Path) -> None:
    found = _earlier_outputs(out_dir)
    if found and not _holds_an_audit(out_dir):
        names = ", ".join(p.name for p in found)
        raise StorageError(
            f"cannot audit into {out_dir}: it holds {names}, which no audit wrote there "
            "(an audit replaces its own earlier files); give --out a new or empty folder. "
            "Nothing was changed."
        )


def _publish(staging: Path, out_dir: Path) -> None:
    """Replace the earlier audit's files in ``out_dir`` with ``staging``'s, the summary last.

    The old summary goes first and the new one comes last, so that a crash in between leaves
    a folder without ``incidents.json`` (visibly incomplete) rather than one whose summary
    describes files that are not there; the marker goes first, so such a folder can still be
    replaced by the next audit.
    """
    os.replace(staging / MARKER, out_dir / MARKER)
    (out_dir / RESULT).unlink(missing_ok=True)
    earlier = _earlier_outputs(out_dir) + [out_dir / entry.name for entry in staging.iterdir()]
    for path in earlier:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for entry in sorted(staging.iterdir(), key=lambda e: e.name == RESULT):
        os.replace(entry, out_dir / entry.name)
    staging.rmdir()
