"""Each rule in plain words, for ``safewatch rules explain``.

A safety officer reviewing a rule file wants to read what the plant will actually enforce, not
YAML: "hardhat-required (high): on camera yard, a person seen without a hardhat for at least 1 s,
Mon-Fri 06:00-22:00 Europe/Berlin, opens an incident; it ends after 1 s compliant or out of
sight." The sentence is built from the validated rule, so defaults the file left out (grace,
anchor, objects) are spelt out too: that is where misunderstandings hide.

Every sentence has the same parts: who and where (cameras, zones), what violates (one clause
per kind), how long, when (schedule in the site's time zone), and how an episode ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from safewatch.config.rules import (
    WEEKDAYS,
    DwellRule,
    LineCrossingRule,
    OccupancyRule,
    PPERule,
    ProximityRule,
    Rule,
    ScheduleConfig,
    SpeedRule,
    ZoneClearRule,
    ZoneIntrusionRule,
)
from safewatch.config.ruleset import RuleSet, rule_line_ids, rule_zone_ids
from safewatch.config.site import SiteConfig
from safewatch.rules.episodes import GRACE_FRAMES

__all__ = ["explain_rule", "explain_rules", "format_duration"]

_ANCHOR = {
    "feet": "with its feet in",
    "centre": "with its box centre in",
    "box": "with any part of its box in",
}
_POINT = {"feet": "feet", "centre": "box centre"}
_BY = {"feet": "by its feet", "centre": "by its box centre", "box": "by any part of its box"}
_COUNTED_BY = {
    "feet": "counted by their feet",
    "centre": "counted by their box centres",
    "box": "counted by any part of their boxes",
}
_DAY_NAMES = {day: day.capitalize() for day in WEEKDAYS}


def format_duration(seconds: float) -> str:
    """``0.5`` -> ``500 ms``, ``3`` -> ``3 s``, ``120`` -> ``2 min``, ``3600`` -> ``1 h``."""
    if seconds <= 0:
        return "0 s"
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _article(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _any_of(labels: Sequence[str]) -> str:
    """``[person]`` -> ``a person``; ``[vehicle, forklift]`` -> ``a vehicle or forklift``."""
    if not labels:
        return "any object"
    return _article(" or ".join(labels))


def _names(kind: str, ids: Sequence[str]) -> str:
    return f"{kind} {ids[0]}" if len(ids) == 1 else f"{kind}s {', '.join(ids)}"


def _days(days: Sequence[str]) -> str:
    if len(days) == len(WEEKDAYS):
        return "every day"
    index = sorted(WEEKDAYS.index(day) for day in days)
    runs: list[list[int]] = []
    for i in index:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = []
    for run in runs:
        first, last = _DAY_NAMES[WEEKDAYS[run[0]]], _DAY_NAMES[WEEKDAYS[run[-1]]]
        if len(run) >= 3:
            parts.append(f"{first}-{last}")
        else:
            parts.extend(_DAY_NAMES[WEEKDAYS[i]] for i in run)
    return ", ".join(parts)


def _when(schedule: ScheduleConfig | None, timezone: str) -> str:
    if schedule is None:
        return "at any time"
    days = _days(schedule.days)
    if schedule.between is None:
        return f"{days} all day ({timezone})"
    start, end = schedule.between
    overnight = " (overnight)" if start > end and end != "24:00" else ""
    return f"{days} {start}-{end}{overnight} {timezone}"


def _cameras(rule: Rule, rules: RuleSet, site: SiteConfig | None) -> str:
    if rule.cameras:
        cameras: Sequence[str] = rule.cameras
    elif site is not None:
        cameras = [c for c in site.cameras if rules.applies_to(rule, c)]
    else:
        referenced = [zone.camera_id for zone in rules.zones if zone.id in rule_zone_ids(rule)]
        referenced += [line.camera_id for line in rules.lines if line.id in rule_line_ids(rule)]
        cameras = sorted(set(referenced))
    if not cameras:
        return "on every camera"
    return "on " + _names("camera", cameras)


def _slow_cameras(rule: Rule, rules: RuleSet, site: SiteConfig | None) -> str:
    """The grace in force where a camera's frames are too far apart for the rule's own: at
    least 1.5 frame intervals (:meth:`~safewatch.rules.episodes.FrameClock.grace`), so one
    missed frame does not end an episode. Only the site file knows the cameras' rates."""
    if site is None or rule.grace <= 0:
        return ""
    slow = []
    for camera_id, camera in site.cameras.items():
        if not rules.applies_to(rule, camera_id) or camera.fps <= 0:
            continue
        in_force = GRACE_FRAMES / camera.fps
        if in_force > rule.grace:
            slow.append(
                f"{format_duration(round(in_force, 1))} on {camera_id} at {camera.fps:g} fps"
            )
    if not slow:
        return ""
    return " (1.5 frame intervals where that is longer: " + ", ".join(slow) + ")"


def _scope(zones: Sequence[str]) -> str:
    return f" in {_names('zone', zones)}" if zones else ""


def _what(rule: Rule) -> tuple[str, str]:
    """The violation clause, and what ends an episode (after ``grace``)."""
    if isinstance(rule, PPERule):
        where = f" with its feet in {_names('zone', rule.zones)}" if rule.zones else ""
        left = ""
        if rule.zones:
            left = ", outside the zone" if len(rule.zones) == 1 else ", outside those zones"
        if rule.flag == "unverifiable":
            # The opposite question (rules.ppe): an item unknown, or never reported by the
            # camera's models, on a tracked person; PPE-only subjects never count.
            clause = (
                f"{_any_of(rule.objects)} (PPE-only subjects excepted){where} whose "
                f"{' or '.join(rule.require)} cannot be checked"
            )
            return clause, f"checked{left} or out of sight"
        items = " or ".join(_article(item) for item in rule.require)
        clause = f"{_any_of(rule.objects)}{where} seen without {items}"
        return clause, f"compliant{left} or out of sight"
    if isinstance(rule, ZoneIntrusionRule):
        clause = f"{_any_of(rule.objects)} {_ANCHOR[rule.anchor]} zone {rule.zone}"
        return clause, "outside the zone or out of sight"
    if isinstance(rule, DwellRule):
        clause = (
            f"{_any_of(rule.objects)} staying in zone {rule.zone} ({_BY[rule.anchor]}) for "
            f"longer than {format_duration(rule.max_time)}"
        )
        return clause, "outside the zone or out of sight"
    if isinstance(rule, LineCrossingRule):
        direction = {
            "any": "in either direction",
            "left_to_right": "from its left side to its right (seen walking from its first "
            "point to its second)",
            "right_to_left": "from its right side to its left (seen walking from its first "
            "point to its second)",
        }[rule.direction]
        clause = (
            f"{_any_of(rule.objects)} crossing line {rule.line} {direction}, its "
            f"{_POINT[rule.anchor]} seen on each side for {rule.confirm_frames} frame"
            f"{'s' if rule.confirm_frames != 1 else ''}"
        )
        return clause, ""
    if isinstance(rule, ProximityRule):
        hazards = [f"{_any_of(rule.objects)}"] if rule.objects else []
        if rule.machine_zone is not None:
            hazards.append(f"machine zone {rule.machine_zone}")
        clause = (
            f"{_any_of(rule.subjects)}{_scope(rule.zones)} closer than {rule.max_distance} to "
            + " or ".join(hazards)
        )
        if rule.approaching is not None:
            clause += (
                f" while the gap shrinks by {rule.approaching} or faster (over "
                f"{format_duration(rule.window)})"
            )
        return clause, "far enough or out of sight"
    if isinstance(rule, OccupancyRule):

        def many(n: int) -> str:
            if rule.objects == ("person",):
                return f"{n} {'person' if n == 1 else 'people'}"
            return f"{n} {' or '.join(rule.objects)} track{'' if n == 1 else 's'}"

        bounds = []
        if rule.max_count is not None:
            bounds.append(f"more than {many(rule.max_count)}")
        if rule.min_count is not None:
            bounds.append(f"fewer than {many(rule.min_count)} (but at least one)")
        clause = f"{' or '.join(bounds)} in zone {rule.zone} ({_COUNTED_BY[rule.anchor]})"
        return clause, "back within bounds"
    if isinstance(rule, ZoneClearRule):
        moving = (
            f"less than {rule.max_movement}"
            if rule.max_movement is not None
            else "less than half its box width"
        )
        clause = (
            f"{_any_of(rule.objects)} standing still (moving {moving}) in zone {rule.zone} for "
            f"longer than {format_duration(rule.max_time)}"
        )
        return clause, "clear again"
    if isinstance(rule, SpeedRule):
        clause = (
            f"{_any_of(rule.objects)}{_scope(rule.zones)} moving faster than {rule.max_speed} on "
            f"the floor (averaged over {format_duration(rule.window)})"
        )
        return clause, "under the limit or out of sight"
    raise TypeError(f"no explanation for rule kind {rule.kind!r}")  # pragma: no cover


def explain_rule(rule: Rule, rules: RuleSet, site: SiteConfig | None = None) -> str:
    """One sentence saying what ``rule`` enforces, where, when, and how its incidents end.

    Args:
        rule: A rule of ``rules``.
        rules: Its rule set (zones and lines it refers to).
        site: The site, for camera names and the schedule's time zone; without it schedules are
            read as "site time".
    """
    timezone = site.site.timezone if site is not None else "site time"
    state = "" if rule.enabled else ", disabled"
    clause, ends = _what(rule)
    parts = [f"{rule.id} ({rule.severity}{state}): {_cameras(rule, rules, site)}, {clause}"]
    if isinstance(rule, LineCrossingRule):
        if rule.min_duration > 0:
            parts[0] += f" and on the new side for at least {format_duration(rule.min_duration)}"
        parts.append(_when(rule.schedule, timezone))
        sentence = ", ".join(parts) + ", is an incident of its own (opened and closed at once)"
    else:
        if rule.min_duration > 0:
            parts[0] += f" for at least {format_duration(rule.min_duration)}"
        parts.append(_when(rule.schedule, timezone))
        sentence = (
            ", ".join(parts)
            + f", opens an incident; it ends after {format_duration(rule.grace)}"
            + f"{_slow_cameras(rule, rules, site)} {ends}"
        )
    if rule.cooldown > 0:
        subject = (
            "the zone" if isinstance(rule, OccupancyRule | ZoneClearRule) else "the same object"
        )
        new = "no new one"
        if isinstance(rule, OccupancyRule) and None not in (rule.max_count, rule.min_count):
            # Crowding and lone working are separate episodes with their own cooldowns: the end
            # of a crowd does not hold back the lone-worker incident that may follow it.
            new += " of the same kind (crowding or lone working)"
        sentence += f"; then {subject} raises {new} for {format_duration(rule.cooldown)}"
    return sentence + "."


def explain_rules(rules: RuleSet, site: SiteConfig | None = None) -> list[str]:
    """:func:`explain_rule` for every rule of the set, in order."""
    return [explain_rule(rule, rules, site) for rule in rules.rules]
