"""Site and rule configuration: pydantic models and a YAML loader with ``file:line`` errors."""

from safewatch.config.loader import LoadedSite, load_site
from safewatch.config.ruleset import RuleSet, load_rules
from safewatch.config.site import SiteConfig
from safewatch.config.validation import ConfigErrors

__all__ = ["ConfigErrors", "LoadedSite", "RuleSet", "SiteConfig", "load_rules", "load_site"]
