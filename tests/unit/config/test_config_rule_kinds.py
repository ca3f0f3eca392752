"""Rule files with the newer kinds: units, lines, per-kind validation and cross-references."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from safewatch.config.measures import Length, Speed, parse_length, parse_speed
from safewatch.config.rules import LineCrossingRule, ProximityRule, Rule
from safewatch.config.ruleset import load_rules
from safewatch.config.site import SiteConfig
from safewatch.errors import ConfigError

SITE = SiteConfig.model_validate(
    {
        "models": {"coco": {"path": "m.onnx"}},
        "cameras": {
            "yard": {"source": "a.mp4", "models": ["coco"]},
            "dock": {"source": "b.mp4", "models": ["coco"]},
        },
    }
)
_RULE = TypeAdapter[Rule](Rule)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2m", Length(2.0, "m")),
        ("2.5 m", Length(2.5, "m")),
        ("50cm", Length(0.5, "m")),
        ("150px", Length(150.0, "px")),
        (".5m", Length(0.5, "m")),
    ],
)
def test_lengths(text: str, expected: Length) -> None:
    assert parse_length(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10km/h", Speed(10 / 3.6, "m")), ("3 m/s", Speed(3.0, "m")), ("200px/s", Speed(200.0, "px"))],
)
def test_speeds(text: str, expected: Speed) -> None:
    parsed = parse_speed(text)
    assert parsed.unit == expected.unit
    assert parsed.value == pytest.approx(expected.value)


@pytest.mark.parametrize("text", ["2", 2, "2 metres", "-1m", "2mm", "m", True, None])
def test_bad_lengths(text: object) -> None:
    with pytest.raises(ValueError, match="invalid distance"):
        parse_length(text)


@pytest.mark.parametrize("text", ["10", "10 mph", "3m", "-1m/s"])
def test_bad_speeds(text: object) -> None:
    with pytest.raises(ValueError, match="invalid speed"):
        parse_speed(text)


def test_units_dump_back_as_written() -> None:
    built = _RULE.validate_python(
        {
            "id": "p",
            "kind": "proximity",
            "objects": ["forklift"],
            "max_distance": "2m",
            "approaching": "3.6km/h",
        }
    )
    assert isinstance(built, ProximityRule)
    dumped = built.model_dump()
    assert (dumped["max_distance"], dumped["approaching"]) == ("2m", "3.6km/h")
    assert _RULE.validate_python(dumped) == built


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"kind": "proximity", "max_distance": "2m"},
            r"give `objects` \(moving hazards\), `machine_zone`",
        ),
        (
            {
                "kind": "proximity",
                "objects": ["forklift"],
                "max_distance": "2m",
                "approaching": "50px/s",
            },
            "both be metric",
        ),
        (
            {
                "kind": "proximity",
                "subjects": ["person"],
                "objects": ["person"],
                "max_distance": "2m",
            },
            "both a subject and an object",
        ),
        ({"kind": "occupancy", "zone": "z"}, "give `max_count`, `min_count`, or both"),
        (
            {"kind": "occupancy", "zone": "z", "min_count": 4, "max_count": 3},
            "larger than `max_count`",
        ),
        ({"kind": "occupancy", "zone": "z", "min_count": 1}, "greater than or equal to 2"),
        ({"kind": "speed", "max_speed": "100px/s"}, "km/h or m/s"),
        ({"kind": "dwell", "zone": "z", "max_time": 0}, "greater than 0"),
        ({"kind": "zone_clear", "zone": "z"}, "max_time"),
        ({"kind": "line_crossing", "line": "l", "anchor": "box"}, "'feet' or 'centre'"),
        ({"kind": "line_crossing", "line": "l", "confirm_frames": 0}, "greater than or equal to 1"),
        ({"kind": "line_crossing", "line": "l", "direction": "in"}, "'any', 'left_to_right'"),
    ],
)
def test_kind_validation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _RULE.validate_python({"id": "r", **fields})


RULES = """\
version: 1
zones:
  dock_bay: {camera: dock, polygon: [[0.1, 0.5], [0.6, 0.5], [0.6, 0.95]]}
lines:
  dock_door:
    camera: dock
    points: [[0.2, 0.6], [0.8, 0.6]]
    description: Door from the dock into the warehouse
rules:
  - id: door-count
    kind: line_crossing
    line: dock_door
    direction: left_to_right
  - id: bay-crowding
    kind: occupancy
    zone: dock_bay
    max_count: 4
"""


def _load(tmp_path: Path, text: str, site: SiteConfig | None = SITE) -> str | None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    try:
        rules = load_rules(path, site)
    except ConfigError as error:
        return (
            error.format().replace(str(tmp_path) + "/", "")
            if hasattr(error, "format")
            else str(error)
        )
    assert rules.files == (path,)
    return None


def test_lines_section_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    rules = load_rules(path, SITE)
    assert [line.id for line in rules.lines_for("dock")] == ["dock_door"]
    assert rules.line("dock_door").a == (0.2, 0.6)
    door = rules.rule("door-count")
    assert isinstance(door, LineCrossingRule)
    assert [r.id for r in rules.for_camera("dock")] == ["door-count", "bay-crowding"]
    assert rules.for_camera("yard") == ()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "line: dock_door",
            "line: dock_dor",
            "rules.yaml:12: rules[0].line: unknown line 'dock_dor' (defined: dock_door)",
        ),
        (
            "    direction: left_to_right\n",
            "    direction: left_to_right\n    cameras: [yard]\n",
            "rules.yaml:12: rules[0].line: line 'dock_door' is on camera 'dock', which the "
            "rule's cameras (yard) do not include",
        ),
        (
            "    camera: dock\n    points",
            "    camera: gate\n    points",
            "rules.yaml:6: lines.dock_door.camera: unknown camera 'gate' "
            "(site cameras: dock, yard)",
        ),
        (
            "[[0.2, 0.6], [0.8, 0.6]]",
            "[[0.2, 0.6], [0.2, 0.6]]",
            "rules.yaml:7: lines.dock_door.points: the two points are the same",
        ),
        ("[[0.2, 0.6], [0.8, 0.6]]", "[[0.2, 0.6]]", "rules.yaml:7: lines.dock_door.points"),
        (
            "zone: dock_bay",
            "zone: dock_bays",
            "rules.yaml:16: rules[1].zone: unknown zone 'dock_bays' (defined: dock_bay)",
        ),
    ],
)
def test_reference_errors(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in RULES
    error = _load(tmp_path, RULES.replace(old, new))
    assert error is not None
    assert error.startswith(message), error


def test_a_line_id_defined_twice(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(RULES, encoding="utf-8")
    other = "lines:\n  dock_door: {camera: dock, points: [[0.1, 0.1], [0.2, 0.2]]}\n"
    (tmp_path / "b.yaml").write_text(other, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path, SITE)
    assert str(info.value).replace(str(tmp_path) + "/", "") == (
        "b.yaml:2: lines.dock_door: line id already defined at " + str(tmp_path) + "/a.yaml:5"
    ).replace(str(tmp_path) + "/", "")


def test_proximity_machine_zone_reference(tmp_path: Path) -> None:
    text = (
        RULES
        + "  - {id: press-distance, kind: proximity, machine_zone: press, max_distance: 80px}\n"
    )
    error = _load(tmp_path, text)
    assert error is not None
    assert error.endswith("rules[2].machine_zone: unknown zone 'press' (defined: dock_bay)")


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        (
            "{id: yard-speed, kind: speed, max_speed: 10km/h, anchor: centre}",
            "rules.yaml:4: rules[0].speed: rule 'yard-speed' measures speeds in metres on the "
            "floor, "
            "but `anchor: centre` is the box centre",
        ),
        ("{id: yard-speed, kind: speed, max_speed: 10km/h, anchor: center}", "use the default"),
        (
            "{id: exit-clear, kind: zone_clear, zone: z, max_time: 30s, max_movement: 0.3m,"
            " anchor: centre}",
            "rules.yaml:4: rules[0].zone_clear: rule 'exit-clear' measures movement in metres",
        ),
        ("{id: yard-speed, kind: speed, max_speed: 10km/h}", None),
        ("{id: exit-clear, kind: zone_clear, zone: z, max_time: 30s, anchor: centre}", None),
        (
            "{id: exit-clear, kind: zone_clear, zone: z, max_time: 30s, max_movement: 20px,"
            " anchor: centre}",
            None,
        ),
        (
            "{id: exit-clear, kind: zone_clear, zone: z, max_time: 30s, max_movement: 0.3m,"
            " anchor: box}",
            None,
        ),
    ],
)
def test_rules_in_metres_measure_from_the_feet(
    tmp_path: Path, rule: str, error: str | None
) -> None:
    """The floor calibration maps points of the floor: a box centre, above it, read a 9 km/h
    forklift at about 11 km/h, so a rule measuring in metres refuses it at load."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        f"zones:\n  z: {{camera: yard, polygon: [[0, 0], [1, 0], [1, 1]]}}\nrules:\n  - {rule}\n"
    )
    if error is None:
        load_rules(path)
        return
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert error in str(info.value).replace(str(path), "rules.yaml")
    assert "use the default foot anchor" in str(info.value)
