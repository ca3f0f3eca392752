"""Temporal voting: one missed or wrong frame must not flip a worker's PPE state."""

from __future__ import annotations

import pytest

from safewatch.domain import PPEState
from safewatch.track.ppe import Observation
from safewatch.track.votes import PPEVotes, vote

P, A, U = PPEState.PRESENT, PPEState.ABSENT, PPEState.UNKNOWN


def _obs(spec: str) -> list[Observation | None]:
    """'PPA-' -> present, present, absent, nothing (confidence 0.8 each)."""
    table = {"P": P, "A": A}
    return [None if c == "-" else Observation(table[c], 0.8, 0) for c in spec]


@pytest.mark.parametrize(
    ("history", "window", "expected"),
    [
        ("", 5, U),
        ("-----", 5, U),
        ("P", 5, P),
        ("PPPP-", 5, P),  # one missed frame keeps the hat
        ("PPPPA", 5, P),  # one wrong frame keeps the hat
        ("A", 5, U),  # a single absent vote is not enough to call it absent
        ("AA", 5, A),
        ("PAA", 5, A),  # 2/3 of the weight
        ("PPAA", 5, U),  # contested: absent does not clearly win
        ("PPAAA", 5, A),  # 3/5 = the absent share
        ("AAAAAPPPPP", 5, P),  # only the last window counts
        ("PPPPPAAAAA", 5, A),
        ("A", 1, A),  # a one-frame window needs only one vote
    ],
)
def test_vote_table(history: str, window: int, expected: PPEState) -> None:
    assert vote(_obs(history), window)[0] is expected


def test_vote_is_confidence_weighted_and_reports_the_latest_agreeing_confidence() -> None:
    history = [Observation(A, 0.3, 0), Observation(A, 0.3, 0), Observation(P, 0.9, 0)]
    assert vote(history, 5) == (P, 0.9)
    history = [Observation(P, 0.2, 0), Observation(A, 0.7, 1), Observation(A, 0.6, 2)]
    state, confidence = vote(history, 5)
    assert state is A
    assert confidence == pytest.approx(0.6)


def test_votes_keep_a_window_per_track_and_item_and_forget_dead_tracks() -> None:
    votes = PPEVotes(window=3)
    for _ in range(3):
        votes.observe(1, ["hardhat", "vest"], {"hardhat": Observation(A, 0.9, 0)})
        votes.observe(2, ["hardhat"], {"hardhat": Observation(P, 0.9, 0)})
    assert votes.state(1, "hardhat")[0] is A
    assert votes.state(1, "vest") == (U, 0.0)
    assert votes.state(2, "hardhat")[0] is P
    assert votes.state(3, "hardhat") == (U, 0.0)
    votes.observe(1, ["hardhat"], {})
    votes.observe(1, ["hardhat"], {})
    assert votes.state(1, "hardhat")[0] is U  # 2 of 3 frames empty: 1 absent vote left
    votes.retain([2])
    assert len(votes) == 1
    assert votes.state(1, "hardhat") == (U, 0.0)


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        PPEVotes(0)
