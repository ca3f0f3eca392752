"""Comparing two rule sets' incidents and scoring them against reviewed ones (pure functions)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from safewatch.domain import Incident
from safewatch.domain.events import Severity
from safewatch.domain.incidents import IncidentStatus
from safewatch.footage.backtest_diff import DiffKind, compare, score


def incident(
    name: str,
    start: float,
    end: float | None,
    *,
    rule: str = "r",
    track: int = 1,
    status: IncidentStatus = IncidentStatus.OPEN,
) -> Incident:
    return Incident(
        id=name,
        camera_id="cam",
        rule_id=rule,
        rule_kind="zone_intrusion",
        severity=Severity.HIGH,
        track_ids=(track,),
        started_at=start,
        ended_at=end,
        peak_confidence=0.9,
        message=name,
        status=status,
    )


def kinds(differences: list) -> list[tuple[DiffKind, str | None, str | None]]:  # type: ignore[type-arg]
    return [
        (d.kind, d.baseline.id if d.baseline else None, d.proposal.id if d.proposal else None)
        for d in differences
    ]


def test_same_episode_is_unchanged_moved_end_is_changed() -> None:
    base = [incident("a", 10, 20), incident("b", 30, 40, track=2)]
    new = [incident("a", 10, 20), incident("b2", 30, 35, track=2)]
    assert kinds(compare(base, new)) == [
        (DiffKind.UNCHANGED, "a", "a"),
        (DiffKind.CHANGED, "b", "b2"),
    ]


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        ([incident("x", 10, 20, rule="other")], [DiffKind.REMOVED, DiffKind.ADDED]),
        ([incident("x", 10, 20, track=7)], [DiffKind.REMOVED, DiffKind.ADDED]),
        ([incident("x", 25, 30)], [DiffKind.REMOVED, DiffKind.ADDED]),
        ([], [DiffKind.REMOVED]),
    ],
    ids=["other rule", "other track", "no overlap", "gone"],
)
def test_no_match_without_same_rule_track_and_overlap(
    new: list[Incident], expected: list[DiffKind]
) -> None:
    assert sorted(d.kind for d in compare([incident("a", 10, 20)], new)) == sorted(expected)


def test_the_larger_overlap_wins_and_each_incident_matches_once() -> None:
    base = [incident("a", 10, 20)]
    new = [incident("small", 19, 30), incident("big", 11, 20), incident("later", 21, 30)]
    assert kinds(compare(base, new)) == [
        (DiffKind.CHANGED, "a", "big"),
        (DiffKind.CHANGED, "a", "small"),  # a split: it overlaps "a", which "big" matched
        (DiffKind.ADDED, None, "later"),
    ]


def test_two_episodes_the_proposal_merges_are_changed_not_removed() -> None:
    """A longer grace joins [0-10] and [12-20] into [0-20]: the second used to be "only
    baseline", which docs/backtest.md defines as an incident the proposal no longer raises."""
    base = [incident("a", 0, 10), incident("b", 12, 20)]
    new = [incident("ab", 0, 20)]
    assert kinds(compare(base, new)) == [
        (DiffKind.CHANGED, "a", "ab"),
        (DiffKind.CHANGED, "b", "ab"),
    ]
    other = [incident("ab", 0, 20, track=2)]  # another person's episode merges nothing
    assert sorted(d.kind for d in compare(base, other)) == sorted(
        [DiffKind.REMOVED, DiffKind.REMOVED, DiffKind.ADDED]
    )


def test_an_episode_the_proposal_splits_is_changed_not_added() -> None:
    base = [incident("ab", 0, 20)]
    new = [incident("a", 0, 10), incident("b", 12, 20)]
    assert kinds(compare(base, new)) == [
        (DiffKind.CHANGED, "ab", "a"),
        (DiffKind.CHANGED, "ab", "b"),
    ]


def test_an_open_episode_overlaps_everything_after_its_start() -> None:
    assert kinds(compare([incident("a", 10, None)], [incident("b", 50, None)])) == [
        (DiffKind.CHANGED, "a", "b")
    ]


def test_scores_against_reviewed_incidents() -> None:
    real = incident("real", 100, 110, status=IncidentStatus.RESOLVED, track=90)
    missed = incident("missed", 200, 210, status=IncidentStatus.RESOLVED, track=91)
    false = incident("false", 300, 305, status=IncidentStatus.FALSE_POSITIVE, track=92)
    pending = incident("pending", 400, 405, status=IncidentStatus.OPEN, track=93)
    mine = [incident("m1", 111, 115), incident("m2", 303, 304), incident("m3", 400, 405)]
    result = score(mine, [real, missed, false, pending], slack=2.0)
    assert [i.id for i in result.real_raised] == ["real"]  # 1 s apart, within the slack
    assert [i.id for i in result.real_missed] == ["missed"]
    assert [i.id for i in result.false_raised] == ["false"]
    assert result.false_avoided == ()
    assert result.precision == 0.5 and result.recall == 0.5


def test_no_reviewed_incidents_gives_no_figures() -> None:
    result = score([incident("m", 1, 2)], [])
    assert result.precision is None and result.recall is None


def test_one_backtest_incident_raises_one_reviewed_incident() -> None:
    """A real intrusion (10-20 s) and a false alarm beside it (12-16 s), same rule: a change that
    keeps only the real one avoids the false alarm. "Raised" used to mean any overlapping
    incident of the rule, so it scored "false raised 1, false avoided 0" (precision 0.5) while
    compare() said the false alarm's episode was only in the baseline."""
    real = incident("real", 10, 20, status=IncidentStatus.RESOLVED, track=90)
    false = incident("false", 12, 16, status=IncidentStatus.FALSE_POSITIVE, track=91)
    baseline = [incident("a", 10, 20, track=1), incident("b", 12, 16, track=2)]
    proposal = [incident("a", 10, 20, track=1)]
    before = score(baseline, [real, false])
    assert (len(before.real_raised), len(before.false_raised)) == (1, 1)
    after = score(proposal, [real, false])
    assert [i.id for i in after.real_raised] == ["real"]
    assert [i.id for i in after.false_avoided] == ["false"]
    assert after.false_raised == () and after.precision == 1.0
    assert kinds(compare(baseline, proposal)) == [
        (DiffKind.UNCHANGED, "a", "a"),
        (DiffKind.REMOVED, "b", None),
    ]
    # The reverse: one backtest incident no longer counts two real ones as raised.
    other = incident("other", 11, 19, status=IncidentStatus.RESOLVED, track=92)
    assert score(proposal, [real, other]).recall == 0.5


def test_equal_overlaps_pair_by_zone() -> None:
    """Live and backtest track ids differ; with equal overlaps the same zone decides."""
    near = replace(incident("n", 10, 20, status=IncidentStatus.RESOLVED), zone_id="a")
    far = replace(incident("f", 10, 20, status=IncidentStatus.FALSE_POSITIVE), zone_id="b")
    mine = replace(incident("m", 10, 20, track=5), zone_id="b")
    result = score([mine], [near, far])
    assert [i.id for i in result.false_raised] == ["f"]
    assert [i.id for i in result.real_missed] == ["n"]


def test_two_real_episodes_the_rule_set_joins_are_both_raised() -> None:
    """A longer grace joins two reviewed live episodes into one backtest incident: pairing one to
    one left the second "missed" (recall 0.5) though the rule set raises it. One at the
    same time as the first (another person) is still not raised by it."""
    first = incident("first", 10, 14, status=IncidentStatus.RESOLVED, track=90)
    second = incident("second", 15, 20, status=IncidentStatus.RESOLVED, track=91)
    joined = [incident("j", 10, 20, track=1)]
    assert score(joined, [first, second]).recall == 1.0
    # At the same time as its partner, it is another person's episode: not raised by it.
    beside = incident("beside", 11, 13, status=IncidentStatus.RESOLVED, track=92)
    assert [i.id for i in score(joined, [first, beside]).real_missed] == ["beside"]
