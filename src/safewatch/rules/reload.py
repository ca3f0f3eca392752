"""Hot reload, the swapping half: a holder of the rule set in force and an engine that follows it.

A reload must never let a frame be judged by half of one rule set and half of another. The
design makes that structural rather than a matter of careful locking:

* a new :class:`~safewatch.config.ruleset.RuleSet` is built and validated completely, off to the
  side, by whoever reloads (:class:`~safewatch.rules.watcher.RuleWatcher`);
* :class:`RuleSetHolder` then publishes it as one immutable :class:`RuleGeneration`, a single
  reference swap; an invalid set is never published, the last good one stays and the failure is
  recorded in :class:`ReloadStatus` for the API and logs;
* :class:`ReloadingEngine` reads the holder once at the start of every frame, and only there
  applies a new generation to its :class:`~safewatch.rules.engine.RuleEngine` (which keeps the
  episodes of rules that did not change). Engine state is touched by the evaluating thread only,
  so the watcher thread never races the frame loop, and each frame is judged by exactly one
  generation, which the engine reports. Camera calibrations that a site reload offers
  (:meth:`ReloadingEngine.offer_calibrations`) are applied at the same point, the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from safewatch.config.ruleset import RuleSet
from safewatch.domain.events import RuleEvent
from safewatch.domain.tracks import TrackedFrame
from safewatch.rules.calibration import Calibration
from safewatch.rules.engine import RuleEngine

__all__ = ["ReloadStatus", "ReloadingEngine", "RuleGeneration", "RuleSetHolder"]


@dataclass(frozen=True, slots=True)
class RuleGeneration:
    """One published rule set.

    Attributes:
        number: 1 for the set the process started with, +1 for each set that replaced it.
        rules: The set; immutable, so engines may keep using it after a newer one is published.
        loaded_at: Wall-clock seconds when it was published.
    """

    number: int
    rules: RuleSet
    loaded_at: float


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """The outcome of the latest reload attempt, as an operator (or the API) sees it.

    Attributes:
        ok: Whether the files on disk were valid at the latest attempt. ``False`` means an older
            set is still running while the files say something else.
        generation: Number of the generation in force.
        at: Wall-clock seconds of the latest attempt.
        message: One line: what was loaded, or why the files were refused.
        errors: Every problem found, ``file:line: field: message`` each (empty when ``ok``).
        attempts: Reload attempts so far.
        failures: Attempts that were refused so far.
        dropped: Rules that were in force (enabled) at some time since the server started or
            since an admin last acknowledged their removal, and are not now (removed or
            disabled). They stay here, ``/readyz`` stays ``degraded``, until each comes back or
            an admin acknowledges its removal (:meth:`RuleSetHolder.acknowledge`): a deliberate
            removal is then a recorded decision, an accidental one cannot go unnoticed, and a
            later unrelated edit does not hide it.
        unwatched: Enabled cameras of the site that no enabled rule runs on.
    """

    ok: bool
    generation: int
    at: float
    message: str
    errors: tuple[str, ...] = ()
    attempts: int = 0
    failures: int = 0
    dropped: tuple[str, ...] = ()
    unwatched: tuple[str, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """Protection that disappeared, one line each (empty when none did)."""
        lines = []
        if self.dropped:
            lines.append(
                f"generation {self.generation} dropped {len(self.dropped)} rule(s) that were in "
                f"force: {', '.join(self.dropped)} (until they come back or an admin "
                "acknowledges their removal)"
            )
        if self.unwatched:
            lines.append(
                f"no enabled rule runs on camera(s) {', '.join(self.unwatched)}: nothing is "
                "watched there"
            )
        return tuple(lines)


def _describe(rules: RuleSet) -> str:
    return f"{len(rules.rules)} rule(s), {len(rules.zones)} zone(s) from {len(rules.files)} file(s)"


def _enabled(rules: RuleSet) -> set[str]:
    return {rule.id for rule in rules.rules if rule.enabled}


_InForce = dict[str, frozenset[str] | None]
"""Rule id -> the cameras it ran on while in force (``None``: not known, no site was given)."""


def _note_in_force(in_force: _InForce, rules: RuleSet, cameras: Collection[str] | None) -> None:
    """Add the enabled rules of ``rules`` to ``in_force`` with the cameras they run on."""
    for rule in rules.rules:
        if not rule.enabled:
            continue
        ran_on = (
            None if cameras is None else frozenset(c for c in cameras if rules.applies_to(rule, c))
        )
        before = in_force.get(rule.id)
        if rule.id in in_force and before is not None and ran_on is not None:
            ran_on = before | ran_on
        elif ran_on is None:
            ran_on = before
        in_force[rule.id] = ran_on


def _lost(
    in_force: _InForce, enabled: set[str], cameras: Collection[str] | None
) -> tuple[str, ...]:
    """Rules once in force that are not now, on a camera the site still runs.

    A rule whose every camera has left the site (or was disabled) protects nothing any more:
    the camera's removal is its own deliberate act, logged and chained, so it is not a lost rule.
    """
    now = None if cameras is None else set(cameras)
    return tuple(
        sorted(
            rule_id
            for rule_id, ran_on in in_force.items()
            if rule_id not in enabled and (now is None or ran_on is None or ran_on & now)
        )
    )


class RuleSetHolder:
    """The rule set in force, shared between one reloader and any number of engines.

    Publishing is a single reference assignment under a lock that only serialises publishers;
    readers (:meth:`current`) take no lock: they read one attribute that always points at a
    complete, immutable generation.

    Args:
        rules: The set the process starts with (already validated: a bad set at start-up is a
            start-up error, not something to run without).
    """

    def __init__(self, rules: RuleSet) -> None:
        now = time.time()
        self._lock = threading.Lock()
        self._current = RuleGeneration(1, rules, now)
        self._in_force: _InForce = {}
        """Rules enabled at some time since start-up or the last acknowledgement."""
        _note_in_force(self._in_force, rules, None)
        self._status = ReloadStatus(
            ok=True, generation=1, at=now, message=f"loaded {_describe(rules)}"
        )

    def current(self) -> RuleGeneration:
        """The generation in force now."""
        return self._current

    @property
    def status(self) -> ReloadStatus:
        """The latest reload outcome."""
        return self._status

    def offer(
        self,
        rules: RuleSet,
        unwatched: Sequence[str] = (),
        cameras: Collection[str] | None = None,
    ) -> ReloadStatus:
        """Publish a validated set, unless it equals the one in force (then nothing changes).

        Equal by value means every rule, zone and file is the same, so a save that changed
        nothing (or only whitespace and comments) does not start a new generation.

        Args:
            rules: The validated set.
            unwatched: Enabled cameras no rule of ``rules`` runs on (the caller knows the site).
            cameras: The site's enabled cameras, when known: a dropped rule counts only while
                a camera it ran on is still one of them.
        """
        with self._lock:
            now = time.time()
            current = self._current
            attempts = self._status.attempts + 1
            if rules == current.rules:
                message = f"unchanged: {_describe(rules)}"
                number = current.number
            else:
                number = current.number + 1
                self._current = RuleGeneration(number, rules, now)
                message = f"generation {number}: {_describe(rules)}"
            _note_in_force(self._in_force, rules, cameras)
            dropped = _lost(self._in_force, _enabled(rules), cameras)
            self._status = ReloadStatus(
                ok=True,
                generation=number,
                at=now,
                message=message,
                attempts=attempts,
                failures=self._status.failures,
                dropped=dropped,
                unwatched=tuple(unwatched),
            )
            return self._status

    def acknowledge(self, rule_ids: Sequence[str]) -> ReloadStatus:
        """Accept that ``rule_ids``, dropped from the set in force, are gone on purpose.

        Callers name the rules they saw flagged, so a rule dropped after the admin looked is
        not acknowledged with them.

        Raises:
            ValueError: ``rule_ids`` is empty, or names a rule that is not flagged as dropped
                (it came back, or was never dropped); nothing is acknowledged then.
        """
        with self._lock:
            status = self._status
            unknown = sorted(set(rule_ids) - set(status.dropped))
            if not rule_ids or unknown:
                flagged = ", ".join(status.dropped) or "none"
                raise ValueError(
                    f"not dropped: {', '.join(unknown) or 'no rule named'} "
                    f"(rules dropped now: {flagged})"
                )
            for rule_id in rule_ids:
                self._in_force.pop(rule_id, None)
            self._status = replace(
                status, dropped=tuple(r for r in status.dropped if r not in set(rule_ids))
            )
            return self._status

    def reject(self, errors: Sequence[str], unwatched: Sequence[str] | None = None) -> ReloadStatus:
        """Record that the files on disk are invalid; the set in force stays.

        Args:
            errors: One line per problem, ``file:line: field: message``.
            unwatched: Enabled cameras no rule of the set in force runs on, when the caller
                checked it against a site (a reloaded one, say); ``None`` keeps the last list.
        """
        with self._lock:
            status = self._status
            first = errors[0] if errors else "invalid rule files"
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            self._status = replace(
                status,
                ok=False,
                at=time.time(),
                message=f"kept generation {self._current.number}: {first}{more}",
                errors=tuple(errors),
                attempts=status.attempts + 1,
                failures=status.failures + 1,
                unwatched=status.unwatched if unwatched is None else tuple(unwatched),
            )
            return self._status


class ReloadingEngine:
    """A :class:`RuleEngine` that follows a :class:`RuleSetHolder`, switching between frames.

    Drop-in for the pipeline's engine. At the start of :meth:`evaluate` it reads the holder once;
    if a new generation was published it calls :meth:`RuleEngine.replace_rules` (episodes of
    rules whose definition did not change go on; the others end, and those ``ENDED`` events
    come first in the frame's list) and then judges the frame with that generation only.
    Camera calibrations offered by a site reload (:meth:`offer_calibrations`) are applied the
    same way, at the start of the next frame, with :meth:`RuleEngine.replace_calibrations`.

    Args:
        holder: Where reloaded sets are published.
        timezone: IANA time zone of the site, for schedules.
        calibrations: Camera id to its floor calibration, for rules in metres, as the site file
            had them at start; a site reload hands over its own with :meth:`offer_calibrations`.
    """

    def __init__(
        self,
        holder: RuleSetHolder,
        timezone: str = "UTC",
        calibrations: Mapping[str, Calibration] | None = None,
    ) -> None:
        self._holder = holder
        self._generation = holder.current()
        self._engine = RuleEngine(self._generation.rules, timezone, calibrations)
        self._offered: Mapping[str, Calibration] | None = None
        """The calibrations a site reload offered last: one reference, like the holder's
        generation, which only the reloading thread writes."""
        self._applied: Mapping[str, Calibration] | None = None
        """The offer the engine measures with, which only the evaluating thread writes."""

    @property
    def generation(self) -> RuleGeneration:
        """The generation that judged the latest frame (or will judge the first)."""
        return self._generation

    @property
    def rules(self) -> RuleSet:
        """The rule set of :attr:`generation`."""
        return self._generation.rules

    def open_state_count(self) -> int:
        """Subjects with episode state (for metrics)."""
        return self._engine.open_state_count()

    def offer_calibrations(self, calibrations: Mapping[str, Calibration]) -> None:
        """Hand over the camera calibrations of a reloaded site file (any thread).

        They apply at the start of the next frame (:meth:`evaluate`), on the evaluating thread,
        which alone touches the engine: a frame is measured entirely with the old calibration
        or entirely with the new one. Offering them before the rule set that needs them is
        published means a frame that sees that set also sees them.
        """
        self._offered = dict(calibrations)

    def evaluate(self, tracked: TrackedFrame) -> list[RuleEvent]:
        """Switch to the newest generation and calibrations if there are new ones, then judge
        the frame with them."""
        latest = self._holder.current()
        offered = self._offered
        if latest is self._generation and offered is self._applied:
            return self._engine.evaluate(tracked)
        ended: list[RuleEvent] = []
        if latest is not self._generation:
            self._generation = latest
            ended += self._engine.replace_rules(latest.rules)
        if offered is not None and offered is not self._applied:
            self._applied = offered
            ended += self._engine.replace_calibrations(offered)
        return ended + self._engine.evaluate(tracked)

    def finish(self, camera_id: str, at: float | None = None) -> list[RuleEvent]:
        """End every open episode of ``camera_id`` (see :meth:`RuleEngine.finish`)."""
        return self._engine.finish(camera_id, at)

    def ppe_required(self, camera_id: str) -> Mapping[str, frozenset[str]]:
        """PPE items per track label the camera's rules require (:meth:`RuleEngine.ppe_required`),
        under the generation that judged the latest frame."""
        return self._engine.ppe_required(camera_id)
