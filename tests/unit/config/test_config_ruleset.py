"""Rule files: models, merging a folder, and cross-reference errors with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from safewatch.config.rules import PPERule, ZoneIntrusionRule
from safewatch.config.ruleset import RuleSet, load_rules
from safewatch.config.site import SiteConfig
from safewatch.domain.events import Severity
from safewatch.errors import ConfigError

SITE = SiteConfig.model_validate(
    {
        "models": {"coco": {"path": "m.onnx"}},
        "cameras": {
            "line-2": {"source": "a.mp4", "models": ["coco"]},
            "dock": {"source": "b.mp4", "models": ["coco"]},
        },
    }
)

RULES = """\
version: 1
zones:
  press_area:
    camera: line-2
    polygon: [[0.10, 0.50], [0.60, 0.50], [0.60, 0.95], [0.10, 0.95]]
rules:
  - id: hardhat-required
    kind: ppe
    cameras: [line-2, dock]
    require: [hardhat]
    min_duration: 3s
    severity: high
  - id: no-entry-press
    kind: zone_intrusion
    zone: press_area
    objects: [person]
    schedule: {days: [mon, tue, wed, thu, fri], between: ["06:00", "22:00"]}
"""


def _write(folder: Path, text: str, name: str = "rules.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _error(path: Path, site: SiteConfig | None = SITE) -> str:
    with pytest.raises(ConfigError) as info:
        load_rules(path, site)
    return str(info.value).replace(str(path.parent) + "/", "")


def test_architecture_example_loads(tmp_path: Path) -> None:
    rules = load_rules(_write(tmp_path, RULES), SITE)
    ppe, zone = rules.rules
    assert isinstance(ppe, PPERule)
    assert ppe.min_duration == 3.0
    assert ppe.severity is Severity.HIGH
    assert ppe.objects == ("person",)
    assert ppe.grace == 1.0
    assert isinstance(zone, ZoneIntrusionRule)
    assert zone.severity is Severity.MEDIUM
    assert zone.anchor == "feet"
    assert zone.schedule is not None
    assert zone.schedule.window_seconds() == (6 * 3600, 22 * 3600)
    assert rules.zone("press_area").camera_id == "line-2"
    assert rules.for_camera("dock") == (ppe,)
    assert rules.for_camera("line-2") == (ppe, zone)
    assert rules.zones_for("dock") == ()


def test_rule_set_is_immutable(tmp_path: Path) -> None:
    rules = load_rules(_write(tmp_path, RULES), SITE)
    with pytest.raises(AttributeError):
        rules.rules = ()  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        rules.rules[0].enabled = False  # type: ignore[misc]
    assert isinstance(rules.rules[0].cameras, tuple)


def test_folder_is_merged_in_name_order(tmp_path: Path) -> None:
    _write(tmp_path, RULES, "b.yaml")
    _write(
        tmp_path,
        """\
        rules:
          - {id: vest-required, kind: ppe, require: [vest]}
        """,
        "a.yml",
    )
    (tmp_path / "notes.txt").write_text("not a rule file")
    rules = load_rules(tmp_path, SITE)
    assert [r.id for r in rules.rules] == ["vest-required", "hardhat-required", "no-entry-press"]
    assert [p.name for p in rules.files] == ["a.yml", "b.yaml"]


def test_empty_folder_is_an_empty_set(tmp_path: Path) -> None:
    assert load_rules(tmp_path) == RuleSet()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    min_duration: 3s\n",
            "    min_duration: 3 secs\n",
            "rules.yaml:11: rules[0].min_duration: invalid duration: expected seconds or a "
            "number with a unit: 500ms, 3s, 2m, 1h (got '3 secs')",
        ),
        (
            "    require: [hardhat]\n",
            "    requires: [hardhat]\n",
            "rules.yaml:7: rules[0].require: required field is missing\n"
            "rules.yaml:10: rules[0].requires: unknown field",
        ),
        (
            "    kind: ppe\n",
            "    kind: pee\n",
            "rules.yaml:8: rules[0].kind: unknown kind 'pee' (expected one of: ppe, "
            "zone_intrusion, dwell, line_crossing, proximity, occupancy, zone_clear, speed)",
        ),
        (
            "    kind: ppe\n",
            "",
            "rules.yaml:7: rules[0].kind: required field is missing",
        ),
        (
            "    severity: high\n",
            "    severity: extreme\n",
            "rules.yaml:12: rules[0].severity: input should be 'low', 'medium', 'high' or "
            "'critical' (got 'extreme')",
        ),
        (
            "    zone: press_area\n",
            "    zone: press_aera\n",
            "rules.yaml:15: rules[1].zone: unknown zone 'press_aera' (defined: press_area)",
        ),
        (
            "    cameras: [line-2, dock]\n",
            "    cameras: [line-2, dokc]\n",
            "rules.yaml:9: rules[0].cameras[1]: unknown camera 'dokc' (site cameras: dock, line-2)",
        ),
        (
            "    camera: line-2\n",
            "    camera: line-3\n",
            "rules.yaml:4: zones.press_area.camera: unknown camera 'line-3' (site cameras: dock, "
            "line-2)",
        ),
        (
            "    zone: press_area\n",
            "    zone: press_area\n    cameras: [dock]\n",
            "rules.yaml:15: rules[1].zone: zone 'press_area' is on camera 'line-2', which the "
            "rule's cameras (dock) do not include",
        ),
        (
            '["06:00", "22:00"]',
            '["06:00", "6pm"]',
            "rules.yaml:17: rules[1].schedule.between[1]: string should match pattern "
            "'^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$' (got '6pm')",
        ),
        (
            "[mon, tue, wed, thu, fri]",
            "[mon, tue, mon]",
            "rules.yaml:17: rules[1].schedule.days: lists 'mon' twice",
        ),
        (
            '["06:00", "22:00"]',
            '["06:00", "06:00"]',
            "rules.yaml:17: rules[1].schedule.between: start and end are the same time; omit "
            "`between` for all day",
        ),
        (
            "[0.60, 0.95], [0.10, 0.95]",
            "[0.60, 1.5], [0.10, 0.95]",
            "rules.yaml:5: zones.press_area.polygon[2][1]: input should be less than or equal "
            "to 1 (got 1.5)",
        ),
        (
            "[[0.10, 0.50], [0.60, 0.50], [0.60, 0.95], [0.10, 0.95]]",
            "[[0.1, 0.5], [0.6, 0.5]]",
            "rules.yaml:5: zones.press_area.polygon: a polygon needs at least 3 points (got 2)",
        ),
        (
            "[[0.10, 0.50], [0.60, 0.50], [0.60, 0.95], [0.10, 0.95]]",
            "[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]",
            "rules.yaml:5: zones.press_area.polygon: polygon has no area (all points on a line)",
        ),
        (
            "[[0.10, 0.50], [0.60, 0.50], [0.60, 0.95], [0.10, 0.95]]",
            "[[0, 0], [1, 1], [1, 0], [0, 1]]",
            "rules.yaml:5: zones.press_area.polygon: polygon edges 1 and 3 cross each other: list "
            "the points in order around the zone",
        ),
        (
            "[[0.10, 0.50], [0.60, 0.50], [0.60, 0.95], [0.10, 0.95]]",
            "[[0.1, 0.5], [0.6, 1.5], [0.1, 0.95]]",
            "rules.yaml:5: zones.press_area.polygon[1][1]: input should be less than or equal "
            "to 1 (got 1.5)",
        ),
        (
            "  - id: no-entry-press\n",
            "  - id: no entry press\n",
            "rules.yaml:13: rules[1].id: string should match pattern "
            "'^[A-Za-z0-9][A-Za-z0-9_.-]*$' (got 'no entry press')",
        ),
        (
            "  - id: no-entry-press\n",
            "  - id: hardhat-required\n",
            "rules.yaml:13: rules[1].id: rule id 'hardhat-required' already defined at "
            "rules.yaml:7",
        ),
    ],
)
def test_rule_file_errors(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in RULES
    path = _write(tmp_path, RULES.replace(old, new))
    assert _error(path) == expected


def test_unknown_camera_is_fine_without_a_site(tmp_path: Path) -> None:
    path = _write(tmp_path, RULES.replace("[line-2, dock]", "[line-2, anywhere]"))
    assert len(load_rules(path).rules) == 2


def test_duplicate_ids_across_files_name_both_files(tmp_path: Path) -> None:
    _write(tmp_path, RULES, "a.yaml")
    second = _write(
        tmp_path,
        """\
        zones:
          press_area: {camera: dock, polygon: [[0, 0], [1, 0], [1, 1]]}
        rules:
          - {id: hardhat-required, kind: ppe, require: [hardhat]}
        """,
        "b.yaml",
    )
    first = tmp_path / "a.yaml"
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path, SITE)
    assert str(info.value) == (
        f"{second}:2: zones.press_area: zone id already defined at {first}:3\n"
        f"{second}:4: rules[0].id: rule id 'hardhat-required' already defined at {first}:7"
    )


def test_zone_reference_across_files(tmp_path: Path) -> None:
    _write(tmp_path, "zones:\n  z: {camera: dock, polygon: [[0, 0], [1, 0], [1, 1]]}\n", "a.yaml")
    _write(tmp_path, "rules:\n  - {id: r, kind: zone_intrusion, zone: z}\n", "b.yaml")
    rules = load_rules(tmp_path, SITE)
    assert rules.for_camera("dock")[0].id == "r"
    assert rules.for_camera("line-2") == ()


def test_ppe_zone_scope_and_aliases(tmp_path: Path) -> None:
    text = RULES + (
        "  - {id: vest-in-press, kind: ppe, require: [vest], zones: [press_area]}\n"
        "  - {id: centre, kind: zone_intrusion, zone: press_area, anchor: center}\n"
    )
    rules = load_rules(_write(tmp_path, text), SITE)
    assert [r.id for r in rules.for_camera("dock")] == ["hardhat-required"]
    centre = rules.rule("centre")
    assert isinstance(centre, ZoneIntrusionRule)
    assert centre.anchor == "centre"


def test_disabled_rules_are_validated_but_not_run(tmp_path: Path) -> None:
    text = RULES.replace("    severity: high\n", "    severity: high\n    enabled: false\n")
    rules = load_rules(_write(tmp_path, text), SITE)
    assert [r.id for r in rules.for_camera("line-2")] == ["no-entry-press"]


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file or folder not found"):
        load_rules(tmp_path / "nope")


def test_empty_sections_are_allowed(tmp_path: Path) -> None:
    assert load_rules(_write(tmp_path, "version: 1\nzones:\nrules:\n")) == RuleSet(
        files=(tmp_path / "rules.yaml",)
    )


def test_a_rule_whose_clips_start_late_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The docs' own example: min_duration 30 s with the default evidence (pre 5 s, buffer 10 s)
    # fires 30 s after the violation began, when the buffer reaches back only 10 s: the clip
    # misses the first 20 s of the violation. A warning naming the fix, not a refusal.
    path = _write(tmp_path, RULES.replace("min_duration: 3s", "min_duration: 30s"))
    load_rules(path, SITE)
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "rules.yaml:" in message
    assert "rule 'hardhat-required' (cameras line-2, dock)" in message
    assert "miss the first 20 s of the violation itself" in message
    assert "raise evidence.buffer_seconds to 35" in message
    # Short enough: no warning; and none when the buffer is raised as it says.
    caplog.clear()
    load_rules(_write(tmp_path, RULES), SITE)
    roomy = SITE.model_copy(
        update={"evidence": SITE.evidence.model_copy(update={"buffer_seconds": 35.0})}
    )
    load_rules(path, roomy)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
