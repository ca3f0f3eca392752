"""Load every rule file of a folder into one immutable, cross-checked :class:`RuleSet`.

Safety officers split rules by area or team (``yard.yaml``, ``press-shop.yaml``); the engine wants
one set. Ids are global (incidents and alerts name them), so a rule, zone or line id defined twice
is an error naming both places. References are checked once the set is whole: a rule's zones and
lines must exist, their cameras must be ones the rule runs on and, when the site is known, every
camera must exist, a rule that measures in metres may only run on calibrated cameras, and a
rule's cameras must have a model producing the labels it reads
(:mod:`~safewatch.config.coverage`). The result is frozen and made of tuples so it can be swapped
whole on reload while the engine still holds the old one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from safewatch.config.coverage import missing_labels
from safewatch.config.loader import load_model
from safewatch.config.rules import (
    DwellRule,
    LineConfig,
    LineCrossingRule,
    OccupancyRule,
    PPERule,
    ProximityRule,
    Rule,
    RuleFile,
    SpeedRule,
    ZoneClearRule,
    ZoneConfig,
    ZoneIntrusionRule,
)
from safewatch.config.site import MAX_BUFFER_SECONDS, SiteConfig
from safewatch.config.validation import ConfigErrors
from safewatch.config.yaml_lines import LocatedDocument, PathKey, format_path
from safewatch.domain.geometry import Zone
from safewatch.domain.lines import Line
from safewatch.errors import ConfigError

__all__ = [
    "RuleSet",
    "load_rule_file",
    "load_rules",
    "rule_line_ids",
    "rule_metric_field",
    "rule_zone_ids",
    "rules_using",
]

FieldPath = tuple[str | int, ...]

_log = logging.getLogger(__name__)


def _names_a_camera(path: PathKey) -> bool:
    """Whether ``path`` in a rule file holds a camera id (a zone's or line's ``camera``, an item
    of a rule's ``cameras``).

    A ``${VAR}`` there is not a secret: the set loads only when it is a camera key of the site,
    and camera ids are in every API answer about cameras and incidents. Registered as a secret
    like any ``${VAR}`` value (:mod:`safewatch.config.secrets`), the camera's id was masked
    ``***`` by value everywhere: the camera list, the zones page, every incident of it.
    """
    return (len(path) == 3 and path[0] in ("zones", "lines") and path[2] == "camera") or (
        len(path) == 4 and path[0] == "rules" and path[2] == "cameras"
    )


def _zone_refs(rule: Rule) -> list[tuple[FieldPath, str]]:
    """Each zone a rule names, with the field that names it."""
    if isinstance(rule, ZoneIntrusionRule | DwellRule | OccupancyRule | ZoneClearRule):
        return [(("zone",), rule.zone)]
    refs: list[tuple[FieldPath, str]] = []
    if isinstance(rule, PPERule | ProximityRule | SpeedRule):
        refs = [(("zones", index), zone_id) for index, zone_id in enumerate(rule.zones)]
    if isinstance(rule, ProximityRule) and rule.machine_zone is not None:
        refs.append((("machine_zone",), rule.machine_zone))
    return refs


def rule_zone_ids(rule: Rule) -> tuple[str, ...]:
    """The zones a rule refers to (its scope, its subject or a machine zone)."""
    return tuple(zone_id for _, zone_id in _zone_refs(rule))


def rule_line_ids(rule: Rule) -> tuple[str, ...]:
    """The lines a rule refers to."""
    return (rule.line,) if isinstance(rule, LineCrossingRule) else ()


def rules_using(files: Iterable[Path], kind: str, ref_id: str) -> list[tuple[str, str, int]]:
    """``(rule id, file, line)`` of each rule in ``files`` that names zone (``kind`` "zone") or
    line ``ref_id``, for saying who uses it before it is removed. A file that does not load on
    its own is skipped: the set's validation reports it.
    """
    users: list[tuple[str, str, int]] = []
    for file in files:
        try:
            rule_file, document = load_rule_file(file)
        except ConfigError:
            continue
        for index, rule in enumerate(rule_file.rules):
            refs = rule_zone_ids(rule) if kind == "zone" else rule_line_ids(rule)
            if ref_id in refs:
                users.append((rule.id, document.file, document.line_of(("rules", index))))
    return users


def rule_metric_field(rule: Rule) -> str | None:
    """The field that makes a rule measure on the floor (needs calibrated cameras), if any."""
    if isinstance(rule, ProximityRule):
        if rule.max_distance.metric:
            return "max_distance"
        if rule.approaching is not None and rule.approaching.metric:
            return "approaching"  # pragma: no cover - the model refuses mixed units
    if isinstance(rule, SpeedRule):
        return "max_speed"
    if isinstance(rule, ZoneClearRule) and rule.max_movement is not None:
        return "max_movement" if rule.max_movement.metric else None
    return None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every rule and zone in force, validated together.

    Attributes:
        rules: Rules in load order (files sorted by name, then file order).
        zones: Zones, as domain objects ready for point-in-polygon tests.
        files: The files the set was loaded from.
        lines: Tripwires, as domain objects ready for side tests.
    """

    rules: tuple[Rule, ...] = ()
    zones: tuple[Zone, ...] = ()
    files: tuple[Path, ...] = ()
    lines: tuple[Line, ...] = ()
    _zones_by_id: Mapping[str, Zone] = field(init=False, repr=False, compare=False)
    _lines_by_id: Mapping[str, Line] = field(init=False, repr=False, compare=False)
    _rules_by_id: Mapping[str, Rule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zones_by_id", {zone.id: zone for zone in self.zones})
        object.__setattr__(self, "_lines_by_id", {line.id: line for line in self.lines})
        object.__setattr__(self, "_rules_by_id", {rule.id: rule for rule in self.rules})
        if len(self._zones_by_id) != len(self.zones):
            raise ValueError("zone ids must be unique")
        if len(self._lines_by_id) != len(self.lines):
            raise ValueError("line ids must be unique")
        if len(self._rules_by_id) != len(self.rules):
            raise ValueError("rule ids must be unique")

    def zone(self, zone_id: str) -> Zone:
        """The zone with this id (``KeyError`` if none: references were checked at load)."""
        return self._zones_by_id[zone_id]

    def line(self, line_id: str) -> Line:
        """The line with this id (``KeyError`` if none: references were checked at load)."""
        return self._lines_by_id[line_id]

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id."""
        return self._rules_by_id[rule_id]

    def applies_to(self, rule: Rule, camera_id: str) -> bool:
        """Whether ``rule`` runs on ``camera_id`` (listed or all cameras, and its zones')."""
        if rule.cameras and camera_id not in rule.cameras:
            return False
        cameras = [self.zone(z).camera_id for z in rule_zone_ids(rule)]
        cameras += [self.line(line).camera_id for line in rule_line_ids(rule)]
        return not cameras or camera_id in cameras

    def zones_for(self, camera_id: str) -> tuple[Zone, ...]:
        """Zones drawn on ``camera_id`` (for overlays and evidence)."""
        return tuple(zone for zone in self.zones if zone.camera_id == camera_id)

    def lines_for(self, camera_id: str) -> tuple[Line, ...]:
        """Lines drawn on ``camera_id`` (for overlays and evidence)."""
        return tuple(line for line in self.lines if line.camera_id == camera_id)

    def for_camera(self, camera_id: str) -> tuple[Rule, ...]:
        """Enabled rules that run on ``camera_id``, in order."""
        return tuple(r for r in self.rules if r.enabled and self.applies_to(r, camera_id))


@dataclass(frozen=True, slots=True)
class _Origin:
    document: LocatedDocument
    path: PathKey

    def error(self, message: str, *suffix: str | int) -> ConfigError:
        path = (*self.path, *suffix)
        return ConfigError(
            message,
            file=self.document.file,
            line=self.document.line_of(path),
            field=format_path(path),
        )

    @property
    def where(self) -> str:
        return f"{self.document.file}:{self.document.line_of(self.path)}"


def _rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if path.exists():
        return [path]
    raise ConfigError("file or folder not found", file=str(path))


def _check_references(
    rule: Rule,
    origin: _Origin,
    zones: Mapping[str, tuple[ZoneConfig, _Origin]],
    lines: Mapping[str, tuple[LineConfig, _Origin]],
    site: SiteConfig | None,
    model_labels: Mapping[str, frozenset[str]] | None = None,
    warnings: list[str] | None = None,
) -> list[ConfigError]:
    """The rule's reference errors; what is only worth a warning goes to ``warnings``."""
    errors: list[ConfigError] = []
    if site is not None:
        for index, camera in enumerate(rule.cameras):
            if camera not in site.cameras:
                known = ", ".join(sorted(site.cameras)) or "none"
                errors.append(
                    origin.error(
                        f"unknown camera {camera!r} (site cameras: {known})", "cameras", index
                    )
                )
    refs: list[tuple[str, FieldPath, str, str | None]] = [
        ("zone", path, zone_id, zones[zone_id][0].camera if zone_id in zones else None)
        for path, zone_id in _zone_refs(rule)
    ]
    refs += [
        ("line", ("line",), line_id, lines[line_id][0].camera if line_id in lines else None)
        for line_id in rule_line_ids(rule)
    ]
    for what, path, ref_id, ref_camera in refs:
        if ref_camera is None:
            known = ", ".join(sorted(zones if what == "zone" else lines)) or "none"
            errors.append(origin.error(f"unknown {what} {ref_id!r} (defined: {known})", *path))
        elif rule.cameras and ref_camera not in rule.cameras:
            errors.append(
                origin.error(
                    f"{what} {ref_id!r} is on camera {ref_camera!r}, which the rule's cameras "
                    f"({', '.join(rule.cameras)}) do not include",
                    *path,
                )
            )
    ref_cameras = {ref_camera for *_, ref_camera in refs if ref_camera is not None}
    if isinstance(rule, ProximityRule) and len(ref_cameras) > 1:
        errors.append(
            origin.error(
                f"the rule's zones are on different cameras ({', '.join(sorted(ref_cameras))}); "
                "split it into one rule per camera",
                "zones",
            )
        )
    if isinstance(rule, PPERule) and set(rule.require) & set(rule.objects):
        errors.append(origin.error("an item cannot be both required and an object", "require"))
    if site is not None:
        errors.extend(_check_calibrated(rule, origin, ref_cameras, site))
        errors.extend(_check_machine_on_floor(rule, origin, zones, site))
        scope = rule.cameras or sorted(ref_cameras) or sorted(site.cameras)
        cameras = [camera for camera in scope if camera in site.cameras]
        missing = missing_labels(rule, cameras, site, model_labels)
        errors.extend(origin.error(message, *path) for path, message in missing)
        preroll = _preroll_warning(rule, cameras, site)
        if preroll is not None and warnings is not None:
            warnings.append(f"{origin.where}: {preroll}")
    return errors


def _preroll_warning(rule: Rule, cameras: list[str], site: SiteConfig) -> str | None:
    """What a rule's clips will miss because the frame buffer cannot reach back to their start.

    A clip should start ``pre_seconds`` before the violation began, but the rule opens the
    incident only ``min_duration`` after that, and by then the buffer holds only the last
    ``buffer_seconds``: the clip starts late. A warning, not an error (the rule still runs and
    its clip shows the rest), said wherever rules are checked against the site (check-config,
    serve's start, every rule reload), since ``EvidenceConfig`` alone cannot know the rules.
    """
    evidence = site.evidence
    enabled = [c for c in cameras if site.cameras[c].enabled]
    reach = evidence.pre_seconds + rule.min_duration
    missed = reach - evidence.buffer_seconds
    if not evidence.clips or not enabled or missed <= 1e-9:
        return None
    into = rule.min_duration - evidence.buffer_seconds
    what = (
        f"the first {into:g} s of the violation itself and all of its pre-roll"
        if into > 1e-9
        else f"{missed:g} s of the {evidence.pre_seconds:g} s pre-roll"
    )
    fix = (
        f"raise evidence.buffer_seconds to {reach:g}"
        if reach <= MAX_BUFFER_SECONDS
        else f"evidence.buffer_seconds cannot exceed {MAX_BUFFER_SECONDS:g}: lower the rule's "
        "min_duration or evidence.pre_seconds"
    )
    return (
        f"rule {rule.id!r} (camera{'s' if len(enabled) > 1 else ''} {', '.join(enabled)}) "
        f"opens its incident min_duration {rule.min_duration:g} s after the violation began, "
        f"but evidence.buffer_seconds ({evidence.buffer_seconds:g} s) cannot reach back to "
        f"pre_seconds ({evidence.pre_seconds:g} s) before that: its clips will miss {what}; "
        f"{fix}"
    )


def _check_calibrated(
    rule: Rule, origin: _Origin, ref_cameras: set[str], site: SiteConfig
) -> list[ConfigError]:
    """A rule in metres may only run on cameras whose site entry has a ``calibration``."""
    metric = rule_metric_field(rule)
    if metric is None:
        return []
    if rule.cameras:
        cameras = [c for c in rule.cameras if c in site.cameras]
    elif ref_cameras:
        cameras = sorted(c for c in ref_cameras if c in site.cameras)
    else:
        cameras = sorted(site.cameras)
    missing = [c for c in cameras if site.cameras[c].calibration is None]
    if not missing:
        return []
    scope = "runs on" if rule.cameras or ref_cameras else "runs on every camera, including"
    return [
        origin.error(
            f"rule {rule.id!r} measures in metres but {scope} uncalibrated camera"
            f"{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)}: add a "
            "`calibration` block to the camera in the site file, list only calibrated `cameras`, "
            "or use pixels (px)",
            metric,
        )
    ]


def _check_machine_on_floor(
    rule: Rule,
    origin: _Origin,
    zones: Mapping[str, tuple[ZoneConfig, _Origin]],
    site: SiteConfig,
) -> list[ConfigError]:
    """A proximity rule in metres measures to its machine zone on the floor: every corner of the
    zone must map to the floor with the camera's calibration.

    A corner at or above the calibration's horizon has no floor position, and the rule could only
    skip the machine on every frame (it measured nothing and never fired, without a word): the
    usual cause is a zone drawn round the machine's whole outline in the picture, whose top
    reaches above the horizon, rather than round its footprint on the floor.
    """
    if not isinstance(rule, ProximityRule) or rule.machine_zone is None:
        return []
    if rule_metric_field(rule) is None or rule.machine_zone not in zones:
        return []
    zone = zones[rule.machine_zone][0]
    camera = site.cameras.get(zone.camera)
    if camera is None or camera.calibration is None:
        return []  # reported by _check_references / _check_calibrated
    # Imported here: safewatch.rules imports this module.
    from safewatch.rules.calibration import Calibration

    floor = Calibration.from_config(camera.calibration).to_floor(zone.polygon, 1, 1)
    off = [point for point, mapped in zip(zone.polygon, floor, strict=True) if not all(
        math.isfinite(v) for v in mapped
    )]  # fmt: skip
    if not off:
        return []
    corners = ", ".join(f"[{x:g}, {y:g}]" for x, y in off)
    which = f"corners {corners} are" if len(off) > 1 else f"corner {corners} is"
    return [
        origin.error(
            f"rule {rule.id!r} measures in metres to machine zone {rule.machine_zone!r}, but "
            f"its {which} at or above the horizon of camera {zone.camera!r}'s calibration, "
            "where nothing is on the floor, so the rule could never measure to the machine: "
            "draw the zone round the machine's footprint on the floor",
            "machine_zone",
        )
    ]


def load_rule_file(
    path: str | Path, *, environ: Mapping[str, str] | None = None
) -> tuple[RuleFile, LocatedDocument]:
    """One rule file, validated on its own (no cross-references), with its document.

    Its ``${VAR}`` values are registered as secrets except camera ids (:func:`_names_a_camera`).

    Raises:
        ConfigError: Unreadable file, YAML syntax, unset variable, or a validation error.
    """
    return load_model(RuleFile, path, environ=environ, public=_names_a_camera)


def load_rules(
    path: str | Path,
    site: SiteConfig | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    model_labels: Mapping[str, frozenset[str]] | None = None,
) -> RuleSet:
    """Load a rule file, or every ``*.yaml`` / ``*.yml`` in a folder, into one rule set.

    Args:
        path: A rule file or a folder of them (not recursive; files in name order).
        site: When given, cameras named by rules and zones must exist in it.
        environ: Variables for ``${VAR}``; defaults to ``os.environ``.
        model_labels: Site labels of models already loaded, by model key (``check-config``),
            for models whose classes the site file does not spell out.

    Raises:
        ConfigError: Every problem found, ``file:line: field: message`` each (a
            :class:`~safewatch.config.validation.ConfigErrors` when there are several).
    """
    files = _rule_files(Path(path))
    zones: dict[str, tuple[ZoneConfig, _Origin]] = {}
    lines: dict[str, tuple[LineConfig, _Origin]] = {}
    rules: dict[str, tuple[Rule, _Origin]] = {}
    errors: list[ConfigError] = []
    for file in files:
        rule_file, document = load_rule_file(file, environ=environ)
        for zone_id, zone in rule_file.zones.items():
            origin = _Origin(document, ("zones", zone_id))
            if zone_id in zones:
                errors.append(origin.error(f"zone id already defined at {zones[zone_id][1].where}"))
                continue
            zones[zone_id] = (zone, origin)
            if site is not None and zone.camera not in site.cameras:
                known = ", ".join(sorted(site.cameras)) or "none"
                errors.append(
                    origin.error(
                        f"unknown camera {zone.camera!r} (site cameras: {known})", "camera"
                    )
                )
        for line_id, line in rule_file.lines.items():
            origin = _Origin(document, ("lines", line_id))
            if line_id in lines:
                errors.append(origin.error(f"line id already defined at {lines[line_id][1].where}"))
                continue
            lines[line_id] = (line, origin)
            if site is not None and line.camera not in site.cameras:
                known = ", ".join(sorted(site.cameras)) or "none"
                errors.append(
                    origin.error(
                        f"unknown camera {line.camera!r} (site cameras: {known})", "camera"
                    )
                )
        for index, rule in enumerate(rule_file.rules):
            origin = _Origin(document, ("rules", index))
            if rule.id in rules:
                errors.append(
                    origin.error(
                        f"rule id {rule.id!r} already defined at {rules[rule.id][1].where}", "id"
                    )
                )
                continue
            rules[rule.id] = (rule, origin)
    warnings: list[str] = []
    for rule, origin in rules.values():
        errors.extend(_check_references(rule, origin, zones, lines, site, model_labels, warnings))
    if errors:
        raise ConfigErrors(errors)
    for warning in warnings:
        _log.warning("%s", warning)
    return RuleSet(
        rules=tuple(rule for rule, _ in rules.values()),
        zones=tuple(
            Zone(id=zone_id, camera_id=zone.camera, polygon=zone.polygon)
            for zone_id, (zone, _) in zones.items()
        ),
        files=tuple(files),
        lines=tuple(
            Line(id=line_id, camera_id=line.camera, a=line.points[0], b=line.points[1])
            for line_id, (line, _) in lines.items()
        ),
    )
