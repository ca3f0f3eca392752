"""Placement of cameras on analyzers: rendezvous stickiness, balance within one, labels, weights."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping

import pytest

from safewatch.cluster.placement import Analyzer, plan, score

CAMERAS = [f"cam-{n}" for n in range(6)]


def counts(target: Mapping[str, str | None]) -> Counter[str | None]:
    return Counter(target.values())


def settle(
    cameras: list[str],
    analyzers: list[Analyzer],
    owners: dict[str, str | None],
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[dict[str, str | None], int]:
    """Apply the plan one camera at a time, as the members do; return owners and moves."""
    for moves in range(100):
        target = plan(cameras, analyzers, owners, labels)
        wrong = sorted(c for c in cameras if owners.get(c) != target[c])
        if not wrong:
            return owners, moves
        owners = {**owners, wrong[0]: target[wrong[0]]}
    raise AssertionError("placement does not settle")


def test_same_inputs_same_plan_in_any_order() -> None:
    analyzers = [Analyzer(f"a{n}") for n in range(3)]
    first = plan(CAMERAS, analyzers, {})
    again = plan(list(reversed(CAMERAS)), list(reversed(analyzers)), {})
    assert first == again
    assert set(first.values()) <= {"a0", "a1", "a2"}


@pytest.mark.parametrize("members", [2, 3, 4, 5])
def test_counts_differ_by_at_most_one(members: int) -> None:
    analyzers = [Analyzer(f"a{n}") for n in range(members)]
    cameras = [f"cam-{n}" for n in range(23)]
    per = counts(plan(cameras, analyzers, {}))
    assert max(per.values()) - min(per.values()) <= 1
    assert sum(per.values()) == 23


def test_join_moves_only_what_it_must_and_balances() -> None:
    three = [Analyzer("a0"), Analyzer("a1"), Analyzer("a2")]
    owners, _ = settle(CAMERAS, three[:2], {})
    assert sorted(counts(owners).values()) == [3, 3]
    owners_after, moves = settle(CAMERAS, three, owners)
    assert sorted(counts(owners_after).values()) == [2, 2, 2]
    assert moves == 2  # exactly the two cameras the newcomer takes
    assert all(owners_after[c] in (owners[c], "a2") for c in CAMERAS)


def test_leave_moves_only_the_leavers_cameras() -> None:
    three = [Analyzer("a0"), Analyzer("a1"), Analyzer("a2")]
    owners, _ = settle(CAMERAS, three, {})
    gone = {c for c in CAMERAS if owners[c] == "a1"}
    orphaned: dict[str, str | None] = {c: (None if c in gone else o) for c, o in owners.items()}
    owners_after, moves = settle(CAMERAS, [three[0], three[2]], orphaned)
    assert sorted(counts(owners_after).values()) == [3, 3]
    assert moves == len(gone)
    assert all(owners_after[c] == owners[c] for c in CAMERAS if c not in gone)


def test_balanced_cluster_is_left_alone_with_an_uneven_count() -> None:
    analyzers = [Analyzer("a0"), Analyzer("a1"), Analyzer("a2")]
    cameras = [f"cam-{n}" for n in range(7)]
    owners, _ = settle(cameras, analyzers, {})
    # Whichever analyzer holds the seventh camera keeps it: no needless move.
    assert plan(cameras, analyzers, owners) == owners


def test_capacity_weights_the_share() -> None:
    analyzers = [Analyzer("big", capacity=2), Analyzer("small", capacity=1)]
    per = counts(plan(CAMERAS, analyzers, {}))
    assert per == {"big": 4, "small": 2}


def test_required_labels_restrict_and_unplaceable_is_none() -> None:
    analyzers = [Analyzer("gpu", labels={"gpu": "true"}), Analyzer("cpu")]
    labels = {"cam-0": {"gpu": "true"}, "cam-1": {"gpu": "true"}, "cam-5": {"zone": "north"}}
    target = plan(CAMERAS, analyzers, {}, labels)
    assert target["cam-0"] == target["cam-1"] == "gpu"
    assert target["cam-5"] is None
    assert sum(1 for c in CAMERAS if target[c] is not None) == 5


def test_dead_owner_is_ignored() -> None:
    target = plan(CAMERAS, [Analyzer("a0")], {c: "dead" for c in CAMERAS})
    assert set(target.values()) == {"a0"}


def test_score_is_deterministic_and_weighted() -> None:
    assert score("cam-1", Analyzer("a0")) == score("cam-1", Analyzer("a0"))
    assert score("cam-1", Analyzer("a0", capacity=2)) == 2 * score("cam-1", Analyzer("a0"))
    assert score("cam-1", Analyzer("a0", capacity=0)) == 0.0


def test_random_clusters_settle_and_label_cameras_stay_on_eligible_analyzers() -> None:
    rng = random.Random(14)
    for _ in range(200):
        analyzers = [
            Analyzer(f"a{n}", rng.choice([1, 1, 2]), {"gpu": "true"} if rng.random() < 0.5 else {})
            for n in range(rng.randint(1, 4))
        ]
        cameras = [f"cam-{n}" for n in range(rng.randint(1, 12))]
        labels = {c: {"gpu": "true"} for c in cameras if rng.random() < 0.3}
        owners, _ = settle(cameras, analyzers, {}, labels)
        by_id = {a.analyzer_id: a for a in analyzers}
        for camera, owner in owners.items():
            if camera in labels:
                assert owner is None or by_id[owner].labels.get("gpu") == "true"
            else:
                assert owner is not None
        if len(analyzers) > 1:  # one leaves: only its cameras move (or one more, for labels)
            gone = analyzers[0].analyzer_id
            lost = sum(1 for owner in owners.values() if owner == gone)
            orphaned = {c: (None if o == gone else o) for c, o in owners.items()}
            _, moves = settle(cameras, analyzers[1:], orphaned, labels)
            assert moves <= lost + 1
