"""Incident changes in chain order, each sequence number once, gaps read from the chain.

The incident stream is a fast path, not the record: an entry can be trimmed, lost with a Redis
restart, or never sent (a publisher's backlog overflowed, its process died). Every reader that
must not miss a change (a dashboard's feed, an export worker) keeps the highest sequence number
it has delivered and hands each stream entry to :meth:`ChainOrder.take`: a repeat is dropped, a
jump first delivers what the chain holds in between. Both readers use this one class, so they
agree on what a gap is.

A change is published after its commit, and sequence numbers are given under the chain lock, so
when change ``n`` arrives every change below ``n`` is already committed and readable: reading
them from the chain at that moment finds them all. For the same reason an entry above the chain's
head is not this site's (another deployment with the same Redis namespace, a forged ``XADD``; see
:class:`~safewatch.bus.redis_streams.BusKeys`): it is
refused, never delivered, so the position never passes the head. Taken, it would make the reader
drop this site's own changes up to that number as repeats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from safewatch.bus.changes import change_envelope
from safewatch.bus.envelope import INCIDENT_CHANGE, Envelope
from safewatch.storage import hash_chain
from safewatch.storage.incident_repository import IncidentRepository

__all__ = ["ChainOrder"]

log = logging.getLogger(__name__)

Deliver = Callable[[Envelope], None]

FOREIGN_LOG_EVERY = 1000
"""A reader logs the first entry above the chain's head it refuses, then one in this many."""


class ChainOrder:
    """The delivery order of one reader (see the module docstring).

    Args:
        repository: Where the chain is.
        last_seq: The highest sequence number already delivered; ``None`` until
            :meth:`start_at_head` or the first :meth:`take` sets it.
    """

    def __init__(self, repository: IncidentRepository, last_seq: int | None = None) -> None:
        self.repository = repository
        self.last_seq = last_seq
        self.delivered = 0
        self.backfilled = 0
        self.duplicates = 0
        self.foreign = 0
        self._head = 0  # the chain's head as last read: a lower bound of the head now

    def head(self) -> int:
        """The chain's newest sequence number (0 for an empty chain).

        Raises:
            StorageError: The database cannot be read.
        """
        head = hash_chain.read_head(self.repository.engine)
        self._head = max(self._head, 0 if head is None else head[0])
        return self._head

    def start_at_head(self) -> None:
        """Deliver only what is chained from now on (a dashboard has loaded the list already)."""
        self.last_seq = self.head()

    def take(self, envelope: Envelope, deliver: Deliver) -> bool:
        """Deliver ``envelope`` in order: the chain's changes it skipped first, nothing if it is
        a repeat or above the chain's head (not this site's, module docstring). A reader with no
        position yet starts at this change. Returns whether it was delivered.

        Raises:
            StorageError: The chain cannot be read (nothing was delivered past the gap).
        """
        seq = envelope.seq
        if envelope.type != INCIDENT_CHANGE or seq is None:
            return False
        # The head is read again only for an entry above the last one read, which is then read
        # fresh: a change committed (and published) since the last read is never refused.
        if seq > self._head and seq > self.head():
            self.foreign += 1
            if self.foreign % FOREIGN_LOG_EVERY == 1:
                log.warning(
                    "refused incident change %d from the stream: this site's chain ends at %d, so "
                    "another deployment (or something else) writes to this site's stream; give "
                    "each site on a Redis its own site.name or cluster.redis_namespace (%d "
                    "refused so far)",
                    seq,
                    self._head,
                    self.foreign,
                )
            return False
        if self.last_seq is None:
            self.last_seq = seq - 1
        if seq > self.last_seq + 1:
            self.backfill(deliver, seq - 1)
        if seq <= self.last_seq:
            self.duplicates += 1
            return False
        deliver(envelope)
        self.last_seq = seq
        self.delivered += 1
        return True

    def backfill(self, deliver: Deliver, until: int | None = None) -> None:
        """Deliver the chain's changes after the last delivered, up to ``until`` (the head).

        Raises:
            StorageError: The chain cannot be read.
        """
        if self.last_seq is None:
            self.start_at_head()
            return
        while until is None or self.last_seq < until:
            limit = 1000 if until is None else min(1000, until - self.last_seq)
            changes, last = self.repository.changes_after(self.last_seq, limit=limit)
            for change in changes:
                deliver(change_envelope(change))
                self.backfilled += 1
            if last <= self.last_seq:  # the chain ends here
                break
            self.last_seq = last
            self._head = max(self._head, last)
