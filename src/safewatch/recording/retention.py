"""Retention of recorded segments: by age and by bytes, never touching footage an open incident
needs.

:func:`to_delete` is a pure function of the segments, the time and the protected spans, so the
policy is tested without files: oldest first, a segment goes when it ended more than
``max_age`` seconds ago or while the camera's recording is over ``max_bytes`` (or, for the
free-space guard, while the segments of every camera given are), unless it overlaps a
protected span (an open incident's ``[started - pre, ended or now + post]``). A
protected segment is skipped, not counted as freed: the recording may then stay above
``max_bytes`` until the incident closes, which is the right way round for evidence.

:func:`prune` deletes what it chose. A segment the file system refuses to delete (permissions,
a read-only or stale mount, something not a file under a segment's name) is kept and logged,
never raised: one such file stopped the round for its camera and for every camera after it,
every round, until the disk filled. It is then treated like a protected one (it stays, its
bytes still count), so ``max_bytes`` is met from the next younger segments.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from safewatch.recording.segments import Segment

__all__ = ["Protected", "prune", "to_delete"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Protected:
    """A span of footage that must stay (wall-clock seconds, inclusive): of ``camera_id``'s
    segments, or of any segment given when ``None`` (one camera's at a time)."""

    since: float
    until: float
    camera_id: str | None = None

    def covers(self, segment: Segment) -> bool:
        """Whether ``segment`` holds footage of this span."""
        if self.camera_id is not None and segment.camera_id != self.camera_id:
            return False
        return segment.overlaps(self.since, self.until)


def to_delete(
    segments: Sequence[Segment],
    *,
    now: float,
    max_age: float | None,
    max_bytes: int | None,
    protected: Sequence[Protected] = (),
    undeletable: Collection[Path] = (),
) -> list[Segment]:
    """The segments retention removes now, oldest first (see the module docstring); those in
    ``undeletable`` (a delete failed) stay and count, like protected ones."""
    ordered = sorted(segments, key=lambda s: s.start)
    total = sum(s.size for s in ordered)
    doomed: list[Segment] = []
    for segment in ordered:
        too_old = max_age is not None and segment.end < now - max_age
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            break  # later segments are younger and the total only shrinks: nothing more goes
        if segment.path in undeletable:
            continue
        if any(p.covers(segment) for p in protected):
            continue
        doomed.append(segment)
        total -= segment.size
    return doomed


def prune(
    segments: Sequence[Segment],
    *,
    now: float,
    max_age: float | None,
    max_bytes: int | None,
    protected: Sequence[Protected] = (),
) -> list[Segment]:
    """Delete what :func:`to_delete` chooses; returns the segments removed.

    A segment that cannot be deleted is kept (module docstring): one warning per call names
    how many, the first and its error. The choice is made again without the ones refused, so
    younger segments make up for their bytes; each is tried once per call.
    """
    removed: list[Segment] = []
    refused: dict[Path, OSError] = {}
    left = list(segments)
    while True:
        failed = False
        for segment in to_delete(
            left,
            now=now,
            max_age=max_age,
            max_bytes=max_bytes,
            protected=protected,
            undeletable=refused.keys(),
        ):
            try:
                segment.path.unlink(missing_ok=True)
            except OSError as error:
                refused[segment.path] = error
                failed = True
                continue
            removed.append(segment)
        if not failed:
            break
        gone = {s.path for s in removed}
        left = [s for s in left if s.path not in gone]
    if refused:
        first, reason = next(iter(refused.items()))
        log.warning(
            "recording retention: %d segment(s) could not be deleted and are kept, e.g. %s: %s",
            len(refused),
            first,
            reason.strerror or reason,
        )
    return removed
