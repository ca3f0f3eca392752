"""``explain_rule``: every kind in plain words, with the defaults the file left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from safewatch.config.rules import WEEKDAYS
from safewatch.config.ruleset import load_rules
from safewatch.config.site import SiteConfig
from safewatch.rules.explain import explain_rule, explain_rules, format_duration

RULES = """\
zones:
  press_area: {camera: yard, polygon: [[0.1, 0.5], [0.6, 0.5], [0.6, 0.95], [0.1, 0.95]]}
  exit_door: {camera: dock, polygon: [[0.0, 0.0], [0.2, 0.0], [0.2, 0.3], [0.0, 0.3]]}
lines:
  gate: {camera: dock, points: [[0.5, 0.2], [0.5, 0.9]]}
rules:
  - id: hardhat-required
    kind: ppe
    cameras: [yard]
    require: [hardhat]
    min_duration: 1s
    severity: high
    schedule: {days: [mon, tue, wed, thu, fri], between: ["06:00", "22:00"]}
  - id: ppe-full
    kind: ppe
    require: [hardhat, vest]
    objects: [person, visitor]
    enabled: false
  - id: hardhat-not-verifiable
    kind: ppe
    require: [hardhat]
    flag: unverifiable
    min_duration: 30s
    severity: low
  - id: press-ppe-check
    kind: ppe
    require: [hardhat, vest]
    zones: [press_area]
    flag: unverifiable
  - id: press-vest
    kind: ppe
    require: [vest]
    zones: [press_area]
  - id: no-entry-press
    kind: zone_intrusion
    zone: press_area
    objects: [person, vehicle]
    anchor: box
    min_duration: 0
    cooldown: 30s
    schedule: {days: [fri, sat], between: ["22:00", "06:00"]}
  - id: loiter
    kind: dwell
    zone: press_area
    max_time: 2m
  - id: gate-in
    kind: line_crossing
    line: gate
    direction: left_to_right
  - id: forklift-distance
    kind: proximity
    objects: [forklift]
    machine_zone: press_area
    max_distance: 2m
    approaching: 1m/s
    severity: critical
  - id: lone-worker
    kind: occupancy
    zone: exit_door
    min_count: 2
    max_count: 5
  - id: exit-clear
    kind: zone_clear
    zone: exit_door
    max_time: 30s
  - id: speed-limit
    kind: speed
    max_speed: 10km/h
    grace: 500ms
"""

SITE = SiteConfig.model_validate(
    {
        "site": {"timezone": "Europe/Berlin"},
        "models": {"coco": {"path": "m.onnx"}},
        "cameras": {
            "yard": {"source": "a.mp4", "models": ["coco"]},
            "dock": {"source": "b.mp4", "models": ["coco"]},
        },
    }
)


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "site.yaml").write_text(RULES)
    rules = load_rules(folder)
    return {
        rule.id: text for rule, text in zip(rules.rules, explain_rules(rules, SITE), strict=True)
    }


def test_the_issue_example_reads_as_written(sentences: dict[str, str]) -> None:
    assert sentences["hardhat-required"] == (
        "hardhat-required (high): on camera yard, a person seen without a hardhat for at least "
        "1 s, Mon-Fri 06:00-22:00 Europe/Berlin, opens an incident; it ends after 1 s compliant "
        "or out of sight."
    )


@pytest.mark.parametrize(
    ("rule_id", "expected"),
    [
        (
            "ppe-full",
            "ppe-full (medium, disabled): on cameras yard, dock, a person or visitor seen "
            "without a hardhat or a vest for at least 2 s, at any time, opens an incident; it "
            "ends after 1 s compliant or out of sight.",
        ),
        (
            # The docs/rules.md example: the opposite of the absent rule, on unknown states
            # (or items no model reported) of tracked persons only.
            "hardhat-not-verifiable",
            "hardhat-not-verifiable (low): on cameras yard, dock, a person (PPE-only subjects "
            "excepted) whose hardhat cannot be checked for at least 30 s, at any time, opens an "
            "incident; it ends after 1 s checked or out of sight.",
        ),
        (
            "press-ppe-check",
            "press-ppe-check (medium): on camera yard, a person (PPE-only subjects excepted) "
            "with its feet in zone press_area whose hardhat or vest cannot be checked for at "
            "least 2 s, at any time, opens an incident; it ends after 1 s checked, outside the "
            "zone or out of sight.",
        ),
        (
            "press-vest",
            "press-vest (medium): on camera yard, a person with its feet in zone press_area "
            "seen without a vest for at least 2 s, at any time, opens an incident; it ends "
            "after 1 s compliant, outside the zone or out of sight.",
        ),
        (
            "no-entry-press",
            "no-entry-press (medium): on camera yard, a person or vehicle with any part of its "
            "box in zone press_area, Fri, Sat 22:00-06:00 (overnight) Europe/Berlin, opens an "
            "incident; it ends after 1 s outside the zone or out of sight; then the same object "
            "raises no new one for 30 s.",
        ),
        (
            "loiter",
            "loiter (medium): on camera yard, a person staying in zone press_area (by its feet) "
            "for longer than 2 min, at any time, opens an incident; it ends after 1 s outside the "
            "zone or out of sight.",
        ),
        (
            "gate-in",
            "gate-in (medium): on camera dock, a person crossing line gate from its left side "
            "to its right (seen walking from its first point to its second), its feet seen on "
            "each side for 3 frames, at any time, is an incident of its own (opened and closed "
            "at once).",
        ),
        (
            "forklift-distance",
            "forklift-distance (critical): on camera yard, a person closer than 2m to a "
            "forklift or machine zone press_area while the gap shrinks by 3.6km/h or faster "
            "(over 1 s), at any time, opens an incident; it ends after 1 s far enough or out of "
            "sight.",
        ),
        (
            "lone-worker",
            "lone-worker (medium): on camera dock, more than 5 people or fewer than 2 people "
            "(but at least one) in zone exit_door (counted by their feet) for at least 2 s, at any "
            "time, opens an incident; it ends after 1 s back within bounds.",
        ),
        (
            "exit-clear",
            "exit-clear (medium): on camera dock, any object standing still (moving less than "
            "half its box width) in zone exit_door for longer than 30 s, at any time, opens an "
            "incident; it ends after 1 s clear again.",
        ),
        (
            "speed-limit",
            "speed-limit (medium): on cameras yard, dock, a vehicle or forklift moving faster "
            "than 10km/h on the floor (averaged over 1 s), at any time, opens an incident; it "
            "ends after 500 ms under the limit or out of sight.",
        ),
    ],
)
def test_every_kind(sentences: dict[str, str], rule_id: str, expected: str) -> None:
    assert sentences[rule_id] == expected


@pytest.mark.parametrize(
    ("bounds", "cooled"),
    [
        ("min_count: 2, max_count: 5", "no new one of the same kind (crowding or lone working)"),
        ("max_count: 5", "no new one"),
    ],
)
def test_an_occupancy_cooldown_holds_back_the_same_kind_only(
    tmp_path: Path, bounds: str, cooled: str
) -> None:
    # Crowding and lone working are separate episodes, each with its own cooldown.
    (tmp_path / "r.yaml").write_text(
        "zones:\n  tank: {camera: c, polygon: [[0, 0], [1, 0], [1, 1]]}\n"
        f"rules:\n  - {{id: tank, kind: occupancy, zone: tank, {bounds}, cooldown: 30s}}\n"
    )
    rules = load_rules(tmp_path)
    assert explain_rule(rules.rule("tank"), rules).endswith(
        f"; then the zone raises {cooled} for 30 s."
    )


def test_without_a_site_schedules_read_in_site_time(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES)
    rules = load_rules(tmp_path)
    text = explain_rule(rules.rule("hardhat-required"), rules)
    assert "Mon-Fri 06:00-22:00 site time" in text
    assert "on every camera" in explain_rule(rules.rule("speed-limit"), rules)
    assert "on camera dock" in explain_rule(rules.rule("gate-in"), rules)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (0.5, "500 ms"), (1, "1 s"), (2.5, "2.5 s"), (90, "90 s"), (120, "2 min"),
     (3600, "1 h"), (5400, "90 min")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_days_are_grouped_in_runs() -> None:
    from safewatch.config.rules import ScheduleConfig
    from safewatch.rules.explain import _when

    assert _when(ScheduleConfig(days=WEEKDAYS), "UTC") == "every day all day (UTC)"
    days = ("sat", "mon", "tue", "wed", "sun")
    assert _when(ScheduleConfig(days=days, between=("08:00", "24:00")), "UTC") == (
        "Mon-Wed, Sat, Sun 08:00-24:00 UTC"
    )


def test_a_slow_camera_says_the_grace_in_force(tmp_path: Path) -> None:
    """On a 0.5 fps camera the grace in force is 3 s (1.5 frame intervals), not the rule's 1 s:
    the explanation says so for that camera and says nothing more where the rule's holds."""
    (tmp_path / "r.yaml").write_text(RULES)
    rules = load_rules(tmp_path)
    slow = SITE.model_copy(
        update={
            "cameras": {
                **SITE.cameras,
                "yard": SITE.cameras["yard"].model_copy(update={"fps": 0.5}),
            }
        }
    )
    text = explain_rule(rules.rule("hardhat-required"), rules, slow)
    assert (
        "it ends after 1 s (1.5 frame intervals where that is longer: 3 s on yard at 0.5 fps)"
        in text
    )
    assert "frame intervals" not in explain_rule(rules.rule("hardhat-required"), rules, SITE)
