"""The rule set a server judges frames with, its folder's watcher, and what the dashboard's
:class:`~safewatch.api.dashboard.RuleControl` asks of them (the service answers it from here)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from safewatch.config.ruleset import RuleSet
from safewatch.config.site import SiteConfig
from safewatch.rules.reload import ReloadStatus, RuleGeneration, RuleSetHolder
from safewatch.rules.watcher import RuleWatcher

__all__ = ["RuleFiles"]

log = logging.getLogger(__name__)


class RuleFiles:
    """The rules of one server: held after :meth:`hold`, hot-reloaded once :meth:`watch` ran.

    Args:
        path: Rule folder or file.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self.holder: RuleSetHolder | None = None
        self._watcher: RuleWatcher | None = None

    def hold(self, rules: RuleSet) -> RuleSetHolder:
        """Hold the rules loaded at start: frames are judged with them until a reload."""
        self.holder = RuleSetHolder(rules)
        return self.holder

    def watch(self, config: SiteConfig) -> None:
        """Follow the rule folder, checking rules against ``config``'s cameras (again, with a
        new site's cameras, when a reload enabled or removed some)."""
        if self._watcher is not None:
            self._watcher.stop()
        self._watcher = RuleWatcher(self._path, self._require(), config).start()

    def stop(self) -> None:
        """Stop following the folder."""
        if self._watcher is not None:
            self._watcher.stop()

    def _require(self) -> RuleSetHolder:
        if self.holder is None:
            raise RuntimeError("the service is not started")
        return self.holder

    # -- for the dashboard's RuleControl (through the service) ------------------------------

    def rule_generation(self) -> RuleGeneration:
        """The rule set judging frames now."""
        return self._require().current()

    def rule_status(self) -> ReloadStatus:
        """The latest rule reload outcome."""
        return self._require().status

    def reload_rules(self, config: SiteConfig) -> ReloadStatus:
        """Reload the rule files now (the dashboard saved one); never raises for bad files."""
        watcher = self._watcher
        if watcher is None:
            watcher = RuleWatcher(self._path, self._require(), config)
        return watcher.reload()

    def acknowledge_dropped(self, rule_ids: Sequence[str]) -> ReloadStatus:
        """An admin accepts that these dropped rules are gone on purpose (``/readyz`` is
        ``degraded`` until then; see :attr:`ReloadStatus.dropped`).

        Raises:
            ValueError: A rule named is not flagged as dropped.
        """
        status = self._require().acknowledge(rule_ids)
        log.warning("rules: removal of %s acknowledged", ", ".join(rule_ids))
        return status
