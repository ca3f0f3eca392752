"""The rule engine: tracked frames in, rule events out.

Pure and deterministic (architecture principle 2): the only inputs are the rule set, the site's
time zone and the tracked frames; time comes from ``tracked.timestamp``, never a wall clock, so a
file run gives the same events every time and a rule's ``3s`` is three seconds of video.

State is kept per (camera, rule id) in an :class:`~safewatch.rules.episodes.EpisodeBook`, keyed by
rule id rather than by rule object so that :meth:`RuleEngine.replace_rules` (hot reload) can keep
the episodes of rules that survive a reload and end those of rules that do not.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from safewatch.config.rules import PPERule, Rule, ZoneIntrusionRule
from safewatch.config.ruleset import RuleSet, rule_zone_ids
from safewatch.domain.events import RuleEvent
from safewatch.domain.tracks import TrackedFrame
from safewatch.errors import ConfigError
from safewatch.rules.episodes import EpisodeBook, EpisodePolicy, Observation
from safewatch.rules.ppe import observe_ppe
from safewatch.rules.schedule import schedule_allows
from safewatch.rules.zone_intrusion import observe_zone_intrusion

__all__ = ["RuleEngine", "rule_definition"]


_REPORTING_FIELDS = frozenset(
    {
        "description",
        "severity",
        "min_duration",
        "grace",
        "cooldown",
        "cameras",
        "schedule",
        "enabled",
    }
)
"""Fields that change how or when a rule reports, not what violates it (see ``replace_rules``)."""


def rule_definition(rule: Rule, rules: RuleSet, camera_id: str) -> tuple[object, ...]:
    """What a rule tests on ``camera_id``, as a value: equal definitions judge frames alike.

    The rule's own fields less the reporting ones (severity, timing, scope and schedule, which the
    engine applies around the episodes), plus the zones it refers to on that camera, so moving a
    zone's polygon changes the definition of every rule that uses it.
    """
    fields = rule.model_dump(exclude=set(_REPORTING_FIELDS))
    zones = tuple(
        rules.zone(z) for z in rule_zone_ids(rule) if rules.zone(z).camera_id == camera_id
    )
    return (fields, zones)


def _policy(rule: Rule) -> EpisodePolicy:
    return EpisodePolicy(min_duration=rule.min_duration, grace=rule.grace, cooldown=rule.cooldown)


class RuleEngine:
    """Applies a :class:`RuleSet` to the tracked frames of any number of cameras.

    Args:
        rules: The rules in force.
        timezone: IANA time zone of the site, for schedules.

    Raises:
        ConfigError: ``timezone`` is not a known IANA zone.
    """

    def __init__(self, rules: RuleSet, timezone: str = "UTC") -> None:
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown time zone {timezone!r} (expected an IANA name such as Europe/Berlin)",
                field="site.timezone",
            ) from None
        self._rules = rules
        self._by_camera: dict[str, tuple[Rule, ...]] = {}
        self._books: dict[tuple[str, str], EpisodeBook] = {}

    @property
    def rules(self) -> RuleSet:
        """The rule set in force."""
        return self._rules

    def open_state_count(self) -> int:
        """Subjects with episode state across all cameras and rules (bounded; for metrics)."""
        return sum(len(book) for book in self._books.values())

    def evaluate(self, tracked: TrackedFrame) -> list[RuleEvent]:
        """Apply every enabled rule for the frame's camera.

        Returns:
            Events in rule order; within a rule, endings first, then starts and ongoing ones in
            track order.
        """
        events: list[RuleEvent] = []
        camera = tracked.camera_id
        for rule in self._rules_for(camera):
            key = (camera, rule.id)
            book = self._books.get(key)
            if not schedule_allows(rule.schedule, tracked.timestamp, self._tz):
                if book is not None:
                    events.extend(book.close_all(tracked.timestamp))
                    if not book:
                        del self._books[key]
                continue
            observations = self._observe(rule, tracked)
            if book is None:
                if not observations:
                    continue
                book = EpisodeBook(rule.id, rule.kind, camera, rule.severity, _policy(rule))
                self._books[key] = book
            events.extend(book.update(tracked.timestamp, tracked.seq, observations))
            if not book:
                del self._books[key]
        return events

    def finish(self, camera_id: str, at: float | None = None) -> list[RuleEvent]:
        """End every open episode of ``camera_id`` (its file ended or it went away).

        ``ENDED`` events carry each episode's last violating frame as ``at``; the ``at`` argument
        (the last frame's time) is accepted for symmetry with the incident manager and unused.
        All state of the camera is dropped, cooldowns included.
        """
        del at
        events: list[RuleEvent] = []
        for key in [k for k in self._books if k[0] == camera_id]:
            events.extend(self._books.pop(key).close_all())
        return events

    def replace_rules(self, rules: RuleSet) -> list[RuleEvent]:
        """Swap in a new rule set (hot reload), keeping episodes of rules that survive.

        A rule survives when its id is still present, enabled, still runs on the camera and its
        definition (see :func:`rule_definition`) is equal by value to the old one: a reload that
        did not touch a rule does not reset it, and neither does one that only changed how it is
        reported (severity, timing); its episodes continue under the new timing and severity.
        Episodes of every other rule end now, so an incident opened under an old zone or item
        list is not carried on under a new one.

        Returns:
            The ``ENDED`` events of episodes that could not survive.
        """
        events: list[RuleEvent] = []
        old = self._rules
        self._rules = rules
        self._by_camera.clear()
        for key in sorted(self._books):
            camera, rule_id = key
            book = self._books[key]
            survivor = next((r for r in self._rules_for(camera) if r.id == rule_id), None)
            if survivor is None or rule_definition(survivor, rules, camera) != rule_definition(
                old.rule(rule_id), old, camera
            ):
                events.extend(book.close_all())
                del self._books[key]
                continue
            book.policy = _policy(survivor)
            book.severity = survivor.severity
        return events

    def _rules_for(self, camera_id: str) -> tuple[Rule, ...]:
        rules = self._by_camera.get(camera_id)
        if rules is None:
            rules = self._by_camera[camera_id] = self._rules.for_camera(camera_id)
        return rules

    def _observe(self, rule: Rule, tracked: TrackedFrame) -> list[Observation]:
        if isinstance(rule, PPERule):
            zones = [
                zone
                for zone in (self._rules.zone(z) for z in rule.zones)
                if zone.camera_id == tracked.camera_id
            ]
            return observe_ppe(rule, tracked, zones)
        if isinstance(rule, ZoneIntrusionRule):
            return observe_zone_intrusion(rule, tracked, self._rules.zone(rule.zone))
        raise TypeError(f"no evaluator for rule kind {rule.kind!r}")  # pragma: no cover
