"""Safety rules: load a rule set, evaluate it on tracked frames, emit rule events.

The models and loader live in :mod:`safewatch.config` (rules are configuration); they are
re-exported here because callers think "rules", not "config".
"""

from safewatch.config.rules import (
    DwellRule,
    LineConfig,
    LineCrossingRule,
    OccupancyRule,
    PPERule,
    ProximityRule,
    Rule,
    ScheduleConfig,
    SpeedRule,
    ZoneClearRule,
    ZoneConfig,
    ZoneIntrusionRule,
)
from safewatch.config.ruleset import RuleSet, load_rules
from safewatch.rules.calibration import Calibration, CalibrationError, calibrations_from_site
from safewatch.rules.engine import RuleEngine, build_monitor
from safewatch.rules.episodes import NO_SUBJECT, EpisodeBook, EpisodePolicy, Observation
from safewatch.rules.line_crossing import Crossing, LineCrossingMonitor
from safewatch.rules.monitor import Monitor

__all__ = [
    "NO_SUBJECT",
    "Calibration",
    "CalibrationError",
    "Crossing",
    "DwellRule",
    "EpisodeBook",
    "EpisodePolicy",
    "LineConfig",
    "LineCrossingMonitor",
    "LineCrossingRule",
    "Monitor",
    "Observation",
    "OccupancyRule",
    "PPERule",
    "ProximityRule",
    "Rule",
    "RuleEngine",
    "RuleSet",
    "ScheduleConfig",
    "SpeedRule",
    "ZoneClearRule",
    "ZoneConfig",
    "ZoneIntrusionRule",
    "build_monitor",
    "calibrations_from_site",
    "load_rules",
]
