"""Safety rules: load a rule set, evaluate it on tracked frames, emit rule events.

The models and loader live in :mod:`safewatch.config` (rules are configuration); they are
re-exported here because callers think "rules", not "config".
"""

from safewatch.config.rules import PPERule, Rule, ScheduleConfig, ZoneConfig, ZoneIntrusionRule
from safewatch.config.ruleset import RuleSet, load_rules
from safewatch.rules.engine import RuleEngine
from safewatch.rules.episodes import EpisodeBook, EpisodePolicy, Observation

__all__ = [
    "EpisodeBook",
    "EpisodePolicy",
    "Observation",
    "PPERule",
    "Rule",
    "RuleEngine",
    "RuleSet",
    "ScheduleConfig",
    "ZoneConfig",
    "ZoneIntrusionRule",
    "load_rules",
]
