"""Retention of recorded segments: by age and by bytes, never touching footage an open incident
needs.

:func:`to_delete` is a pure function of the segments, the time and the protected spans, so the
policy is tested without files: oldest first, a segment goes when it ended more than
``max_age`` seconds ago or while the camera's recording is over ``max_bytes``, unless it
overlaps a protected span (an open incident's ``[started - pre, ended or now + post]``). A
protected segment is skipped, not counted as freed: the recording may then stay above
``max_bytes`` until the incident closes, which is the right way round for evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from safewatch.recording.segments import Segment

__all__ = ["Protected", "prune", "to_delete"]


@dataclass(frozen=True, slots=True)
class Protected:
    """A span of footage that must stay (wall-clock seconds, inclusive)."""

    since: float
    until: float


def to_delete(
    segments: Sequence[Segment],
    *,
    now: float,
    max_age: float | None,
    max_bytes: int | None,
    protected: Sequence[Protected] = (),
) -> list[Segment]:
    """The segments retention removes now, oldest first (see the module docstring)."""
    ordered = sorted(segments, key=lambda s: s.start)
    total = sum(s.size for s in ordered)
    doomed: list[Segment] = []
    for segment in ordered:
        too_old = max_age is not None and segment.end < now - max_age
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            break  # later segments are younger and the total only shrinks: nothing more goes
        if any(segment.overlaps(p.since, p.until) for p in protected):
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
    """Delete what :func:`to_delete` chooses; returns the segments removed."""
    removed = []
    for segment in to_delete(
        segments, now=now, max_age=max_age, max_bytes=max_bytes, protected=protected
    ):
        segment.path.unlink(missing_ok=True)
        removed.append(segment)
    return removed
