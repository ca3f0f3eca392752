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
that are not audit outputs are left alone either way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safewatch.errors import StorageError
from safewatch.ingest.state import SourceInfo, SourceStats

__all__ = ["FULL", "RESULT", "staged_output", "video_coverage"]

RESULT = "incidents.json"
"""The audit's summary; published last, so a folder that has it holds a whole audit."""

_OUTPUTS = ("audit.db", "audit.db-wal", "audit.db-shm", "audit.db-journal", "evidence")
"""What else an audit writes (besides :data:`RESULT` and ``*.annotated.mp4``)."""

STAGING_PREFIX = ".audit-staging-"

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


@contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """Yield a staging folder inside ``out_dir``; publish its contents there only on success.

    Raises:
        StorageError: ``out_dir`` cannot be created or written.
    """
    existed = out_dir.is_dir()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
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


def _publish(staging: Path, out_dir: Path) -> None:
    """Replace the earlier audit's files in ``out_dir`` with ``staging``'s, the summary last.

    The old summary goes first and the new one comes last, so that a crash in between leaves
    a folder without ``incidents.json`` (visibly incomplete) rather than one whose summary
    describes files that are not there.
    """
    (out_dir / RESULT).unlink(missing_ok=True)
    earlier = [out_dir / name for name in _OUTPUTS] + list(out_dir.glob("*.annotated.mp4"))
    earlier += [out_dir / entry.name for entry in staging.iterdir()]
    for path in earlier:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for entry in sorted(staging.iterdir(), key=lambda e: e.name == RESULT):
        os.replace(entry, out_dir / entry.name)
    staging.rmdir()
