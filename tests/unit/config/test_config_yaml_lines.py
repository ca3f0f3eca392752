"""YAML parsing with lines: syntax errors, duplicate keys, scalar typing, path lines."""

from __future__ import annotations

import pytest

from safewatch.config.yaml_lines import format_path, parse_yaml
from safewatch.errors import ConfigError

DOC = """\
version: 1
cameras:
  yard:
    fps: 5
    models: [coco, ppe]
rules:
  - id: a
    kind: ppe
  - id: b
"""


def test_every_key_and_item_has_its_line() -> None:
    doc = parse_yaml(DOC, "site.yaml")
    assert doc.lines[("version",)] == 1
    assert doc.lines[("cameras", "yard")] == 3
    assert doc.lines[("cameras", "yard", "fps")] == 4
    assert doc.lines[("cameras", "yard", "models", 1)] == 5
    assert doc.lines[("rules", 1)] == 9
    assert doc.lines[("rules", 0, "kind")] == 8


def test_line_of_missing_path_is_the_nearest_parent() -> None:
    doc = parse_yaml(DOC, "site.yaml")
    assert doc.line_of(("cameras", "yard", "source")) == 3
    assert doc.line_of(("nothing", "here")) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1, 2\nb: 3\n", "site.yaml:2: YAML syntax error: expected ',' or ']', but got ':'"),
        ("a: 1\n  b: 2\n", "site.yaml:2: YAML syntax error: mapping values are not allowed here"),
        ("a: 'open\n", "site.yaml:2: YAML syntax error: found unexpected end of stream"),
        ("a: 1\n---\nb: 2\n", "site.yaml:2: YAML syntax error: but found another document"),
        ("a: !!binary aGk=\n", "site.yaml:1: a: unsupported YAML tag tag:yaml.org,2002:binary"),
        (
            "base: &b {x: 1}\nc:\n  <<: *b\n",
            "site.yaml:3: c: YAML merge keys (<<) are not supported",
        ),
    ],
)
def test_malformed_yaml_names_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "site.yaml")
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 2\na: 3\n", "site.yaml:3: a: duplicate key (first defined at line 1)"),
        (
            "cams:\n  yard:\n    fps: 5\n    fps: 6\n",
            "site.yaml:4: cams.yard.fps: duplicate key (first defined at line 3)",
        ),
        (
            "r:\n  - {id: x, id: y}\n",
            "site.yaml:2: r[0].id: duplicate key (first defined at line 2)",
        ),
    ],
)
def test_duplicate_keys_are_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "site.yaml")
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("scalar", "value"),
    [
        ("06:00", "06:00"),
        ("22:30", "22:30"),
        ("2024-01-02", "2024-01-02"),
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("true", True),
        ("False", False),
        ("5", 5),
        ("-3", -3),
        ("0x1F", 31),
        ("2.5", 2.5),
        ("1e3", 1000.0),
        ("~", None),
        ("null", None),
        ("''", ""),
        ("'5'", "5"),
        ("3s", "3s"),
    ],
)
def test_scalars_follow_yaml_1_2_core(scalar: str, value: object) -> None:
    assert parse_yaml(f"v: {scalar}\n", "f.yaml").data == {"v": value}


def test_empty_document_is_none() -> None:
    assert parse_yaml("# nothing\n", "f.yaml").data is None


def test_keys_are_always_text() -> None:
    assert parse_yaml("1: a\ntrue: b\n", "f.yaml").data == {"1": "a", "true": "b"}


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("cameras", "yard", "fps"), "cameras.yard.fps"),
        (("rules", 0, "require", 1), "rules[0].require[1]"),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


def test_aliases_that_expand_without_end_are_refused_quickly() -> None:
    """About 400 bytes of nested aliases expand to 10^8 values: it ran out of memory (the API
    validates rule files any viewer may send). Refused after MAX_NODES values, in well under a
    second, while ordinary aliases still load."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(ConfigError, match="expands to more than 100,000 values; YAML aliases"):
        parse_yaml("\n".join(levels) + "\n", "rules.yaml")
    small = parse_yaml("pt: &p [0.1, 0.2]\npoly: [*p, *p, *p]\n", "rules.yaml")
    assert small.data["poly"] == [[0.1, 0.2]] * 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nrules: &r\n  - *r\n", "rules.yaml:2: nested more than 64 levels deep"),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "rules.yaml: YAML nested too deeply to read"),
        ("a: " + "[" * 65 + "]" * 65 + "\n", "rules.yaml:1: nested more than 64 levels deep"),
    ],
)
def test_nesting_too_deep_is_an_error_naming_the_file(text: str, expected: str) -> None:
    """An alias inside the block it names, or ~2,000 nested ``[``, raised RecursionError: a
    traceback from check-config and ``rules validate``, a 500 from the dashboard's editor."""
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "rules.yaml")
    assert caught.value.format().startswith(expected), caught.value.format()
    assert parse_yaml("a: " + "[" * 64 + "]" * 64 + "\n", "rules.yaml").data is not None
