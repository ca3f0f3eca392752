"""Site loading: each kind of mistake becomes one exact ``file:line: field: message``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from safewatch.config.loader import load_site
from safewatch.config.validation import ConfigErrors
from safewatch.errors import ConfigError

GOOD = """\
version: 1
site:
  name: Test site
models:
  coco:
    path: models/coco.onnx
cameras:
  yard:
    source: rtsp://viewer:${CAM_PASS}@10.0.0.5/stream
    fps: 5
    models: [coco]
"""


def _write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_site(path, environ={"CAM_PASS": "s3cr3t-pw"} if env is None else env)
    message = str(info.value)
    assert "s3cr3t-pw" not in message
    return message.replace(str(path), "site.yaml")


def test_good_site_loads_with_base_dir_and_secret(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    loaded = load_site(path, environ={"CAM_PASS": "s3cr3t-pw"})
    assert loaded.config.cameras["yard"].source == "rtsp://viewer:s3cr3t-pw@10.0.0.5/stream"
    assert loaded.base_dir == tmp_path.resolve()
    assert loaded.path == path.resolve()
    assert loaded.resolve("models/coco.onnx") == tmp_path.resolve() / "models/coco.onnx"
    assert loaded.resolve("/abs/x.onnx") == Path("/abs/x.onnx")


def test_relative_path_to_site_resolves_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    _write(tmp_path / "conf", GOOD)
    monkeypatch.chdir(tmp_path)
    loaded = load_site("conf/site.yaml", environ={"CAM_PASS": "x"})
    assert loaded.resolve("a.mp4") == tmp_path.resolve() / "conf" / "a.mp4"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    fps: 5\n", "    fsp: 5\n", "site.yaml:10: cameras.yard.fsp: unknown field"),
        (
            "    fps: 5\n",
            "    fps: fast\n",
            "site.yaml:10: cameras.yard.fps: input should be a valid number, unable to parse "
            "string as a number (got 'fast')",
        ),
        (
            "    fps: 5\n",
            "    fps: 500\n",
            "site.yaml:10: cameras.yard.fps: input should be less than or equal to 120 (got 500)",
        ),
        (
            "    source: rtsp://viewer:${CAM_PASS}@10.0.0.5/stream\n",
            "",
            "site.yaml:8: cameras.yard.source: required field is missing",
        ),
        (
            "version: 1\n",
            "version: 2\n",
            "site.yaml:1: version: input should be 1 (got 2)",
        ),
        (
            "    fps: 5\n",
            "    fps: 5\n    fps: 6\n",
            "site.yaml:11: cameras.yard.fps: duplicate key (first defined at line 10)",
        ),
        (
            "    models: [coco]\n",
            "    models: [coco, coco]\n",
            "site.yaml:11: cameras.yard.models: lists a model twice",
        ),
        (  # a cross-field check names the entry, not the file's first line (`version: 1`)
            "    models: [coco]\n",
            "    models:\n      - coco\n      - pp\n",
            "site.yaml:13: cameras.yard.models[1]: camera 'yard' uses model 'pp', which is not "
            "defined (defined: coco)",
        ),
        (
            "    models: [coco]\n",
            "    models: [coco]\nalerts:\n  channels:\n    hook: {type: webhook, url: "
            "'https://hooks.example/x'}\n  routes:\n    - id: r\n      channels: [hook]\n"
            "      match:\n        cameras: [yard, gate]\n",
            "site.yaml:19: alerts.routes[0].match.cameras[1]: alert route 'r' matches camera "
            "'gate', which is not defined (defined: yard)",
        ),
        (  # the API's paths and filters could not name such a camera
            "  yard:\n",
            "  Süd tor:\n",
            "site.yaml:8: cameras.Süd tor: string should match pattern "
            "'^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
        ),
        (
            "  name: Test site\n",
            "  name: [Test site\n",
            "site.yaml:4: YAML syntax error: expected ',' or ']', but got ':'",
        ),
    ],
)
def test_site_errors(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert _error(tmp_path, GOOD.replace(old, new)) == expected


def test_unset_variable_is_named(tmp_path: Path) -> None:
    assert _error(tmp_path, GOOD, env={}) == (
        "site.yaml:9: cameras.yard.source: environment variable CAM_PASS is not set "
        "(referenced as ${CAM_PASS})"
    )


def test_an_empty_variable_is_named_like_an_unset_one(tmp_path: Path) -> None:
    """Compose passes a variable it was not given on as empty (``VAR: ${VAR:-}``): the site
    loaded with an empty source and failed later, without naming the variable."""
    assert _error(tmp_path, GOOD, env={"CAM_PASS": ""}) == (
        "site.yaml:9: cameras.yard.source: environment variable CAM_PASS is empty "
        "(referenced as ${CAM_PASS}; write ${CAM_PASS:-} where an empty value is meant)"
    )


def test_interpolated_value_is_shown_raw_in_errors(tmp_path: Path) -> None:
    text = GOOD.replace("    fps: 5\n", "    fps: ${CAM_PASS}\n")
    assert _error(tmp_path, text) == (
        "site.yaml:10: cameras.yard.fps: input should be a valid number, unable to parse string "
        "as a number (got '${CAM_PASS}')"
    )


def test_several_errors_are_all_reported_in_line_order(tmp_path: Path) -> None:
    text = GOOD.replace("    fps: 5\n", "    fps: x\n").replace("  name: Test", "  nam: Test")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigErrors) as info:
        load_site(path, environ={"CAM_PASS": "p"})
    assert [(e.line, e.field) for e in info.value.errors] == [
        (3, "site.nam"),
        (10, "cameras.yard.fps"),
    ]
    assert info.value.line == 3
    assert str(info.value).count("\n") == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_site(tmp_path / "nope.yaml")


def test_empty_file_reports_required_fields(tmp_path: Path) -> None:
    assert _error(tmp_path, "# empty\n") == "site.yaml:1: models: required field is missing\n" + (
        "site.yaml:1: cameras: required field is missing"
    )


def test_not_a_mapping(tmp_path: Path) -> None:
    assert _error(tmp_path, "- a\n- b\n") == (
        "site.yaml:1: input should be a valid dictionary or instance of SiteConfig"
    )


@pytest.mark.parametrize(
    ("tracker", "expected"),
    [
        (
            "tracker:\n  face_subjects: yunet\n",
            "face_subjects needs head_classifier",
        ),
        (
            "tracker:\n  head_thresholds: {bare: 0.7}\n",
            "set without the feature they tune: head_thresholds (needs head_classifier)",
        ),
        (
            "tracker:\n  head_classifier: head_classifier\n  face_cover: head\n"
            "  face_min_score: 0.5\n",
            "set without the feature they tune: face_min_score (needs face_subjects), "
            "face_cover (needs face_subjects)",
        ),
    ],
)
def test_tracker_options_without_their_feature_are_refused(
    tmp_path: Path, tracker: str, expected: str
) -> None:
    """An option of a feature that is off would be ignored without a word."""
    message = _error(tmp_path, GOOD + tracker)
    assert message.startswith("site.yaml:") and "tracker" in message, message
    assert expected in message, message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("  name: Test site\n", "  name: Test site\n  timezone: Mars/Olympus\n"),
            "site.yaml:4: site.timezone: unknown time zone: use an IANA name such as Europe/Berlin "
            "or UTC (got 'Mars/Olympus')",
        ),
        (
            GOOD.replace(
                "    path: models/coco.onnx\n",
                "    path: m.onnx\n    label_confidence: {person: 50}\n",
            ),
            "label_confidence.person: input should be less than or equal to 1",
        ),
        (
            GOOD.replace("    path: models/coco.onnx\n", "    path: m.onnx\n    labels: {}\n"),
            "models.coco.labels: is empty, so the model would report nothing",
        ),
        (GOOD + "tracker:\n  head_tracks: true\n", "head_tracks: a score from 0 to 1 (e.g. 0.3)"),
        (
            GOOD.replace("    fps: 5\n", "    fps: 5\n    loop: true\n"),
            "site.yaml:8: cameras.yard: loop applies to video files only, not to this rtsp camera",
        ),
        (
            GOOD + "tracker:\n  low_score_tracks: 0.9\n",
            "low_score_tracks (0.9) must be below the track start (0.6",
        ),
    ],
)
def test_settings_that_would_silently_misbehave_are_refused_on_load(
    tmp_path: Path, text: str, expected: str
) -> None:
    """A time zone only `audit --start` or a schedule would trip over, a confidence no detection
    reaches, a boolean read as the score 1.0, a score band that holds nothing."""
    message = _error(tmp_path, text)
    assert expected in message, message


def test_tracker_face_options_with_their_features_load(tmp_path: Path) -> None:
    tracker = (
        "tracker:\n  head_classifier: head_classifier\n  head_thresholds: {bare: 0.65}\n"
        "  face_subjects: yunet\n  face_cover: head\n  face_thresholds: {bare: 0.9}\n"
    )
    loaded = load_site(_write(tmp_path, GOOD + tracker), environ={"CAM_PASS": "x"})
    assert loaded.config.tracker.face_cover == "head"


def test_face_detector_files_are_read_relative_to_the_site_file(tmp_path: Path) -> None:
    """They are loaded far from the site file (evidence threads, trackers) where only the working
    directory is at hand; a relative path must still mean the file beside the site file."""
    (tmp_path / "faces.onnx").write_bytes(b"onnx")
    text = GOOD.replace(
        "    models: [coco]\n", "    models: [coco]\n    privacy: {faces: faces.onnx}\n"
    )
    text += "privacy:\n  faces: faces.onnx\ntracker:\n  head_classifier: head_classifier\n"
    text += "  face_subjects: faces.onnx\n"
    config = load_site(_write(tmp_path, text), environ={"CAM_PASS": "x"}).config
    beside = str(tmp_path / "faces.onnx")
    assert config.privacy.faces == config.tracker.face_subjects == beside
    assert config.privacy_for("yard").faces == beside
    # A catalogue name stays a name, and a site naming no such file is loaded as written.
    named = load_site(
        _write(tmp_path, GOOD + "privacy:\n  faces: yunet\n"), environ={"CAM_PASS": "x"}
    )
    assert named.config.privacy.faces == "yunet"


def test_tracker_scores_may_come_from_variables(tmp_path: Path) -> None:
    text = GOOD + "tracker:\n  head_tracks: ${HEAD_TRACKS:-0.3}\n"
    loaded = load_site(_write(tmp_path, text), environ={"CAM_PASS": "x"})
    assert loaded.config.tracker.head_tracks == 0.3


def test_a_located_error_shows_its_reference_without_rewriting_other_names(
    tmp_path: Path,
) -> None:
    """The entry's ``${DET}`` replaced every occurrence of its value in the message, so the list
    of defined models read "coco, ${DET}e" for DET=pp next to a model named ppe."""
    text = GOOD.replace(
        "    path: models/coco.onnx\n", "    path: models/coco.onnx\n  ppe:\n    path: p.onnx\n"
    ).replace("models: [coco]", 'models: [coco, "${DET}"]')
    message = _error(tmp_path, text, {"CAM_PASS": "s3cr3t-pw", "DET": "pp"})
    assert "uses model '${DET}', which is not defined (defined: coco, ppe)" in message, message
