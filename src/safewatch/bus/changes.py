"""Publish incident changes once their transaction has committed.

The incident repository calls its change hooks inside the write transaction (the alert outbox
must commit with the change). A bus message must not: published before the commit, a reader
could see a change that is then rolled back (a fenced write, a full disk), or look it up before
it is visible. :class:`PublishAfterCommit` is a change hook that only collects the changes in
the session and hands them to a :class:`~safewatch.bus.protocol.Publisher` from SQLAlchemy's
``after_commit`` event; a rollback discards them. The publisher must not block (the Redis one
queues), so a slow or dead Redis never holds up an incident write.
"""

from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session

from safewatch import tracing
from safewatch.bus.envelope import Envelope, incident_change
from safewatch.bus.protocol import Publisher
from safewatch.storage.hash_chain import EntryKind
from safewatch.storage.incident_repository import StoredChange

__all__ = ["CHANGE_KINDS", "PublishAfterCommit", "change_envelope"]

log = logging.getLogger(__name__)

CHANGE_KINDS: dict[str, str] = {
    EntryKind.INCIDENT_OPENED: "opened",
    EntryKind.INCIDENT_UPDATED: "updated",
    EntryKind.INCIDENT_CLOSED: "closed",
    EntryKind.STATUS_CHANGED: "status",
}
"""Chain entry kind -> the live feed's ``kind`` (what the WebSocket has always sent)."""


def change_envelope(change: StoredChange, trace: dict[str, str] | None = None) -> Envelope:
    """The bus envelope of a stored change (also used by back-fill, from the chain)."""
    detail = change.entry.detail
    actor = detail.get("actor") if change.kind is EntryKind.STATUS_CHANGED else None
    return incident_change(
        CHANGE_KINDS.get(change.kind, str(change.kind)),
        change.incident,
        seq=change.entry.seq,
        actor=None if actor is None else str(actor),
        trace=trace,
        at=change.entry.at,
    )


class PublishAfterCommit:
    """A repository change hook that publishes each change after its commit (module docstring).

    Args:
        publisher: Where the envelopes go; it must not block.
    """

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._key = f"safewatch.bus.pending.{id(self)}"
        self.published = 0
        self.failed = 0

    def __call__(self, session: Session, change: StoredChange) -> None:
        pending: list[Envelope] | None = session.info.get(self._key)
        if pending is None:
            pending = session.info[self._key] = []
            event.listen(session, "after_commit", self._committed, once=True)
            event.listen(session, "after_rollback", self._rolled_back, once=True)
        # The trace context is taken now, inside the incident.write span, so a reader's span
        # joins the trace of the write that caused it.
        pending.append(change_envelope(change, tracing.carrier()))

    def _committed(self, session: Session) -> None:
        for envelope in session.info.pop(self._key, ()):
            try:
                self._publisher.publish(envelope)
                self.published += 1
            except Exception:  # the change is committed: a bus failure must not undo or raise
                self.failed += 1
                log.exception("cannot publish incident change %s", envelope.seq)

    def _rolled_back(self, session: Session) -> None:
        session.info.pop(self._key, None)
