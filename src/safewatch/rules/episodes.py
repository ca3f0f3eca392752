"""The violation-episode lifecycle every rule kind shares.

A rule kind only answers "which subjects violate in this frame?" (an :class:`Observation` each);
this module turns those per-frame answers into episodes with ``STARTED`` / ``ONGOING`` / ``ENDED``
events, so minimum duration, grace, cooldown and pruning behave the same for every kind.

Per subject (a track) the state machine is:

* idle -> pending at the first violating frame ``t0``, also in cooldown;
* pending -> open once ``t - t0 >= min_duration`` and the cooldown is over: ``STARTED`` with
  ``started_at=t0``. During a cooldown the pending state is silent (grace applies to it as to
  any), so a violation that began in the cooldown and is still going when it ends is reported
  then, from its true first frame: dropping those frames would restart it at the end of the
  cooldown, wait ``min_duration`` again and understate how long it lasted;
* open: ``ONGOING`` on every later violating frame (frames inside a grace gap emit nothing: there
  is no evidence in them);
* pending or open -> idle at the first frame that shows the subject not violating (compliant or
  not tracked) more than the effective grace (:meth:`FrameClock.grace`) after its last violating
  frame: an open episode emits
  ``ENDED`` with ``at`` = its last violating frame, and the subject enters cooldown until
  ``last violating time + cooldown``. Two violating frames with no frame between them (a stalled
  stream) continue the episode: nothing showed the violation stopping;
* idle states are forgotten once their cooldown is over, so memory is bounded by the subjects that
  violated within the last ``grace + cooldown`` seconds, whatever the stream's length.

The effective grace is the rule's ``grace``, but never less than :data:`GRACE_FRAMES` of the
camera's frame intervals (a ``grace`` of 0 excepted: it asks for no tolerance). Grace is meant to
absorb a missed detection or two; it is measured from the last violating frame, so on a camera
slower than one frame per ``grace`` (0.5 fps with the default 1 s) the very next frame without the
subject was already past it, and one missed detection split an episode (and restarted a dwell
clock) that a 5 fps camera kept whole. :class:`FrameClock` learns the interval from the frame
times the rules receive; the dwell and blocked-exit monitors use the same clock for their own
per-track memory, so their clocks and the episodes end together.

Instant violations (a line crossing) skip the pending and open states: :meth:`EpisodeBook.instants`
reports each as a whole episode, ``STARTED`` then ``ENDED`` on the same frame, and puts the subject
in cooldown. The incident manager opens and closes one incident from the pair.

A subject is usually a track id. Zone-level kinds (occupancy, a blocked exit) have no subject
track: they use negative subjects and start ``track_ids`` with :data:`NO_SUBJECT` (-1), followed
by the tracks involved, so the incident id is derived from track id -1 as the incident manager
expects while the evidence still highlights the tracks.

All times are the frame clock's; nothing here reads a wall clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from safewatch.domain.events import Phase, RuleEvent, Severity

__all__ = [
    "GRACE_FRAMES",
    "NO_SUBJECT",
    "EpisodeBook",
    "EpisodePolicy",
    "FrameClock",
    "Observation",
]

NO_SUBJECT = -1
"""First of ``track_ids`` for zone-level episodes: no single track is the subject."""

_EPS = 1e-6
"""Slack for float clocks: 5 frames of 0.2 s must reach a 1 s minimum duration."""

_STARTED, _ONGOING = Phase.STARTED, Phase.ONGOING

GRACE_FRAMES = 1.5
"""A positive grace is at least this many frame intervals: one missed frame (a gap of one
interval since the last violating frame) stays within it, with room for timing jitter, while two
(two intervals) do not, so a subject gone for two frames still ends its episode at any rate."""

_INTERVALS = 5
"""Frame intervals :class:`FrameClock` keeps; their lower median is the camera's interval, so one
long gap (a stalled stream) or a few dropped frames do not stretch the grace."""


class FrameClock:
    """A camera's frame interval as the rules see it, and the grace it implies.

    Every frame's time is told with :meth:`tick` (by the engine, and again by each book and
    monitor sharing the clock: a time already told is ignored). The interval is the lower median
    of the last few gaps between frames, 0 before the second frame.
    """

    __slots__ = ("_gaps", "_last", "interval")

    def __init__(self) -> None:
        self._last: float | None = None
        self._gaps: deque[float] = deque(maxlen=_INTERVALS)
        self.interval = 0.0
        """Seconds between two of the camera's frames (lower median of the recent gaps)."""

    def tick(self, at: float) -> None:
        """Note a frame at ``at`` (frame clock); the same or an earlier time changes nothing."""
        last = self._last
        if last is not None and at <= last:
            return
        self._last = at
        if last is None:
            return
        self._gaps.append(at - last)
        ordered = sorted(self._gaps)
        self.interval = ordered[(len(ordered) - 1) // 2]

    def grace(self, configured: float) -> float:
        """The grace in force for a rule's ``configured`` one: at least :data:`GRACE_FRAMES`
        intervals, unless it is 0 (the first frame without the violation ends it, at any rate)."""
        if configured <= 0.0:
            return configured
        return max(configured, GRACE_FRAMES * self.interval)


class Observation(NamedTuple):
    """One subject violating a rule in one frame.

    Immutable and typed like the frozen dataclasses between stages, but a named tuple: monitors
    make dozens every frame (one per violating track and rule), and a tuple is built in a third
    of a frozen dataclass's time. (Being a tuple, it also equals the plain tuple of its fields.)

    Attributes:
        subject: The track the episode belongs to (negative for zone-level episodes).
        track_ids: Tracks involved, subject first (:data:`NO_SUBJECT` first when no track is).
        confidence: Confidence of the evidence in this frame.
        message: One human sentence.
        zone_id: Zone involved, if any.
        since: For instants, when the violation happened if earlier than this frame (a crossing
            is confirmed a few frames after the anchor changed sides); ignored otherwise.
    """

    subject: int
    track_ids: tuple[int, ...]
    confidence: float
    message: str
    zone_id: str | None = None
    since: float | None = None


@dataclass(frozen=True, slots=True)
class EpisodePolicy:
    """The timing of one rule, in seconds."""

    min_duration: float = 0.0
    grace: float = 1.0
    cooldown: float = 0.0


@dataclass(slots=True)
class _State:
    started_at: float | None
    last_at: float
    last_seq: int
    last: Observation
    open: bool = False
    cooldown_until: float = float("-inf")


class EpisodeBook:
    """Episodes of one rule on one camera, keyed by subject.

    Args:
        rule_id: Rule id, copied into events.
        rule_kind: Rule kind, copied into events.
        camera_id: Camera, copied into events.
        severity: Rule severity, copied into events.
        policy: Minimum duration, grace and cooldown.
        clock: The camera's frame clock (the engine shares one per camera); a book of its own
            by default, told the time of every :meth:`update`.
    """

    def __init__(
        self,
        rule_id: str,
        rule_kind: str,
        camera_id: str,
        severity: Severity,
        policy: EpisodePolicy,
        clock: FrameClock | None = None,
    ) -> None:
        self.rule_id = rule_id
        self.rule_kind = rule_kind
        self.camera_id = camera_id
        self.severity = severity
        self.policy = policy
        self.clock = FrameClock() if clock is None else clock
        self._states: dict[int, _State] = {}
        self._idle = 0
        """States with no pending or open episode (cooling down): only they can be pruned, so
        frames without any skip the pruning scan."""

    def __len__(self) -> int:
        """Subjects with state (pending, open or cooling down); 0 means the book can be dropped."""
        return len(self._states)

    @property
    def open_subjects(self) -> tuple[int, ...]:
        """Subjects with an open (reported) episode, sorted."""
        return tuple(sorted(s for s, state in self._states.items() if state.open))

    def update(self, at: float, seq: int, observations: Iterable[Observation]) -> list[RuleEvent]:
        """Advance to the frame at ``at`` where exactly ``observations`` violate.

        Returns:
            ``ENDED`` events first (by subject), then ``STARTED`` / ``ONGOING`` in observation
            order.
        """
        self.clock.tick(at)
        current: list[RuleEvent] = []
        states = self._states
        seen: set[int] = set()
        reached = self.policy.min_duration - _EPS
        rule_id, rule_kind, camera_id, severity = (
            self.rule_id,
            self.rule_kind,
            self.camera_id,
            self.severity,
        )
        for observation in observations:
            subject = observation.subject
            if subject in seen:
                continue
            seen.add(subject)
            state = states.get(subject)
            started_at = None if state is None else state.started_at
            if state is None or started_at is None:
                cooldown_until = float("-inf")
                if state is not None:  # idle: pending from now, silent until its cooldown ends
                    cooldown_until = state.cooldown_until
                    self._idle -= 1
                state = states[subject] = _State(
                    at, at, seq, observation, cooldown_until=cooldown_until
                )
                started_at = at
            else:
                state.last_at, state.last_seq, state.last = at, seq, observation
            if state.open:
                phase = _ONGOING
            elif at - started_at >= reached and at >= state.cooldown_until - _EPS:
                state.open = True
                phase = _STARTED
            else:
                continue  # pending: not reported yet
            # _event, inlined: this runs for every violating subject of every frame.
            current.append(
                RuleEvent(
                    rule_id,
                    rule_kind,
                    camera_id,
                    phase,
                    observation.track_ids,
                    started_at,
                    at,
                    severity,
                    observation.confidence,
                    observation.message,
                    observation.zone_id,
                    seq,
                )
            )
        ended: list[RuleEvent] = []
        if len(seen) < len(states):  # every subject with state was seen: none can end
            limit = self.clock.grace(self.policy.grace) + _EPS
            lapsed = [
                subject
                for subject, state in states.items()
                if state.started_at is not None
                and subject not in seen
                and at - state.last_at > limit
            ]
            for subject in sorted(lapsed):
                ended.extend(self._end(states[subject]))
        self._prune(at)
        if ended:
            ended.extend(current)
            return ended
        return current

    def instants(self, at: float, seq: int, observations: Iterable[Observation]) -> list[RuleEvent]:
        """Report each observation as a whole episode: ``STARTED`` and ``ENDED`` now.

        ``started_at`` is the observation's ``since`` (else ``at``). A subject in cooldown is
        skipped; a reported one enters cooldown until ``at + cooldown``. ``min_duration`` and
        ``grace`` do not apply (the monitor confirmed the instant).
        """
        events: list[RuleEvent] = []
        for observation in observations:
            state = self._states.get(observation.subject)
            if state is not None and (state.open or at < state.cooldown_until - _EPS):
                continue
            if state is not None and state.started_at is None:
                self._idle -= 1
            since = at if observation.since is None else min(observation.since, at)
            state = _State(started_at=since, last_at=at, last_seq=seq, last=observation, open=True)
            self._states[observation.subject] = state
            events.append(self._event(state, Phase.STARTED))
            events.extend(self._end(state))
        self._prune(at)
        return events

    def close_all(self, at: float | None = None) -> list[RuleEvent]:
        """End every open episode now (end of file, schedule closing, rule removed).

        Pending (unreported) violations are dropped. With ``at``, states whose cooldown is over
        by then are forgotten.
        """
        events: list[RuleEvent] = []
        for subject in sorted(self._states):
            state = self._states[subject]
            if state.started_at is not None:
                events.extend(self._end(state))
        if at is not None:
            self._prune(at)
        return events

    def _end(self, state: _State) -> list[RuleEvent]:
        events = [self._event(state, Phase.ENDED)] if state.open else []
        if state.open:
            state.cooldown_until = state.last_at + self.policy.cooldown
        state.started_at = None
        state.open = False
        self._idle += 1
        return events

    def _prune(self, at: float) -> None:
        if not self._idle:
            return
        stale = [
            subject
            for subject, state in self._states.items()
            if state.started_at is None and at >= state.cooldown_until - _EPS
        ]
        for subject in stale:
            del self._states[subject]
        self._idle -= len(stale)

    def _event(self, state: _State, phase: Phase) -> RuleEvent:
        observation = state.last
        started_at = state.started_at
        return RuleEvent(
            self.rule_id,
            self.rule_kind,
            self.camera_id,
            phase,
            observation.track_ids,
            started_at if started_at is not None else state.last_at,
            state.last_at,
            self.severity,
            observation.confidence,
            observation.message,
            observation.zone_id,
            state.last_seq,
        )
