"""The ``line_crossing`` rule kind: count every crossing of a tripwire, with its direction.

The usual way to count crossings (compare the anchor's side in this frame with the last one)
counts a box that flickers over the line as many crossings: a person standing on a doorway line
whose box jitters by a few pixels "crosses" it ten times a second. Here a side must be
*established*: the anchor seen on it for ``confirm_frames`` consecutive frames of the track (and
for ``min_duration`` seconds). A crossing is a change of established side, so a track must be
established on one side, then on the other; any sequence in which the far side never holds for
``confirm_frames`` frames counts nothing, however often it flips.

Only points level with the segment have a side (:meth:`Line.sides`); leaving that band (going
round a free end of the line) for ``confirm_frames`` frames, or coming back into it on the other
side, forgets the established side, so walking around a line is not crossing it. Fewer frames
beyond the end followed by the same side again are like unseen frames: a person walking up to the
line close to its end, whose anchor jitters a few pixels past the end for a frame, keeps the side
they were established on, and their crossing right after counts. An end on the picture's edge
does not bound the band (nobody walks round it), so a slanted line drawn to the edge counts
crossings up to that edge. Frames in which a track is not seen do not break its run: an occluded
person who reappears on the same side continues it.
Per-track history is a few numbers, dropped once the track has been missing for the rule's
``grace``, so memory is bounded by the tracks recently seen.

Each crossing is an instant (the monitor sets ``instant``): the engine reports it as a ``STARTED``
and an ``ENDED`` event on the confirming frame, with ``started_at`` the first frame on the new
side. The incident manager opens and closes one incident from the pair; the rule's ``cooldown``
stops the same track from raising another for that long.

Public API: :class:`LineCrossingMonitor` ``(rule, line)`` with ``observe(tracked, geometry=None)
-> list[Observation]`` and ``crossings(tracked, geometry=None) -> list[Crossing]`` (every confirmed
crossing in either direction, for counting tools such as benchmarks; ``observe`` keeps those of the
rule's direction). The ``observe`` and ``crossings`` calls advance the same state: call one per
frame. ``geometry`` is the frame's shared :class:`~safewatch.rules.frame_geometry.FrameGeometry`.
"""

from __future__ import annotations

from dataclasses import dataclass

from safewatch.config.rules import LineCrossingRule
from safewatch.domain.lines import Line, Side
from safewatch.domain.tracks import TrackedFrame
from safewatch.rules.episodes import FrameClock, Observation
from safewatch.rules.frame_geometry import FrameGeometry, geometry_of

__all__ = ["Crossing", "LineCrossingMonitor"]

_EPS = 1e-6

_DIRECTIONS = {
    "any": (Side.LEFT, Side.RIGHT),
    "left_to_right": (Side.RIGHT,),
    "right_to_left": (Side.LEFT,),
}
"""The sides a crossing may end on for each ``direction``."""

_NONE = Side.NONE
_SIDES = {int(side): side for side in Side}
"""Side values as :meth:`Line.sides` returns them, to the enum (a dict lookup is much cheaper
than calling the enum for every track of every frame)."""


@dataclass(frozen=True, slots=True)
class Crossing:
    """One confirmed crossing.

    Attributes:
        track_id: The track that crossed.
        label: Its label.
        from_side: Side it was established on before.
        to_side: Side it is established on now.
        since: Time of its first frame on the new side.
        at: Time of the frame that confirmed the crossing.
        confidence: The track's confidence in the confirming frame.
    """

    track_id: int
    label: str
    from_side: Side
    to_side: Side
    since: float
    at: float
    confidence: float

    @property
    def direction(self) -> str:
        """``left_to_right`` or ``right_to_left``."""
        return f"{self.from_side.label}_to_{self.to_side.label}"


@dataclass(slots=True)
class _History:
    established: Side = Side.NONE
    run_side: Side = Side.NONE
    run_frames: int = 0
    run_since: float = 0.0
    last_seen: float = 0.0
    beyond: int = 0  # consecutive frames beyond a free end, just now


class LineCrossingMonitor:
    """Follows each track's side of one line and reports confirmed crossings.

    Args:
        rule: The rule (objects, anchor, direction, confirm_frames, min_duration, grace).
        line: The rule's line, on the camera this monitor watches.
        clock: The camera's frame clock (one of its own by default): a track's side is
            forgotten once it has been unseen for longer than the grace in force
            (:meth:`~safewatch.rules.episodes.FrameClock.grace`, at least 1.5 frame
            intervals), so on a 0.5 fps camera one missed frame does not wipe the side a track
            was established on and hide its crossing.
    """

    instant = True

    def __init__(self, rule: LineCrossingRule, line: Line, clock: FrameClock | None = None) -> None:
        self.rule = rule
        self.line = line
        self.clock = FrameClock() if clock is None else clock
        self._history: dict[int, _History] = {}

    def __len__(self) -> int:
        """Tracks with side history."""
        return len(self._history)

    def observe(
        self, tracked: TrackedFrame, geometry: FrameGeometry | None = None
    ) -> list[Observation]:
        """Crossings of the rule's direction confirmed in this frame, in track order."""
        wanted = _DIRECTIONS[self.rule.direction]
        return [
            Observation(
                subject=c.track_id,
                track_ids=(c.track_id,),
                confidence=c.confidence,
                message=f"{c.label} #{c.track_id} crossed line {self.line.id} "
                f"({c.from_side.label} to {c.to_side.label})",
                since=c.since,
            )
            for c in self.crossings(tracked, geometry)
            if c.to_side in wanted
        ]

    def crossings(
        self, tracked: TrackedFrame, geometry: FrameGeometry | None = None
    ) -> list[Crossing]:
        """Advance every track's side history by one frame; crossings confirmed in it."""
        at = tracked.timestamp
        self.clock.tick(at)
        g = geometry_of(tracked, geometry)
        indices = g.labelled(self.rule.objects)
        found: list[Crossing] = []
        if indices:
            points = g.points(self.rule.anchor)[indices]
            sides = self.line.sides(points, g.width, g.height).tolist()
            histories, tracks = self._history, g.tracks
            confirm = self.rule.confirm_frames
            settle = self.rule.min_duration - _EPS
            # The per-track state machine, inlined: it runs for every track of every frame.
            for i, raw in zip(indices, sides, strict=True):
                track = tracks[i]
                history = histories.get(track.track_id)
                if history is None:
                    history = histories[track.track_id] = _History()
                history.last_seen = at
                side = _SIDES[raw]
                if side is _NONE:  # beyond a free end: whatever happens there is not a crossing
                    # Only once it is there for good (confirm_frames frames): a single frame
                    # of jitter past the end must not wipe the side of someone about to cross.
                    history.beyond += 1
                    if history.beyond >= confirm:
                        history.established = history.run_side = _NONE
                        history.run_frames = 0
                    continue
                if history.beyond:
                    # Back level with the line after a few frames beyond its end: on the side it
                    # left from, as if unseen meanwhile; on the other one, it went round the end.
                    history.beyond = 0
                    if side is not history.run_side:
                        history.established = _NONE
                if side is history.run_side:
                    history.run_frames += 1
                else:
                    history.run_side, history.run_frames, history.run_since = side, 1, at
                if (
                    history.run_frames < confirm
                    or at - history.run_since < settle
                    or side is history.established
                ):
                    continue  # not confirmed yet, or confirmed where it already was
                previous, history.established = history.established, side
                if previous is not _NONE:
                    found.append(
                        Crossing(
                            track_id=track.track_id,
                            label=track.label,
                            from_side=previous,
                            to_side=side,
                            since=history.run_since,
                            at=at,
                            confidence=float(track.confidence),
                        )
                    )
        self._prune(at)
        return found

    def _prune(self, at: float) -> None:
        limit = self.clock.grace(self.rule.grace) + _EPS
        stale = [
            track_id
            for track_id, history in self._history.items()
            if at - history.last_seen > limit
        ]
        for track_id in stale:
            del self._history[track_id]
