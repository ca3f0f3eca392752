"""What an API node of a cluster runs of the bus: incident changes and remote overlays into its hub.

Under ``serve --cluster`` (roles ``all`` and ``api``) the dashboard's hub stops taking incident
changes from its own process (:meth:`~safewatch.api.live.LiveHub.follow_bus`) and takes them from
an :class:`~safewatch.bus.redis_streams.IncidentFeed` instead: every node's changes, this one's
operator actions included, in chain order, each once. With Redis the feed follows the stream and
back-fills gaps from the chain, and a :class:`~safewatch.bus.redis_streams.LiveFeed` brings the
overlays of cameras analysed elsewhere; without Redis the feed reads the chain every second and
there are no remote overlays. The API's own incident writes (operator decisions) are published
after commit, so other API nodes see them at once.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from safewatch.api.live import LiveHub
from safewatch.bus.changes import PublishAfterCommit
from safewatch.bus.protocol import Publisher, Subscriber
from safewatch.errors import SafewatchError
from safewatch.storage import IncidentRepository

if TYPE_CHECKING:
    from safewatch.bus.redis_streams import BusKeys

__all__ = ["BusFeeds"]

log = logging.getLogger(__name__)

CHAIN_POLL_SECONDS = 1.0
"""How often a node without Redis reads the chain for incident changes."""


class BusFeeds:
    """The feeds of one API node (see the module docstring); :meth:`stop` them at shutdown.

    Args:
        hub: The dashboard's hub.
        repository: The node's incident repository.
        redis_url: The cluster's Redis (``cluster.redis_url``), or ``None``.
        keys: The site's stream and channels
            (:meth:`~safewatch.bus.redis_streams.BusKeys.for_site`).
        publisher: A publisher already sending this repository's changes after commit (the
            :class:`~safewatch.runtime.bus_link.AnalyzerBus` of a ``--api thread`` process):
            then no second hook is installed, so each change is added to the stream once.
    """

    def __init__(
        self,
        hub: LiveHub,
        repository: IncidentRepository,
        redis_url: str | None,
        keys: BusKeys,
        publisher: Publisher | None = None,
    ) -> None:
        from safewatch.bus.redis_streams import IncidentFeed

        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._repository = repository
        self._publisher = None
        self._hook: PublishAfterCommit | None = None
        feeds: list[tuple[str, Subscriber]] = []
        if redis_url is None:
            self.incidents = IncidentFeed(
                None, repository, keys=keys, resync_seconds=CHAIN_POLL_SECONDS
            )
        else:
            from safewatch.bus.redis_streams import LiveFeed, RedisPublisher, connect

            self.incidents = IncidentFeed(connect(redis_url), repository, keys=keys)
            feeds.append(("bus-live-feed", LiveFeed(connect(redis_url), keys=keys)))
            if publisher is None:  # otherwise the changes already go out through it
                self._publisher = RedisPublisher(connect(redis_url), keys=keys).start()
                self._hook = PublishAfterCommit(self._publisher)
                repository.add_change_hook(self._hook)
        feeds.insert(0, ("bus-incident-feed", self.incidents))
        try:
            self.incidents.position()  # "from now on" means from here, not from a late thread
        except SafewatchError as exc:
            log.warning("incident feed: %s; it starts on its first round instead", exc)
        hub.follow_bus()
        for name, feed in feeds:
            thread = threading.Thread(
                target=feed.run, args=(hub, self._stop), name=name, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the feeds and send what this node's writes left queued."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._hook is not None:
            self._repository.remove_change_hook(self._hook)
        if self._publisher is not None:
            self._publisher.stop(timeout)
