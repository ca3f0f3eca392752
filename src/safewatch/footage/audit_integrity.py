"""What an audit actually read of each video, and what a failed audit leaves behind (nothing).

Coverage: a partly corrupt file decodes with gaps (the decoder skips what it cannot read) and an
audit of it used to look complete. Coverage is the share of the video's frames, as the container
counts them (else its duration times its frame rate), that were decoded; with a constant frame
rate that is the share of its duration. ``audit --strict`` fails below :data:`FULL`.

Failure: an audit writes a database, evidence, annotated videos and ``incidents.json`` into its
output folder. When it fails (a file that is not a video, a model that cannot load, Ctrl-C), what
it created there is removed, so nothing half-written is mistaken for a result; files that were
there before it started are left alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safewatch.ingest.state import SourceInfo, SourceStats

__all__ = ["FULL", "remove_outputs_on_failure", "video_coverage"]

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
def remove_outputs_on_failure(out_dir: Path) -> Iterator[None]:
    """Remove what the block created in ``out_dir`` (and the folder, if it made it) on failure."""
    existed = out_dir.exists()
    before = set(out_dir.iterdir()) if existed and out_dir.is_dir() else set()
    try:
        yield
    except BaseException:
        if out_dir.is_dir():
            for path in set(out_dir.iterdir()) - before:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            if not existed:
                shutil.rmtree(out_dir, ignore_errors=True)
        raise
