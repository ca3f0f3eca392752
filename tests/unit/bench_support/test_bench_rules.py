"""bench/rules stays fair: 20 rules of every kind, and a workload that makes them fire."""

from __future__ import annotations

from pathlib import Path

from bench.rules import CALIBRATION, CAMERA, TRACKS, rule_set, synthetic_frames

from safewatch.domain import Phase
from safewatch.rules import RuleEngine

KINDS = {"ppe", "zone_intrusion", "dwell", "line_crossing", "proximity", "occupancy",
         "zone_clear", "speed"}  # fmt: skip


def test_twenty_rules_of_every_kind_and_fifty_tracks(tmp_path: Path) -> None:
    rules = rule_set(tmp_path)
    assert len(rules.rules) == 20
    assert {rule.kind for rule in rules.rules} == KINDS
    frames = synthetic_frames(120)
    assert all(len(f.tracks) == TRACKS for f in frames)
    assert len({t.track_id for f in frames for t in f.tracks}) > TRACKS, "tracks come and go"


def test_the_workload_makes_most_rules_fire(tmp_path: Path) -> None:
    engine = RuleEngine(rule_set(tmp_path), "UTC", {CAMERA: CALIBRATION})
    started = {e.rule_id for f in synthetic_frames(150) for e in engine.evaluate(f)
               if e.phase is Phase.STARTED}  # fmt: skip
    kinds = {engine.rules.rule(r).kind for r in started}
    # Dwell, zone_clear and lone-worker need people to linger; the random walk rarely does.
    assert kinds >= KINDS - {"dwell", "zone_clear"}, sorted(kinds)
    assert len(started) >= 14
