"""Load every rule file of a folder into one immutable, cross-checked :class:`RuleSet`.

Safety officers split rules by area or team (``yard.yaml``, ``press-shop.yaml``); the engine wants
one set. Ids are global (incidents and alerts name them), so a rule or zone id defined twice is an
error naming both places. References are checked once the set is whole: a rule's zone must exist,
a zone's camera must be one the rule runs on and, when the site is known, every camera must exist.
The result is frozen and made of tuples so it can be swapped whole on reload while the engine
still holds the old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from safewatch.config.loader import load_model
from safewatch.config.rules import PPERule, Rule, RuleFile, ZoneConfig, ZoneIntrusionRule
from safewatch.config.site import SiteConfig
from safewatch.config.validation import ConfigErrors
from safewatch.config.yaml_lines import LocatedDocument, PathKey, format_path
from safewatch.domain.geometry import Zone
from safewatch.errors import ConfigError

__all__ = ["RuleSet", "load_rules", "rule_zone_ids"]


def rule_zone_ids(rule: Rule) -> tuple[str, ...]:
    """The zones a rule refers to (its scope or its subject)."""
    if isinstance(rule, ZoneIntrusionRule):
        return (rule.zone,)
    return rule.zones


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every rule and zone in force, validated together.

    Attributes:
        rules: Rules in load order (files sorted by name, then file order).
        zones: Zones, as domain objects ready for point-in-polygon tests.
        files: The files the set was loaded from.
    """

    rules: tuple[Rule, ...] = ()
    zones: tuple[Zone, ...] = ()
    files: tuple[Path, ...] = ()
    _zones_by_id: Mapping[str, Zone] = field(init=False, repr=False, compare=False)
    _rules_by_id: Mapping[str, Rule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zones_by_id", {zone.id: zone for zone in self.zones})
        object.__setattr__(self, "_rules_by_id", {rule.id: rule for rule in self.rules})
        if len(self._zones_by_id) != len(self.zones):
            raise ValueError("zone ids must be unique")
        if len(self._rules_by_id) != len(self.rules):
            raise ValueError("rule ids must be unique")

    def zone(self, zone_id: str) -> Zone:
        """The zone with this id (``KeyError`` if none: references were checked at load)."""
        return self._zones_by_id[zone_id]

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id."""
        return self._rules_by_id[rule_id]

    def applies_to(self, rule: Rule, camera_id: str) -> bool:
        """Whether ``rule`` runs on ``camera_id`` (listed or all cameras, and its zones')."""
        if rule.cameras and camera_id not in rule.cameras:
            return False
        zone_ids = rule_zone_ids(rule)
        return not zone_ids or any(self.zone(z).camera_id == camera_id for z in zone_ids)

    def zones_for(self, camera_id: str) -> tuple[Zone, ...]:
        """Zones drawn on ``camera_id`` (for overlays and evidence)."""
        return tuple(zone for zone in self.zones if zone.camera_id == camera_id)

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
    site: SiteConfig | None,
) -> list[ConfigError]:
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
    field_name = "zone" if isinstance(rule, ZoneIntrusionRule) else "zones"
    for index, zone_id in enumerate(rule_zone_ids(rule)):
        suffix: tuple[str | int, ...] = (
            (field_name,) if field_name == "zone" else (field_name, index)
        )
        if zone_id not in zones:
            known = ", ".join(sorted(zones)) or "none"
            errors.append(origin.error(f"unknown zone {zone_id!r} (defined: {known})", *suffix))
            continue
        zone_camera = zones[zone_id][0].camera
        if rule.cameras and zone_camera not in rule.cameras:
            errors.append(
                origin.error(
                    f"zone {zone_id!r} is on camera {zone_camera!r}, which the rule's cameras "
                    f"({', '.join(rule.cameras)}) do not include",
                    *suffix,
                )
            )
    if isinstance(rule, PPERule) and set(rule.require) & set(rule.objects):
        errors.append(origin.error("an item cannot be both required and an object", "require"))
    return errors


def load_rules(
    path: str | Path,
    site: SiteConfig | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> RuleSet:
    """Load a rule file, or every ``*.yaml`` / ``*.yml`` in a folder, into one rule set.

    Args:
        path: A rule file or a folder of them (not recursive; files in name order).
        site: When given, cameras named by rules and zones must exist in it.
        environ: Variables for ``${VAR}``; defaults to ``os.environ``.

    Raises:
        ConfigError: Every problem found, ``file:line: field: message`` each (a
            :class:`~safewatch.config.validation.ConfigErrors` when there are several).
    """
    files = _rule_files(Path(path))
    zones: dict[str, tuple[ZoneConfig, _Origin]] = {}
    rules: dict[str, tuple[Rule, _Origin]] = {}
    errors: list[ConfigError] = []
    for file in files:
        rule_file, document = load_model(RuleFile, file, environ=environ)
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
    for rule, origin in rules.values():
        errors.extend(_check_references(rule, origin, zones, site))
    if errors:
        raise ConfigErrors(errors)
    return RuleSet(
        rules=tuple(rule for rule, _ in rules.values()),
        zones=tuple(
            Zone(id=zone_id, camera_id=zone.camera, polygon=zone.polygon)
            for zone_id, (zone, _) in zones.items()
        ),
        files=tuple(files),
    )
