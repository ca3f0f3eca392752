"""The two sides of the bus, whatever carries it.

A :class:`Publisher` takes envelopes; a :class:`Subscriber` delivers envelopes to a publisher
until told to stop. The in-process implementation of :class:`Publisher` is the API's
:class:`~safewatch.api.live.LiveHub` (it fans incident changes and live frames out to WebSockets);
the Redis one is :class:`~safewatch.bus.redis_streams.RedisPublisher`. The Redis subscribers
(:class:`~safewatch.bus.redis_streams.IncidentFeed`,
:class:`~safewatch.bus.redis_streams.LiveFeed`) pump Redis into a hub, so a dashboard reads one
path however many hosts the analysis runs on.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from safewatch.bus.envelope import Envelope

__all__ = ["Publisher", "Subscriber"]


@runtime_checkable
class Publisher(Protocol):
    """Takes envelopes. Must not block the caller on the network: incident writes and the rules
    thread call it (a Redis publisher queues and sends from its own thread)."""

    def publish(self, envelope: Envelope) -> None:
        """Hand ``envelope`` on (delivery per the implementation's promise)."""
        ...


class Subscriber(Protocol):
    """Delivers envelopes from somewhere to a publisher."""

    def run(self, sink: Publisher, stop: threading.Event) -> None:
        """Deliver to ``sink`` until ``stop`` is set (returns within about a second of it)."""
        ...
