"""Protection never disappears silently: blind rules are errors, lost rules and unwatched cameras
are reported by the reloader (issue 13)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from safewatch.config.coverage import _typo_of, camera_labels, missing_labels
from safewatch.config.rules import PPERule, SpeedRule, ZoneIntrusionRule
from safewatch.config.site import SiteConfig
from safewatch.config.validation import ConfigErrors
from safewatch.rules import load_rules
from safewatch.rules.reload import RuleSetHolder
from safewatch.rules.watcher import CAMERA_RULES, RuleWatcher

SITE = SiteConfig.model_validate(
    {
        "version": 1,
        "models": {
            "coco": {"path": "c.onnx", "labels": {"person": "person", "car": "vehicle"}},
            "ppe": {"path": "p.onnx", "class_names": ["Hardhat", "NO-Safety Vest"]},
            "own": {"path": "o.onnx"},  # classes only in the file: not judged
        },
        "cameras": {
            "yard": {"source": "a.mp4", "models": ["coco", "ppe"]},
            "dock": {"source": "b.mp4", "models": ["coco"]},
            "gate": {"source": "c.mp4", "models": ["own"]},
            "spare": {"source": "d.mp4", "models": ["coco"], "enabled": False},
        },
    }
)


def test_camera_labels_come_from_label_maps_and_class_names() -> None:
    assert camera_labels(SITE, "yard") == {"person", "vehicle", "hardhat", "no_safety_vest"}
    assert camera_labels(SITE, "dock") == {"person", "vehicle"}
    assert camera_labels(SITE, "gate") is None


@pytest.mark.parametrize(
    ("rule", "cameras", "fields"),
    [
        (PPERule(id="r", kind="ppe", require=("hardhat",)), ["yard", "gate"], []),
        (PPERule(id="r", kind="ppe", require=("hardhat",)), ["dock"], [("require", 0)]),
        (PPERule(id="r", kind="ppe", require=("safety_vest",)), ["yard"], []),  # its no_ class
        (PPERule(id="r", kind="ppe", require=("vest",), objects=("dog",)), ["yard"],
         [("objects",), ("require", 0)]),
        (SpeedRule(id="r", kind="speed", max_speed="10km/h"), ["dock"], []),  # vehicle suffices
        (ZoneIntrusionRule(id="r", kind="zone_intrusion", zone="z", objects=("forklift",)),
         ["dock"], [("objects",)]),
        # every label written out must be produced by one of the rule's cameras
        (ZoneIntrusionRule(id="r", kind="zone_intrusion", zone="z", objects=("persn", "vehicle")),
         ["dock"], [("objects", 0)]),
        # a label close to none produced is a class the site may add, not a typo
        (ZoneIntrusionRule(id="r", kind="zone_intrusion", zone="z", objects=("person", "hardhat")),
         ["dock"], []),
        (ZoneIntrusionRule(id="r", kind="zone_intrusion", zone="z", objects=("vehicle", "crane")),
         ["dock"], []),
        (ZoneIntrusionRule(id="r", kind="zone_intrusion", zone="z", objects=("persons", "vehicle")),
         ["dock"], [("objects", 0)]),
        (ZoneIntrusionRule(id="r", kind="zone_intrusion", zone="z", objects=("person", "hardhat")),
         ["yard", "dock"], []),  # yard's models produce hardhat: cameras with different models
        (ZoneIntrusionRule(id="r", kind="zone_intrusion", zone="z", objects=("persn", "person")),
         ["dock", "gate"], []),  # gate's labels are unknown: not judged
    ],
)  # fmt: skip
def test_missing_labels(rule: object, cameras: list[str], fields: list[tuple[object, ...]]) -> None:
    problems = missing_labels(rule, cameras, SITE)  # type: ignore[arg-type]
    assert [path for path, _ in problems] == fields


def write_rules(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text("version: 1\n" + text)
    return folder


YARD = "  - {id: yard-people, kind: zone_intrusion, zone: z}\n"
ZONE = "zones:\n  z: {camera: yard, polygon: [[0, 0], [1, 0], [1, 1]]}\nrules:\n"


def test_an_item_outside_the_built_in_list_needs_its_no_class() -> None:
    """The tracker wears ``x`` only where ``no_x`` is produced (or ``x`` is built in): a camera
    whose models say ``helmet`` but never ``no_helmet`` tracks helmets as objects."""
    models = {
        "hats": {"path": "h.onnx", "class_names": ["Person", "Helmet"]},
        "both": {"path": "b.onnx", "class_names": ["Person", "Helmet", "NO-Helmet"]},
    }
    cameras = {key: {"source": f"{key}.mp4", "models": [key]} for key in models}
    site = SiteConfig.model_validate({"version": 1, "models": models, "cameras": cameras})
    rule = PPERule(id="r", kind="ppe", require=("helmet",))
    assert missing_labels(rule, ["both"], site) == []
    ((path, message),) = missing_labels(rule, ["hats", "both"], site)
    assert path == ("require", 0)
    assert message.startswith(
        "rule 'r' needs 'no_helmet' but camera 'hats' has no model producing it (models hats "
        "produce: helmet, person) ('helmet' alone is tracked as an object, not worn: only the "
        "built-in items boots, gloves, goggles, hardhat, harness, mask, vest are PPE without "
        "their `no_` class); it could never fire there"
    )


def test_a_misspelt_built_in_item_is_named_with_its_closest_spelling() -> None:
    """``require: [hard_hat]`` said only "needs 'no_hard_hat'", as if a model were missing."""
    ((path, message),) = missing_labels(PPERule(id="r", kind="ppe", require=("hard_hat",)),
                                        ["yard"], SITE)  # fmt: skip
    assert path == ("require", 0)
    assert message.startswith(
        "rule 'r': 'hard_hat' is not a built-in PPE item (boots, gloves, goggles, hardhat, "
        "harness, mask, vest); did you mean 'hardhat'? As an item of its own it needs "
        "'no_hard_hat' but camera 'yard' has no model producing it"
    )
    ((_, message),) = missing_labels(PPERule(id="r", kind="ppe", require=("lanyard",)),
                                     ["yard"], SITE)  # fmt: skip
    assert "'lanyard' is not a built-in PPE item (" in message and "did you mean" not in message


def test_a_blind_rule_is_a_file_line_error(tmp_path: Path) -> None:
    folder = write_rules(tmp_path / "rules", "rules:\n  - {id: h, kind: ppe, cameras: [dock],\n"
                         "     require: [hardhat]}\n")  # fmt: skip
    with pytest.raises(ConfigErrors) as caught:
        load_rules(folder, SITE)
    assert str(caught.value.errors[0]).startswith(
        f"{folder / 'r.yaml'}:4: rules[0].require[0]: rule 'h' needs 'hardhat' or 'no_hardhat' "
        "but camera 'dock' has no model producing it (models coco produce: person, vehicle)"
    )


def test_a_typo_beside_a_good_label_is_an_error_naming_the_closest_label(tmp_path: Path) -> None:
    """``[persn, vehicle]`` passed (vehicle is producible) and the rule never watched persons."""
    folder = write_rules(tmp_path / "rules", ZONE.replace("yard", "dock") + (
        "  - {id: keep-out, kind: zone_intrusion, zone: z,\n     objects: [persn, vehicle]}\n"
    ))  # fmt: skip
    with pytest.raises(ConfigErrors) as caught:
        load_rules(folder, SITE)
    assert [str(error) for error in caught.value.errors] == [
        f"{folder / 'r.yaml'}:6: rules[0].objects[0]: rule 'keep-out' watches 'persn' but camera "
        "'dock' has no model producing it (models coco produce: person, vehicle); did you mean "
        "'person'? It never sees a 'persn' there: correct the label, remove it from `objects`, "
        "or add a model with that class to the camera"
    ]


def test_reload_reports_dropped_rules_and_unwatched_cameras(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    everywhere = "  - {id: anyone, kind: proximity, objects: [vehicle], max_distance: 100px}\n"
    folder = write_rules(tmp_path / "rules", ZONE + YARD)
    holder = RuleSetHolder(load_rules(folder, SITE))
    watcher = RuleWatcher(folder, holder, SITE)
    caplog.set_level(logging.INFO, "safewatch.rules.watcher")

    status = watcher.reload()  # unchanged, but dock and gate were never watched
    assert status.unwatched == ("dock", "gate")
    assert status.dropped == ()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "no enabled rule runs on camera(s) dock, gate" in caplog.records[0].getMessage()
    assert CAMERA_RULES.labels(camera="yard")._value.get() == 1
    assert CAMERA_RULES.labels(camera="dock")._value.get() == 0

    caplog.clear()
    blind = "  - {id: h, kind: ppe, cameras: [dock], require: [hardhat]}\n"
    write_rules(folder, ZONE + YARD + everywhere + blind)
    status = watcher.reload()  # a blind rule: refused, nothing changes
    assert not status.ok and status.unwatched == ("dock", "gate")

    caplog.clear()
    write_rules(folder, ZONE + YARD + everywhere)
    status = watcher.reload()
    assert (status.unwatched, status.dropped, status.warnings) == ((), (), ())
    assert "every enabled camera has an enabled rule again" in caplog.text

    caplog.clear()
    write_rules(folder, ZONE + YARD.replace("zone: z}", "zone: z, enabled: false}"))
    status = watcher.reload()
    assert status.dropped == ("anyone", "yard-people")
    assert status.unwatched == ("yard", "dock", "gate")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "rules: generation 3 dropped 2 rule(s) that were in force: anyone, yard-people"
        " (until they come back or an admin acknowledges their removal)",
        "rules: no enabled rule runs on camera(s) yard, dock, gate: nothing is watched there",
    ]


def test_dropped_rules_stay_flagged_until_they_come_back_or_are_acknowledged(
    tmp_path: Path,
) -> None:
    """Losing some rules while every camera keeps one: flagged across later edits (an unrelated
    save does not hide it), cleared by the rule coming back or by an acknowledgement."""
    dock = "  - {id: dock-cars, kind: proximity, cameras: [dock], objects: [vehicle], "
    dock += "max_distance: 100px}\n"
    extra = dock.replace("dock-cars", "dock-cars-2")
    folder = write_rules(tmp_path / "rules", ZONE + YARD + dock + extra)
    holder = RuleSetHolder(load_rules(folder, SITE))
    watcher = RuleWatcher(folder, holder, SITE)
    gauge = REGISTRY.get_sample_value("safewatch_rules_dropped_unacknowledged")
    assert gauge == 0

    write_rules(folder, ZONE + YARD + dock)  # dock-cars-2 removed: dock still has a rule
    assert watcher.reload().dropped == ("dock-cars-2",)
    write_rules(folder, ZONE + YARD + dock.replace("100px", "90px"))  # an unrelated edit
    status = watcher.reload()
    assert status.generation == 3 and status.dropped == ("dock-cars-2",)
    assert REGISTRY.get_sample_value("safewatch_rules_dropped_unacknowledged") == 1

    write_rules(folder, ZONE + YARD + dock + extra)  # it comes back: nothing is lost
    assert watcher.reload().dropped == ()

    write_rules(folder, ZONE + YARD)  # both dock rules go (the dock is now unwatched)
    assert watcher.reload().dropped == ("dock-cars", "dock-cars-2")
    with pytest.raises(ValueError, match="not dropped: yard-people"):
        holder.acknowledge(["dock-cars", "yard-people"])  # nothing is acknowledged then
    with pytest.raises(ValueError):
        holder.acknowledge([])
    assert holder.acknowledge(["dock-cars"]).dropped == ("dock-cars-2",)
    status = holder.acknowledge(["dock-cars-2"])
    assert status.dropped == () and not any("dropped" in w for w in status.warnings)
    assert REGISTRY.get_sample_value("safewatch_rules_dropped_unacknowledged") == 0
    # an acknowledged rule that comes back and goes again is flagged again
    write_rules(folder, ZONE + YARD + dock)
    assert watcher.reload().dropped == ()
    write_rules(folder, ZONE + YARD)
    assert watcher.reload().dropped == ("dock-cars",)


def test_rules_of_a_camera_that_left_the_site_are_not_lost_protection(tmp_path: Path) -> None:
    """Removing a camera's rules, then the camera, is not a lost rule: nothing is unwatched."""
    dock = "  - {id: dock-cars, kind: proximity, cameras: [dock], objects: [vehicle], "
    dock += "max_distance: 100px}\n"
    folder = write_rules(tmp_path / "rules", ZONE + YARD + dock)
    holder = RuleSetHolder(load_rules(folder, SITE))
    RuleWatcher(folder, holder, SITE).reload()  # the watcher learns where each rule runs

    write_rules(folder, ZONE + YARD)  # the dock's rule first, while the dock still runs
    assert RuleWatcher(folder, holder, SITE).reload().dropped == ("dock-cars",)

    without_dock = SITE.model_copy(
        update={"cameras": {k: v for k, v in SITE.cameras.items() if k != "dock"}}
    )
    assert RuleWatcher(folder, holder, without_dock).reload().dropped == ()  # then the camera
    # the camera coming back without its rule flags the rule again
    assert RuleWatcher(folder, holder, SITE).reload().dropped == ("dock-cars",)


def test_a_refused_reload_checks_the_rules_in_force_against_its_site(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A site reload that renames a camera watches the rules again with the new site; the rules
    naming the old camera are refused, and the unwatched list made against the old site stayed:
    the renamed camera, which no rule runs on, showed ready in /readyz."""
    cars = "  - {id: cars, kind: proximity, cameras: [dock, gate], objects: [vehicle], "
    cars += "max_distance: 100px}\n"
    folder = write_rules(tmp_path / "rules", ZONE + YARD + cars)
    holder = RuleSetHolder(load_rules(folder, SITE))
    assert RuleWatcher(folder, holder, SITE).reload().unwatched == ()
    renamed = SITE.model_copy(
        update={"cameras": {k.replace("yard", "entry"): v for k, v in SITE.cameras.items()}}
    )
    caplog.set_level(logging.INFO, "safewatch.rules.watcher")
    status = RuleWatcher(folder, holder, renamed).reload()
    assert not status.ok and "yard" in status.errors[0]  # the zone names the old camera
    assert status.unwatched == ("entry",)
    assert "no enabled rule runs on camera(s) entry" in caplog.text
    # The gauge says the same (it still had yard at 1 and no entry).
    gauge = {s.labels["camera"]: s.value for m in CAMERA_RULES.collect() for s in m.samples}
    assert gauge.get("entry") == 0 and "yard" not in gauge


COCO_LIKE = ["person", "bicycle", "car", "bus", "truck", "cat", "dog", "fork", "orange"]
COCO_LIKE += ["toaster", "toilet", "motorcycle", "train", "boat"]


@pytest.mark.parametrize(
    ("label", "typo"),
    [
        ("persn", "person"),
        ("persons", "person"),
        ("bicylce", "bicycle"),
        # real classes a COCO model lacks, not typos of its classes (difflib's 0.6 said so)
        ("forklift", None),
        ("cart", None),
        ("crane", None),
        ("loader", None),
        ("trolley", None),
        ("hand_truck", None),
        ("worker", None),
    ],
)
def test_only_a_near_spelling_is_taken_for_a_typo(label: str, typo: str | None) -> None:
    assert _typo_of(label, COCO_LIKE) == typo
