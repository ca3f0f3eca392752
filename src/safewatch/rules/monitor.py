"""What the engine asks of a rule kind: a per-(camera, rule) monitor.

Some kinds judge each frame on its own (is this person without a hard hat?); others need memory
(how long has this track been in the zone, on which side of the line was it, how fast is it
moving). Both are a :class:`Monitor` to the engine: it is built once per camera and rule, fed every
frame the rule is active on, and answers which subjects violate now. The
:class:`~safewatch.rules.episodes.EpisodeBook` turns those answers into episodes, so timing
(minimum duration, grace, cooldown) is shared by every kind. A monitor's memory must be bounded:
per-track state is pruned once the track has been gone for its horizon, and ``len()`` reports it
for metrics.

The engine also passes each monitor the frame's
:class:`~safewatch.rules.frame_geometry.FrameGeometry`: anchors, zone membership and floor positions
computed once per frame and shared by every rule, which is most of what twenty rules would
otherwise compute twenty times. A monitor called on its own (tests, tools) builds its own.

Kinds whose violations are instants (a line crossing) set ``instant``: each observation is a
whole episode, reported as a ``STARTED`` and an ``ENDED`` event on the same frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from safewatch.domain.tracks import TrackedFrame
from safewatch.rules.episodes import Observation
from safewatch.rules.frame_geometry import FrameGeometry

__all__ = ["Monitor", "Stateless"]


class Monitor(Protocol):
    """One rule on one camera, with whatever memory the rule kind needs."""

    instant: bool
    """Observations are instants (one episode each), not states that last."""

    rule: Any
    """The rule it applies; a reload that changes only reporting fields (severity, grace,
    cooldown...) swaps it in place so the monitor's memory survives."""

    def observe(
        self, tracked: TrackedFrame, geometry: FrameGeometry | None = None
    ) -> list[Observation]:
        """Subjects violating the rule in this frame (frames arrive in time order).

        ``geometry`` is the frame's shared geometry (built for ``tracked`` when omitted).
        """
        ...

    def __len__(self) -> int:
        """Entries of memory held (tracks, pairs); 0 for stateless kinds."""
        ...


class Stateless:
    """A monitor for kinds that judge each frame on its own.

    Args:
        rule: The rule.
        observe: ``(rule, tracked, geometry) -> observations``.
    """

    instant = False

    def __init__(
        self,
        rule: Any,
        observe: Callable[[Any, TrackedFrame, FrameGeometry | None], list[Observation]],
    ):
        self.rule = rule
        self._observe = observe

    def observe(
        self, tracked: TrackedFrame, geometry: FrameGeometry | None = None
    ) -> list[Observation]:
        """Delegate to the wrapped function."""
        return self._observe(self.rule, tracked, geometry)

    def __len__(self) -> int:
        return 0
