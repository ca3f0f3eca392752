"""Compare two rule sets' incidents on the same footage, and score them against reviewed ones.

Pure functions over :class:`~safewatch.domain.Incident` values, no I/O.

Matching two sets' incidents: a backtest tracks once, so the same person has the same track id
under every rule set. Two incidents match when they have the same camera, rule and subject track
and their episodes overlap in time; pairs are one to one, the largest overlap first. A match
with the same start and end is *unchanged*; otherwise *changed* (it moved its start or end). An
incident left without a partner that overlaps an incident of the other set already matched
(same rule and subject) is *changed* too: the proposal merged two episodes into one, or split
one in two, and still raises it. Any other incident exists *only in the baseline* (the change
removes it) or *only in the proposal* (the change adds it).

Scoring against review: an operator's verdict on a live incident (``resolved`` = it was real,
``false_positive`` = it was not) is the only ground truth a site has. Live track ids differ from
a backtest's, so a reviewed incident counts as *raised* by a rule set when it is paired with one
of the set's incidents of the same camera and rule that overlaps it in time, give or take
``slack`` seconds; pairing is one to one, as in comparing (largest overlap first), so one
backtest incident raises at most one reviewed incident running at a given time. One left
unpaired is still raised by a backtest incident that joins it to its partner's episode of the
same verdict, before or after it (a longer grace joining two live episodes).
Precision is over the reviewed incidents a set raises (real / (real + false)); recall is the
share of real ones it raises.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from safewatch.domain import Incident
from safewatch.domain.incidents import IncidentStatus

__all__ = ["SLACK", "DiffKind", "Difference", "Score", "compare", "score"]

SLACK = 2.0
"""Seconds of tolerance when a backtest incident is matched with a reviewed live one (live and
archived frames are not the same frames)."""


class DiffKind(StrEnum):
    """How an incident fares under the proposal."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"
    REMOVED = "only_baseline"
    ADDED = "only_proposal"


@dataclass(frozen=True, slots=True)
class Difference:
    """One incident's fate: in the baseline, the proposal, or both."""

    kind: DiffKind
    rule_id: str
    baseline: Incident | None
    proposal: Incident | None

    @property
    def started_at(self) -> float:
        """When it started (the baseline's start where both exist), for ordering."""
        either = self.baseline or self.proposal
        assert either is not None
        return either.started_at


def _end(incident: Incident) -> float:
    return math.inf if incident.ended_at is None else incident.ended_at


def _overlap(a: Incident, b: Incident, slack: float = 0.0) -> float:
    """Seconds two episodes share (negative when apart by more than ``slack``)."""
    return min(_end(a), _end(b)) + slack - max(a.started_at, b.started_at)


def _subject(incident: Incident) -> int | None:
    return incident.track_ids[0] if incident.track_ids else None


def _pairs(
    lefts: Sequence[Incident],
    rights: Sequence[Incident],
    key: Callable[[Incident], Hashable],
    *,
    slack: float = 0.0,
) -> dict[int, int]:
    """Pair incidents of two sets one-to-one: index in ``lefts`` -> index in ``rights``.

    Only incidents with the same ``key`` that overlap (give or take ``slack``) may pair; the
    pairs with the largest overlap are taken first, ties going to the same subject track, then
    the same zone (then the earlier incidents). One implementation for :func:`compare` (the key
    holds the subject) and :func:`score` (live track ids differ from a backtest's, so it does
    not), so that one incident never stands for two of the other set in either.
    """
    by_key: dict[Hashable, list[int]] = defaultdict(list)
    for j, right in enumerate(rights):
        by_key[key(right)].append(j)
    candidates = []
    for i, left in enumerate(lefts):
        for j in by_key.get(key(left), ()):
            right = rights[j]
            overlap = _overlap(left, right, slack)
            if overlap >= 0:
                tie = (_subject(left) == _subject(right), left.zone_id == right.zone_id)
                candidates.append((-overlap, not tie[0], not tie[1], i, j))
    candidates.sort()
    paired: dict[int, int] = {}
    taken: set[int] = set()
    for *_, i, j in candidates:
        if i not in paired and j not in taken:
            paired[i] = j
            taken.add(j)
    return paired


def _episode(incident: Incident) -> tuple[str, str, int | None]:
    return (incident.camera_id, incident.rule_id, _subject(incident))


def compare(
    baseline: Sequence[Incident], proposal: Sequence[Incident], *, tolerance: float = 1e-3
) -> list[Difference]:
    """Every incident of either set with its fate, ordered by start time.

    Args:
        baseline: The reference set's incidents.
        proposal: The proposed set's incidents (same footage, same tracks).
        tolerance: Seconds within which a start or end counts as the same.
    """
    paired = _pairs(baseline, proposal, _episode)
    same_baseline: dict[tuple[str, str, int | None], list[Incident]] = defaultdict(list)
    for old in baseline:
        same_baseline[_episode(old)].append(old)
    same_proposal: dict[tuple[str, str, int | None], list[Incident]] = defaultdict(list)
    for new in proposal:
        same_proposal[_episode(new)].append(new)
    out: list[Difference] = []
    for i, old in enumerate(baseline):
        if i not in paired:
            # Pairing leaves no free partner overlapping it, so one that overlaps it is paired
            # with another baseline episode: two episodes the proposal joins into one. The
            # proposal still raises this one (inside a longer incident), it does not remove it.
            merged = _overlapping(old, same_proposal[_episode(old)])
            kind = DiffKind.REMOVED if merged is None else DiffKind.CHANGED
            out.append(Difference(kind, old.rule_id, old, merged))
            continue
        best = proposal[paired[i]]
        same = abs(old.started_at - best.started_at) <= tolerance and (
            (old.ended_at is None and best.ended_at is None)
            or (
                old.ended_at is not None
                and best.ended_at is not None
                and abs(old.ended_at - best.ended_at) <= tolerance
            )
        )
        kind = DiffKind.UNCHANGED if same else DiffKind.CHANGED
        out.append(Difference(kind, old.rule_id, old, best))
    taken = set(paired.values())
    for j, new in enumerate(proposal):
        if j in taken:
            continue
        # One baseline episode the proposal splits in two: the second part is the same
        # episode changed, not one the proposal adds.
        split = _overlapping(new, same_baseline[_episode(new)])
        if split is not None:
            out.append(Difference(DiffKind.CHANGED, new.rule_id, split, new))
        else:
            out.append(Difference(DiffKind.ADDED, new.rule_id, None, new))
    out.sort(key=lambda d: (d.started_at, d.rule_id))
    return out


def _overlapping(incident: Incident, others: Sequence[Incident]) -> Incident | None:
    """The one of ``others`` sharing the most time with ``incident``; ``None`` if none does."""
    best = max(others, key=lambda other: _overlap(incident, other), default=None)
    return best if best is not None and _overlap(incident, best) >= 0 else None


@dataclass(frozen=True, slots=True)
class Score:
    """How a rule set's incidents agree with the operators' reviews.

    Attributes:
        real_raised: Reviewed-real incidents the set raises.
        real_missed: Reviewed-real incidents it misses.
        false_raised: Reviewed false positives it raises again.
        false_avoided: Reviewed false positives it no longer raises.
    """

    real_raised: tuple[Incident, ...]
    real_missed: tuple[Incident, ...]
    false_raised: tuple[Incident, ...]
    false_avoided: tuple[Incident, ...]

    @property
    def reviewed(self) -> int:
        """How many reviewed incidents were scored (the same for every rule set of a run)."""
        return sum(
            map(len, (self.real_raised, self.real_missed, self.false_raised, self.false_avoided))
        )

    @property
    def precision(self) -> float | None:
        """Real / (real + false) among the reviewed incidents raised; ``None`` if none raised."""
        raised = len(self.real_raised) + len(self.false_raised)
        return len(self.real_raised) / raised if raised else None

    @property
    def recall(self) -> float | None:
        """Share of reviewed-real incidents raised; ``None`` when none were reviewed real."""
        real = len(self.real_raised) + len(self.real_missed)
        return len(self.real_raised) / real if real else None


def score(
    incidents: Iterable[Incident], reviewed: Iterable[Incident], *, slack: float = SLACK
) -> Score:
    """Score one rule set's incidents against reviewed live incidents of the same footage.

    Args:
        incidents: The rule set's backtest incidents.
        reviewed: Live incidents an operator resolved (real) or marked false positive; others
            are ignored.
        slack: Seconds of tolerance on the time overlap (live and backtest frames differ).
    """
    mine = list(incidents)
    past = [
        incident
        for incident in reviewed
        if incident.status in (IncidentStatus.RESOLVED, IncidentStatus.FALSE_POSITIVE)
    ]
    # One to one: "raised" used to mean any incident of the same rule overlapping it, so one
    # backtest incident (a real intrusion) also raised a false alarm beside it, and a change
    # that removed exactly that false alarm scored as avoiding nothing.
    paired = _pairs(past, mine, lambda i: (i.camera_id, i.rule_id), slack=slack)
    partners: dict[int, list[Incident]] = defaultdict(list)  # backtest incident -> reviewed
    for index, partner in paired.items():
        partners[partner].append(past[index])
    real_raised: list[Incident] = []
    real_missed: list[Incident] = []
    false_raised: list[Incident] = []
    false_avoided: list[Incident] = []
    for index, incident in enumerate(past):
        # Left unpaired, it is still raised by a backtest incident that joins it to an episode
        # of the same verdict before or after it (a longer grace joins two live episodes into
        # one). Not by one whose partner runs at the same time (another person, or the other
        # verdict: the cases above).
        raised = index in paired or any(
            incident.camera_id == other.camera_id
            and incident.rule_id == other.rule_id
            and _overlap(incident, other, slack) >= 0
            and bool(partners[j])
            and all(p.status is incident.status and _overlap(incident, p) < 0 for p in partners[j])
            for j, other in enumerate(mine)
        )
        if incident.status is IncidentStatus.RESOLVED:
            (real_raised if raised else real_missed).append(incident)
        else:
            (false_raised if raised else false_avoided).append(incident)
    return Score(tuple(real_raised), tuple(real_missed), tuple(false_raised), tuple(false_avoided))
