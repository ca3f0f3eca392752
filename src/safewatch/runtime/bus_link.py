"""What an analyzer of a cluster sends on the bus: its incident changes and live overlays.

Under ``serve --cluster`` with ``cluster.redis_url`` (roles ``all`` and ``analyzer``), every
incident change this process commits is queued for the Redis stream after its commit
(:class:`~safewatch.bus.changes.PublishAfterCommit`), and each camera's newest overlay metadata
goes out over Pub/Sub through a :class:`~safewatch.api.live.LiveRelay` frame listener. Neither
ever blocks the frame path or an incident write; a Redis outage only delays the stream (readers
back-fill from the chain) and drops overlays. Without Redis there is nothing to send: API nodes
read the chain.
"""

from __future__ import annotations

from safewatch.api.bus_feed import BusFeeds
from safewatch.api.live import LiveHub, LiveRelay
from safewatch.bus.changes import PublishAfterCommit
from safewatch.bus.redis_streams import BusKeys, RedisPublisher, connect
from safewatch.pipeline.step import FrameListener
from safewatch.storage import IncidentRepository

__all__ = ["AnalyzerBus", "ClusterBus"]


class AnalyzerBus:
    """The analyzer's side of the bus (module docstring).

    Add :attr:`relay`'s ``on_frame`` as a frame listener; :meth:`stop` at shutdown, after the
    last incident write, so the final closes reach the stream.

    Args:
        repository: The analyzer's incident repository (the hook is installed on it).
        redis_url: ``cluster.redis_url``.
        keys: The site's stream and channels (:meth:`BusKeys.for_site`).
        overlay_rate: Overlay frames per second per camera sent at most.
    """

    def __init__(
        self,
        repository: IncidentRepository,
        redis_url: str,
        keys: BusKeys,
        *,
        overlay_rate: float = 10.0,
    ) -> None:
        self._repository = repository
        self.publisher = RedisPublisher(connect(redis_url), keys=keys).start()
        self._hook = PublishAfterCommit(self.publisher)
        repository.add_change_hook(self._hook)
        self.relay = LiveRelay(self.publisher, rate=overlay_rate).start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop relaying, flush the queued incident changes (up to ``timeout``), disconnect."""
        self.relay.stop(timeout)
        self._repository.remove_change_hook(self._hook)
        self.publisher.stop(timeout)


class ClusterBus:
    """The bus parts of one ``serve --cluster`` process (:class:`RuntimeService` holds one).

    With ``cluster.redis_url`` the analysis side is an :class:`AnalyzerBus`; a dashboard served
    in this process (``--api thread``) follows the bus through
    :class:`~safewatch.api.bus_feed.BusFeeds` once :meth:`follow` is called. The API process
    starts its own feeds (``ApiProcessSpec.follow_bus``).

    Args:
        repository: The process's incident repository.
        redis_url: ``cluster.redis_url`` (``None``: no Redis; dashboards read the chain).
        keys: The site's stream and channels (:meth:`BusKeys.for_site`).
    """

    def __init__(
        self, repository: IncidentRepository, redis_url: str | None, keys: BusKeys
    ) -> None:
        self._repository = repository
        self._redis_url = redis_url
        self._keys = keys
        self._analyzer = None if redis_url is None else AnalyzerBus(repository, redis_url, keys)
        self._feeds: BusFeeds | None = None

    @property
    def listener(self) -> FrameListener | None:
        """The frame listener that relays live overlays, or ``None`` without Redis."""
        return None if self._analyzer is None else self._analyzer.relay.on_frame

    def follow(self, hub: LiveHub) -> None:
        """Feed ``hub`` (a dashboard in this process) from the bus."""
        # The analyzer's publisher already sends this repository's changes: reused, not doubled.
        publisher = None if self._analyzer is None else self._analyzer.publisher
        self._feeds = BusFeeds(hub, self._repository, self._redis_url, self._keys, publisher)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the feeds and flush this process's queued incident changes (after its last
        incident write)."""
        if self._feeds is not None:
            self._feeds.stop(timeout)
        if self._analyzer is not None:
            self._analyzer.stop(timeout)
