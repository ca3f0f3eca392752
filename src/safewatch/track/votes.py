"""Temporal voting of PPE observations per track and item.

A detector misses a hard hat now and then (motion blur, a turned head, a small person), and once in
a while it calls a hat a bare head. Reporting each frame's raw observation would open and close PPE
incidents on noise, so each track keeps its last ``window`` observations per item and the reported
state is a confidence-weighted vote over them. ``ABSENT`` is the state that raises incidents, so it
must win clearly: at least :data:`ABSENT_SHARE` of the weight and at least two votes (one when the
window is a single frame). Frames where the item was not seen push old votes out of the window but
do not vote; with no votes at all the answer is ``UNKNOWN``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from safewatch.domain import PPEState
from safewatch.track.ppe import Observation

__all__ = ["ABSENT_SHARE", "PPEVotes", "vote"]

ABSENT_SHARE = 0.6
"""Share of the vote weight ``ABSENT`` needs; below it a contested window is not called absent."""


def vote(observations: Sequence[Observation | None], window: int) -> tuple[PPEState, float]:
    """Voted state over a window of per-frame observations (``None`` = item not seen that frame).

    Args:
        observations: Oldest first; only the last ``window`` count.
        window: Window length in frames.

    Returns:
        The state and the confidence of the latest detection that agrees with it (0.0 if
        ``UNKNOWN``).
    """
    recent = [o for o in list(observations)[-window:] if o is not None]
    present = sum(o.confidence for o in recent if o.state is PPEState.PRESENT)
    absent = sum(o.confidence for o in recent if o.state is PPEState.ABSENT)
    absent_votes = sum(1 for o in recent if o.state is PPEState.ABSENT)
    total = present + absent
    if total <= 0:
        return PPEState.UNKNOWN, 0.0
    if absent >= ABSENT_SHARE * total and absent_votes >= min(2, window):
        state = PPEState.ABSENT
    elif present > absent:
        state = PPEState.PRESENT
    else:
        return PPEState.UNKNOWN, 0.0
    latest = next(o for o in reversed(recent) if o.state is state)
    return state, latest.confidence


class PPEVotes:
    """Per-track, per-item windows of observations; pruned with the tracks.

    Args:
        window: Frames voted over (the site's ``tracker.ppe_window``).
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._window = window
        self._history: dict[int, dict[str, deque[Observation | None]]] = {}

    def observe(self, track_id: int, items: Iterable[str], seen: dict[str, Observation]) -> None:
        """Record a frame in which ``track_id`` was seen; items missing from ``seen`` get None."""
        per_item = self._history.setdefault(track_id, {})
        for item in items:
            history = per_item.get(item)
            if history is None:
                history = per_item[item] = deque(maxlen=self._window)
            history.append(seen.get(item))

    def state(self, track_id: int, item: str) -> tuple[PPEState, float]:
        """Voted state of ``item`` on ``track_id`` (``UNKNOWN`` if never observed)."""
        history = self._history.get(track_id, {}).get(item)
        if history is None:
            return PPEState.UNKNOWN, 0.0
        return vote(history, self._window)

    def retain(self, alive: Iterable[int]) -> None:
        """Forget every track not in ``alive`` (called once per frame with the living track ids)."""
        keep = set(alive)
        for track_id in [t for t in self._history if t not in keep]:
            del self._history[track_id]

    def __len__(self) -> int:
        """Number of tracks with history (bounded by the living tracks)."""
        return len(self._history)
