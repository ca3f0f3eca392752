"""Which routes an incident change goes to: camera, rule, severity, event and schedule.

Pure and cheap (a few comparisons per route): it runs inside the incident's write transaction. A
route's schedule is read in the site's time zone at the moment of the change, because a route
answers "who should hear about it now" (the night-shift supervisor gets what happens on their
shift, whenever the violation started).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from safewatch.config.alerts import AlertsConfig, RouteConfig
from safewatch.domain import Incident
from safewatch.domain.events import Severity
from safewatch.rules.schedule import schedule_allows

__all__ = ["SEVERITY_ORDER", "Router"]

SEVERITY_ORDER: dict[Severity, int] = {
    Severity.LOW: 0,
    Severity.MEDIUM: 1,
    Severity.HIGH: 2,
    Severity.CRITICAL: 3,
}
"""Severities from least to most urgent (``min_severity`` compares with it)."""


@dataclass(frozen=True, slots=True)
class Router:
    """The routes of one ``alerts:`` block, in one time zone.

    Args:
        config: The site's alerts block.
        tz: The site's time zone (schedules are local times).
    """

    config: AlertsConfig
    tz: ZoneInfo

    def matches(
        self,
        route: RouteConfig,
        incident: Incident,
        event: str,
        at: float,
        *,
        continued: bool = False,
    ) -> bool:
        """Whether ``route`` takes this change of ``incident`` at wall time ``at``.

        ``continued``: the incident continues one a lost analyzer left (its ``incident.opened``
        entry names it), whose "opened" alert already went out.
        """
        if event not in route.events:
            return False
        if continued and event == "opened" and route.suppress_continued:
            return False
        if not self.covers(route, incident):
            return False
        return schedule_allows(route.match.schedule, at, self.tz)

    @staticmethod
    def covers(route: RouteConfig, incident: Incident) -> bool:
        """Whether ``route``'s cameras, rules and severities take ``incident``, whatever its
        events and schedule (the retained MQTT state follows every incident a route covers)."""
        match = route.match
        if match.cameras and incident.camera_id not in match.cameras:
            return False
        if match.rules and not any(fnmatchcase(incident.rule_id, p) for p in match.rules):
            return False
        severity = Severity(incident.severity)
        if match.severities and severity not in match.severities:
            return False
        return (
            match.min_severity is None
            or SEVERITY_ORDER[severity] >= SEVERITY_ORDER[match.min_severity]
        )

    def routes_for(
        self, incident: Incident, event: str, at: float, *, continued: bool = False
    ) -> list[RouteConfig]:
        """Every route that takes this change, in the order of the site file."""
        return [
            r
            for r in self.config.routes
            if self.matches(r, incident, event, at, continued=continued)
        ]
