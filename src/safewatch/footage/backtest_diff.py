"""Compare two rule sets' incidents on the same footage, and score them against reviewed ones.

Pure functions over :class:`~safewatch.domain.Incident` values, no I/O.

Matching two sets' incidents: a backtest tracks once, so the same person has the same track id
under every rule set. Two incidents match when they have the same camera, rule and subject track
and their episodes overlap in time; the pair with the larger overlap wins. A match with the same
start and end is *unchanged*; otherwise *changed* (the change moved its start or end). An
incident left without a partner that overlaps an incident of the other set already matched
(same rule and subject) is *changed* too: the proposal merged two episodes into one, or split
one in two, and still raises it. Any other incident exists *only in the baseline* (the change
removes it) or *only in the proposal* (the change adds it).

Scoring against review: an operator's verdict on a live incident (``resolved`` = it was real,
``false_positive`` = it was not) is the only ground truth a site has. Live track ids differ from
a backtest's, so a reviewed incident counts as *raised* by a rule set when one of the set's
incidents has the same camera and rule and overlaps it in time, give or take ``slack`` seconds.
Precision is over the reviewed incidents a set raises (real / (real + false)); recall is the
share of real ones it raises.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
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


def compare(
    baseline: Sequence[Incident], proposal: Sequence[Incident], *, tolerance: float = 1e-3
) -> list[Difference]:
    """Every incident of either set with its fate, ordered by start time.

    Args:
        baseline: The reference set's incidents.
        proposal: The proposed set's incidents (same footage, same tracks).
        tolerance: Seconds within which a start or end counts as the same.
    """
    groups: dict[tuple[str, str, int | None], list[Incident]] = defaultdict(list)
    for incident in proposal:
        groups[(incident.camera_id, incident.rule_id, _subject(incident))].append(incident)
    matched: dict[tuple[str, str, int | None], list[Incident]] = defaultdict(list)
    out: list[Difference] = []
    for old in baseline:
        key = (old.camera_id, old.rule_id, _subject(old))
        candidates = groups.get(key, [])
        best = max(candidates, key=lambda new: _overlap(old, new), default=None)
        if best is None or _overlap(old, best) < 0:
            merged = _overlapping(old, matched[key])
            if merged is not None:
                # Two baseline episodes the proposal joins into one: the proposal still raises
                # this one (inside a longer incident), it does not remove it.
                out.append(Difference(DiffKind.CHANGED, old.rule_id, old, merged))
            else:
                out.append(Difference(DiffKind.REMOVED, old.rule_id, old, None))
            continue
        candidates.remove(best)
        matched[key].append(best)
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
    by_key: dict[tuple[str, str, int | None], list[Incident]] = defaultdict(list)
    for old in baseline:
        by_key[(old.camera_id, old.rule_id, _subject(old))].append(old)
    for key, remaining in groups.items():
        for new in remaining:
            # One baseline episode the proposal splits in two: the second part is the same
            # episode changed, not one the proposal adds.
            split = _overlapping(new, by_key[key])
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
    real_raised: list[Incident] = []
    real_missed: list[Incident] = []
    false_raised: list[Incident] = []
    false_avoided: list[Incident] = []
    for past in reviewed:
        raised = any(
            new.camera_id == past.camera_id
            and new.rule_id == past.rule_id
            and _overlap(new, past, slack) >= 0
            for new in mine
        )
        if past.status is IncidentStatus.RESOLVED:
            (real_raised if raised else real_missed).append(past)
        elif past.status is IncidentStatus.FALSE_POSITIVE:
            (false_raised if raised else false_avoided).append(past)
    return Score(tuple(real_raised), tuple(real_missed), tuple(false_raised), tuple(false_avoided))
